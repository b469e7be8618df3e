"""provision.remote against a real sshd on 127.0.0.1 (root, this machine's engine) and a sim host (sudo)."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from provision.errors import StepFailed
from provision.remote import Remote, SshTarget, command_line
from tests.ports import free_port
from tests.simhost import simhost  # noqa: F401  (fixture)

pytestmark = pytest.mark.integration


def target(sshd, known_hosts: Path, **kw) -> SshTarget:
    return SshTarget(host=sshd.host, port=sshd.port, user=sshd.user, key_file=sshd.key_file,
                     known_hosts=known_hosts, **kw)


def accepted(sshd) -> int:
    return sshd.log.read_text(errors="replace").count("Accepted publickey")


def test_trust_on_first_use_then_strict(sshd, tmp_path):
    kh = tmp_path / "nested" / "known_hosts"
    with Remote(target(sshd, kh)) as r:
        assert r.run(["echo", "hi"]).stdout == "hi\n"
    assert kh.read_text() == f"[{sshd.host}]:{sshd.port} {sshd.host_key_line}\n"
    with Remote(target(sshd, kh)) as r:  # the remembered key matches: no prompt, no change
        r.run(["true"])
    assert kh.read_text().count("\n") == 1

    other = tmp_path / "other_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    fake = " ".join(other.with_suffix(".pub").read_text().split()[:2])
    kh.write_text(f"# header\n[{sshd.host}]:{sshd.port} {fake}\n")
    with pytest.raises(StepFailed) as err:
        Remote(target(sshd, kh)).open()
    msg = str(err.value)
    assert "host key changed" in msg
    assert f"{kh}:2" in msg
    assert f"ssh-keygen -R '[{sshd.host}]:{sshd.port}' -f {kh}" in msg
    assert kh.read_text() == f"# header\n[{sshd.host}]:{sshd.port} {fake}\n"  # never overwritten silently


def test_run_exit_codes_stderr_and_stdin(sshd):
    with Remote(target(sshd, sshd.known_hosts)) as r:
        res = r.run(["sh", "-c", "echo out; echo err >&2; exit 7"], check=False)
        assert (res.exit_code, res.stdout, res.stderr) == (7, "out\n", "err\n")
        with pytest.raises(StepFailed) as err:
            r.run(["sh", "-c", "echo 'E: Unable to locate package nope' >&2; exit 100"])
        assert "exited 100" in str(err.value) and "Unable to locate package nope" in str(err.value)
        # argv is quoted once: shell metacharacters arrive as literal arguments
        tricky = ["a b", "$HOME", "it's; rm -rf /"]
        assert r.run(["printf", "%s|", *tricky]).stdout == "".join(f"{t}|" for t in tricky)
        payload = os.urandom(1_500_000)
        got = r.run(["sha256sum"], stdin=payload).stdout.split()[0]
        assert got == hashlib.sha256(payload).hexdigest()
        script = r.run_script("a=1\nb=2\necho $((a+b)) $(id -u)\n")
        assert script.stdout == "3 0\n"


def test_timeout_is_a_step_failure(sshd):
    with Remote(target(sshd, sshd.known_hosts)) as r:
        with pytest.raises(StepFailed, match="timed out"):
            r.run(["sleep", "30"], timeout=0.5)
        assert r.run(["echo", "still usable"]).stdout == "still usable\n"


def test_put_file_atomic_with_mode(sshd, tmp_path):
    dest = tmp_path / "dir" / "app.env"
    dest.parent.mkdir()
    with Remote(target(sshd, sshd.known_hosts)) as r:
        r.put_file(str(dest), b"A=1\n", mode=0o600)
        assert dest.read_bytes() == b"A=1\n"
        assert dest.stat().st_mode & 0o777 == 0o600
        first_inode = dest.stat().st_ino
        r.put_file(str(dest), b"A=2\n", mode=0o640, owner="root")
        assert dest.read_bytes() == b"A=2\n"
        assert dest.stat().st_mode & 0o777 == 0o640
        assert dest.stat().st_ino != first_inode  # replaced by rename, never rewritten in place
        assert sorted(p.name for p in dest.parent.iterdir()) == ["app.env"]  # no temp file left
        with pytest.raises(StepFailed):
            r.put_file(str(tmp_path / "missing-dir" / "x"), b"x")


def test_docker_rides_the_same_connection(sshd, docker_client, unique):
    container = docker_client.containers.create("dockyard-ci/bookworm-minbase:1", ["true"], name=unique)
    try:
        before = accepted(sshd)
        with Remote(target(sshd, sshd.known_hosts)) as r:
            transport = r.transport
            r.run(["true"])
            client = r.docker()
            ids = {c.id for c in client.containers.list(all=True, filters={"name": unique})}
            assert ids == {container.id}
            assert client.version()["ApiVersion"]
            r.run(["true"])
            assert r.transport is transport
            assert r.connections_opened == 1
            sock = transport.sock
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        # sshd logs every accepted login; give it a moment to flush (bounded)
        deadline = time.monotonic() + 5
        while accepted(sshd) < before + 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert accepted(sshd) == before + 1
    finally:
        container.remove(force=True)


def test_reconnect_makes_a_new_session_and_a_new_docker_client(sshd):
    r = Remote(target(sshd, sshd.known_hosts))
    with r:
        first_transport, first_client = r.transport, r.docker()
        r.reconnect()
        assert r.transport is not first_transport and not first_transport.is_active()
        assert r.docker() is not first_client
        assert r.docker().ping()
        assert r.connections_opened == 2


def test_connection_errors_are_one_line(sshd, tmp_path):
    wrong = tmp_path / "wrong_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong)], check=True)
    with pytest.raises(StepFailed) as err:
        Remote(SshTarget(sshd.host, sshd.port, "root", wrong, sshd.known_hosts)).open()
    assert "authentication failed" in str(err.value) and "\n" not in str(err.value)
    closed = free_port()
    with pytest.raises(StepFailed) as err:
        Remote(SshTarget("127.0.0.1", closed, "root", wrong, tmp_path / "kh", connect_timeout=3)).open()
    assert "connection refused" in str(err.value)
    with socket.socket() as silent:  # accepts TCP but never speaks SSH
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        with pytest.raises(StepFailed) as err:
            Remote(SshTarget("127.0.0.1", port, "root", wrong, tmp_path / "kh", connect_timeout=1)).open()
        assert "no SSH banner" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(StepFailed, match="does not exist"):
        Remote(SshTarget("127.0.0.1", closed, "root", tmp_path / "nope", tmp_path / "kh")).open()


def test_sudo_path_for_a_non_root_user(simhost):  # noqa: F811
    assert command_line(["id", "-u"], sudo=True, user="deploy") == "sudo -n -- id -u"
    assert command_line(["id", "-u"], sudo=True, user="root") == "id -u"
    with Remote(simhost.target()) as r:
        assert r.run(["id", "-u"]).stdout.strip() != "0"
        assert r.run(["id", "-u"], sudo=True).stdout.strip() == "0"
        r.put_file("/etc/dockyard-test.conf", b"secret-ish\n", mode=0o600, sudo=True)
        r.put_file("/home/deploy/plain.txt", b"plain\n", mode=0o640)
    code, out = simhost.exec("stat -c '%U %a' /etc/dockyard-test.conf /home/deploy/plain.txt; "
                             "cat /etc/dockyard-test.conf; ls -a /etc | grep -c dyk- || true")
    assert code == 0, out
    assert out.splitlines() == ["root 600", "deploy 640", "secret-ish", "0"]


def test_jump_host(sshd, tmp_path):
    """`ssh.jump`: the target is reached through a direct-tcpip channel of the bastion (here: itself)."""
    kh = tmp_path / "known_hosts"
    before = accepted(sshd)
    with Remote(target(sshd, kh, jump=f"root@{sshd.host}:{sshd.port}")) as r:
        assert r.run(["echo", "via bastion"]).stdout == "via bastion\n"
        assert r._gateway is not None and r._gateway.is_connected
    deadline = time.monotonic() + 5
    while accepted(sshd) < before + 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert accepted(sshd) == before + 2  # one login on the bastion, one on the target through it
    assert kh.read_text() == f"[{sshd.host}]:{sshd.port} {sshd.host_key_line}\n"
