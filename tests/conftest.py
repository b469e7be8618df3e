"""Shared fixtures: the local Docker engine, a real sshd on 127.0.0.1, unique names, moto.

A test that needs the engine or sshd fails loudly when it is missing: CI (`.ci/run`) installs and starts
both, so a skip would only hide a broken CI.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


# Images dockyard builds on this machine for a host (the Debian Caddy proxy image, the sandbox's bases) start
# FROM CI's debootstrap minbase: CI machines have no registry to pull debian:bookworm-slim from. The e2e tests
# pass the same to their subprocesses (tests/e2e/helpers.py SANDBOX_ENV); in-process tests read it from here.
os.environ.setdefault("DOCKYARD_MINBASE", "dockyard-ci/bookworm-minbase:1")
os.environ.setdefault("DOCKYARD_SANDBOX_BASE", "debootstrap")


@pytest.fixture
def unique() -> str:
    """A name prefix no other test (or other user of the shared engine) will use."""
    return f"dyt-{secrets.token_hex(4)}"


@pytest.fixture(scope="session")
def docker_client():
    import docker

    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as exc:
        pytest.fail(f"this test needs the local Docker engine (start dockerd; .ci/run does): {exc}")
    yield client
    client.close()


@dataclass(frozen=True)
class SshdInfo:
    host: str
    port: int
    user: str
    key_file: Path  # private key; the public half is key_file + ".pub"
    known_hosts: Path  # already holds this sshd's host key
    host_key_line: str  # "ssh-ed25519 AAAA..." of the server
    log: Path


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                   check=True)


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdInfo]:
    """A real OpenSSH server on 127.0.0.1 (random port), root login with a throwaway key, and OpenSSH's stock
    limits (MaxSessions 10, MaxStartups 10:30:100), as on a cloud image: the config below only says where
    its files are.

    Through it, tests reach this machine's own Docker engine exactly as dockyard reaches a remote host.
    """
    binary = shutil.which("sshd") or "/usr/sbin/sshd"
    if not Path(binary).exists():
        pytest.fail("this test needs OpenSSH's sshd (apt-get install openssh-server; .ci/run does)")
    state = tmp_path_factory.mktemp("sshd")
    state.chmod(0o700)
    _keygen(state / "host_ed25519", "dockyard-test-host")
    _keygen(state / "client_ed25519", "dockyard-test-client")
    shutil.copy(state / "client_ed25519.pub", state / "authorized_keys")
    (state / "authorized_keys").chmod(0o600)
    port = free_port()
    config = state / "sshd_config"
    sftp = next((p for p in ("/usr/lib/openssh/sftp-server", "/usr/libexec/openssh/sftp-server")
                 if Path(p).exists()), "internal-sftp")
    config.write_text(f"""\
Port {port}
ListenAddress 127.0.0.1
HostKey {state / 'host_ed25519'}
PidFile {state / 'sshd.pid'}
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthorizedKeysFile {state / 'authorized_keys'}
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
X11Forwarding no
AllowTcpForwarding yes
LogLevel VERBOSE
Subsystem sftp {sftp}
""")
    Path("/run/sshd").mkdir(exist_ok=True)
    subprocess.run([binary, "-t", "-f", str(config)], check=True)
    log = state / "sshd.log"
    proc = subprocess.Popen([binary, "-D", "-f", str(config), "-E", str(log)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    host_key_line = " ".join((state / "host_ed25519.pub").read_text().split()[:2])
    known_hosts = state / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_key_line}\n")
    deadline = time.monotonic() + 15
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                if s.recv(64).startswith(b"SSH-"):
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"test sshd did not come up on 127.0.0.1:{port}; see {log}:\n"
                        f"{log.read_text() if log.exists() else ''}")
        time.sleep(0.1)
    try:
        yield SshdInfo("127.0.0.1", port, "root", state / "client_ed25519", known_hosts, host_key_line, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials for in-process moto; AWS_ENDPOINT_URL must be unset for mock_aws."""
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """An out-of-process-style moto server (threaded, on 127.0.0.1); yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def clean_env() -> dict[str, str]:
    """The environment for a CLI subprocess: this one, without AWS endpoint leaks."""
    env = dict(os.environ)
    env.pop("AWS_ENDPOINT_URL", None)
    return env
