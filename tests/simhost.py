"""Simulated hosts for setup/deploy tests: fresh "VMs" (containers of tests/images/simhost) reached over SSH.

    from tests.simhost import simhost  # noqa: F401  (the fixture; or call start_simhost/stop_simhost)

    def test_x(simhost):                # a fresh host, SSH on 127.0.0.1:<random>, user `deploy` (sudo)
        simhost.target()                # provision.remote.SshTarget for it (user deploy; `target("root")`)
        simhost.exec("docker info")     # verify from outside, through `docker exec` (not SSH)

Every host gets a unique name (the test's `unique` prefix), its own volume on /var/lib/docker, its own
throwaway ed25519 key and known_hosts file; both container and volume are removed afterwards.
`run_argv()` is pure (the DEVELOPERS.md docker-in-docker flag set) and unit-testable.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from provision.remote import SshTarget

LABEL = "dockyard-test.simhost"
SSH_WAIT = 60.0


def run_argv(*, name: str, image: str, volume: str, authorized_key: str, labels: dict[str, str] | None = None,
             extra_ports: tuple[int, ...] = ()) -> list[str]:
    """`docker run` for a sim host (pure). SSH and `extra_ports` are published on 127.0.0.1 random ports."""
    argv = ["docker", "run", "-d", "--name", name, "--hostname", name[:63],
            "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
            "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
            "--security-opt", "systempaths=unconfined",
            "--device-cgroup-rule", "a *:* rwm", "--cgroupns", "private",
            "-v", f"{volume}:/var/lib/docker", "-p", "127.0.0.1::22",
            "-e", f"SIMHOST_AUTHORIZED_KEY={authorized_key}"]
    for port in extra_ports:
        argv += ["-p", f"127.0.0.1::{port}"]
    for key, value in sorted({LABEL: name, **(labels or {})}.items()):
        argv += ["--label", f"{key}={value}"]
    argv.append(image)
    return argv


@dataclass
class SimHost:
    name: str
    volume: str
    host: str
    port: int
    key_file: Path
    known_hosts: Path
    user: str = "deploy"

    def target(self, user: str | None = None, connect_timeout: float = 10.0) -> SshTarget:
        return SshTarget(host=self.host, port=self.port, user=user or self.user, key_file=self.key_file,
                         known_hosts=self.known_hosts, connect_timeout=connect_timeout)

    def exec(self, command: str, *, user: str = "root", timeout: float = 120) -> tuple[int, str]:
        """Run a shell command inside the host via `docker exec` (an observer independent of dockyard)."""
        proc = subprocess.run(["docker", "exec", "-u", user, self.name, "sh", "-c", command],
                              capture_output=True, text=True, timeout=timeout)
        return proc.returncode, proc.stdout + proc.stderr

    def published(self, container_port: int) -> int:
        out = subprocess.run(["docker", "port", self.name, f"{container_port}/tcp"], capture_output=True,
                             text=True, check=True).stdout
        return int(out.strip().splitlines()[0].rsplit(":", 1)[1])


def _wait_for_ssh(host: str, port: int, name: str) -> None:
    deadline = time.monotonic() + SSH_WAIT
    last = ""
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=2) as s:
                s.settimeout(2)
                if s.recv(64).startswith(b"SSH-"):
                    return
        except OSError as exc:
            last = str(exc)
        time.sleep(0.2)
    logs = subprocess.run(["docker", "logs", "--tail", "30", name], capture_output=True, text=True)
    raise RuntimeError(f"sim host {name}: sshd did not answer on {host}:{port} within {SSH_WAIT:g}s "
                       f"({last})\n"
                       f"{logs.stdout}{logs.stderr}")


def start_simhost(name: str, workdir: Path, *, image: str | None = None, user: str = "deploy",
                  extra_ports: tuple[int, ...] = ()) -> SimHost:
    from tests.images import image_ref

    image = image or image_ref("simhost")
    workdir.mkdir(parents=True, exist_ok=True)
    key = workdir / f"{name}_ed25519"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{name}-test", "-f", str(key)],
                       check=True)
    volume = f"{name}-docker"
    subprocess.run(["docker", "volume", "create", "--label", f"{LABEL}={name}", volume], check=True,
                   capture_output=True)
    argv = run_argv(name=name, image=image, volume=volume, authorized_key=key.with_suffix(".pub").read_text()
                    .strip(), extra_ports=extra_ports)
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        subprocess.run(["docker", "volume", "rm", "-f", volume], capture_output=True)
        raise RuntimeError(f"sim host {name} did not start: {proc.stderr.strip()}")
    host = SimHost(name, volume, "127.0.0.1", 0, key, workdir / "known_hosts", user)
    try:
        host.port = host.published(22)
        _wait_for_ssh(host.host, host.port, name)
    except Exception:
        stop_simhost(host)
        raise
    return host


def stop_simhost(host: SimHost) -> None:
    """Remove the container (and the engine running inside it) and its volume: only what we created."""
    subprocess.run(["docker", "rm", "-f", "-v", host.name], capture_output=True, timeout=120)
    subprocess.run(["docker", "volume", "rm", "-f", host.volume], capture_output=True, timeout=120)


@pytest.fixture
def simhost(unique: str, tmp_path: Path) -> Iterator[SimHost]:
    host = start_simhost(f"{unique}-simhost", tmp_path / "simhost")
    try:
        yield host
    finally:
        stop_simhost(host)


def start_simhosts(prefix: str, workdir: Path, count: int, *, extra_ports: tuple[int, ...] = ()) -> list[SimHost]:
    """`count` sim hosts `<prefix>-node0..` sharing ONE key (an environment has one ssh.key_file: each next host
    authorizes the first one's key). When one does not start, the ones already started are stopped."""
    hosts: list[SimHost] = []
    try:
        for i in range(count):
            if hosts:
                for suffix in ("", ".pub"):
                    shutil.copy(f"{hosts[0].key_file}{suffix}", workdir / f"{prefix}-node{i}_ed25519{suffix}")
            hosts.append(start_simhost(f"{prefix}-node{i}", workdir, extra_ports=extra_ports))
    except BaseException:
        for host in hosts:
            stop_simhost(host)
        raise
    return hosts
