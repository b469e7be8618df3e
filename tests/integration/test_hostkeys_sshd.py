"""Host keys against the real test sshd: whose key changed (jump host or target), strict mode, pins, and the
`--strict-host-keys` flag through the command line (in-process; `status` only reads, and fails before that).

The jump host and the target are the same sshd under two names: `localhost` (the bastion) and `127.0.0.1`
(the target, dialled from the bastion), so each has its own known_hosts entry.
"""

from __future__ import annotations

import base64
import io
import os
import subprocess
from pathlib import Path

import paramiko
import pytest
from rich.console import Console

from provision.errors import StepFailed
from provision.hostkeys import HostKeyTrust, fingerprint
from provision.providers import HostInfo
from provision.providers.aws import wait_until_ssh
from provision.remote import Remote, SshTarget
from provision.report import Reporter
from provision.spec import Playbook
from tests.cli import run_cli

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def no_user_known_hosts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """~/.ssh/known_hosts is read by every playbook-made target: point HOME at an empty directory."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def server_key(sshd) -> paramiko.PKey:
    return paramiko.PKey.from_type_string(sshd.host_key_line.split()[0],
                                          base64.b64decode(sshd.host_key_line.split()[1]))


def wrong_key_line(tmp_path: Path) -> str:
    other = tmp_path / "other_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    return " ".join(other.with_suffix(".pub").read_text().split()[:2])


def via_bastion(sshd, kh: Path, **kw) -> SshTarget:
    return SshTarget(host="127.0.0.1", port=sshd.port, user="root", key_file=sshd.key_file, known_hosts=kh,
                     jump=f"root@localhost:{sshd.port}", connect_timeout=5, **kw)


def test_a_changed_jump_host_key_names_the_jump_host(sshd, tmp_path: Path) -> None:
    kh = tmp_path / "known_hosts"
    content = (f"[localhost]:{sshd.port} {wrong_key_line(tmp_path)}\n"
               f"[127.0.0.1]:{sshd.port} {sshd.host_key_line}\n")
    kh.write_text(content)
    with pytest.raises(StepFailed) as err:
        Remote(via_bastion(sshd, kh)).open()
    msg = str(err.value)
    assert msg.startswith(f"ssh jump host root@localhost:{sshd.port}: the host key changed for "
                          f"[localhost]:{sshd.port}"), msg
    assert f"{kh}:1" in msg and "127.0.0.1" not in msg.split(" (")[0]
    assert kh.read_text() == content  # never overwritten


def test_a_changed_target_key_behind_a_good_jump_host_names_the_target(sshd, tmp_path: Path) -> None:
    kh = tmp_path / "known_hosts"
    kh.write_text(f"[localhost]:{sshd.port} {sshd.host_key_line}\n"
                  f"[127.0.0.1]:{sshd.port} {wrong_key_line(tmp_path)}\n")
    with pytest.raises(StepFailed) as err:
        Remote(via_bastion(sshd, kh)).open()
    msg = str(err.value)
    assert msg.startswith(f"ssh root@127.0.0.1:{sshd.port}: the host key changed for [127.0.0.1]:{sshd.port}")
    assert f"{kh}:2" in msg and "jump host" not in msg


def test_strict_mode_refuses_first_use_for_jump_host_and_target(sshd, tmp_path: Path) -> None:
    kh = tmp_path / "known_hosts"
    fp = fingerprint(server_key(sshd))
    with pytest.raises(StepFailed) as err:
        Remote(via_bastion(sshd, kh, trust=HostKeyTrust(strict=True))).open()
    assert str(err.value).startswith(f"ssh jump host root@localhost:{sshd.port}: unknown host key ssh-ed25519 "
                                     f"{fp}")
    assert not kh.exists()
    kh.write_text(f"[localhost]:{sshd.port} {sshd.host_key_line}\n")  # the bastion is known, the target not
    with pytest.raises(StepFailed) as err:
        Remote(via_bastion(sshd, kh, trust=HostKeyTrust(strict=True))).open()
    assert str(err.value).startswith(f"ssh root@127.0.0.1:{sshd.port}: unknown host key")
    assert f'ssh.host_key: "{fp}"' in str(err.value)
    # pinning the target's key is enough; the bastion stays checked against the file
    pinned = HostKeyTrust(strict=True, pinned=(fp,))
    with Remote(via_bastion(sshd, kh, trust=pinned)) as r:
        assert r.run(["echo", "pinned"]).stdout == "pinned\n"
    assert kh.read_text() == f"[localhost]:{sshd.port} {sshd.host_key_line}\n"


def test_a_pin_that_does_not_match_names_expected_and_actual(sshd, tmp_path: Path) -> None:
    pin = wrong_key_line(tmp_path)
    t = SshTarget(sshd.host, sshd.port, "root", sshd.key_file, sshd.known_hosts,
                  trust=HostKeyTrust(pinned=(pin,)))  # sshd.known_hosts has the right key: the pin decides
    with pytest.raises(StepFailed) as err:
        Remote(t).open()
    expected = fingerprint(paramiko.PKey.from_type_string("ssh-ed25519",
                                                          base64.b64decode(pin.split()[1])))
    msg = str(err.value)
    assert msg.startswith(f"ssh root@127.0.0.1:{sshd.port}: the host key is not the one pinned in ssh.host_key")
    assert f"expected {expected}" in msg and f"offers ssh-ed25519 {fingerprint(server_key(sshd))}" in msg


def _playbook(sshd, tmp_path: Path, ssh_extra: str = "") -> Path:
    path = tmp_path / "playbooks" / "ci.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"""\
project: shop
environment: ci
provider: existing
host: {{address: 127.0.0.1}}
ssh:
  user: root
  port: {sshd.port}
  key_file: {sshd.key_file}
{ssh_extra}""")
    return path


def test_cli_strict_unknown_key_exits_1_with_one_line_saying_how_to_pin(sshd, tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str],
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    playbook = _playbook(sshd, tmp_path)
    fp = fingerprint(server_key(sshd))
    for how in ("flag", "env"):
        args = ["status", "-p", str(playbook)] + (["--strict-host-keys"] if how == "flag" else [])
        if how == "env":
            monkeypatch.setenv("DOCKYARD_STRICT_HOST_KEYS", "1")
        assert run_cli(*args) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, err
        assert err[0].startswith(f"dockyard: failed: ssh root@127.0.0.1:{sshd.port}: unknown host key")
        assert f'ssh.host_key: "{fp}"' in err[0]
        assert not (tmp_path / "playbooks" / ".dockyard").exists()  # nothing remembered


def test_cli_committed_known_hosts_file_satisfies_strict_mode(sshd, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    committed = tmp_path / "playbooks" / "known_hosts"
    committed.parent.mkdir(parents=True)
    committed.write_text(f"[127.0.0.1]:{sshd.port} {sshd.host_key_line}\n")
    playbook = _playbook(sshd, tmp_path, "  known_hosts: known_hosts\n  strict_host_keys: true\n")
    assert run_cli("status", "-p", str(playbook), "--json") == 0, capsys.readouterr().err
    capsys.readouterr()
    committed.write_text(f"[127.0.0.1]:{sshd.port} {wrong_key_line(tmp_path)}\n")
    assert run_cli("status", "-p", str(playbook)) == 1
    err = capsys.readouterr().err
    assert f"the host key changed for [127.0.0.1]:{sshd.port} (remembered in {committed}:1" in err


def test_the_ssh_wait_through_a_bastion_names_the_bastion_when_its_key_changed(sshd, tmp_path: Path) -> None:
    """provision's SSH wait (ssh.jump) checks only the bastion's key, and says it is the bastion's; the
    playbook's ssh.host_key pins the target, so it must not be applied to the bastion."""
    kh = tmp_path / "known_hosts"
    kh.write_text(f"[localhost]:{sshd.port} {sshd.host_key_line}\n")
    data = {"project": "shop", "environment": "staging", "provider": "aws",
            "host": {"region": "eu-west-1", "ssh_from": ["127.0.0.1/32"]},
            "ssh": {"user": "root", "key_file": str(sshd.key_file), "known_hosts": str(kh),
                    "jump": f"root@localhost:{sshd.port}", "strict_host_keys": True,
                    "host_key": wrong_key_line(tmp_path)}}
    info = HostInfo(provider="aws", host_id="i-0test", state="running", ssh_address="127.0.0.1",
                    ssh_port=sshd.port, ssh_user="root", private_address="127.0.0.1")
    rep = Reporter(console=Console(file=io.StringIO()))
    assert wait_until_ssh(Playbook.model_validate(data), info, rep, timeout=30).startswith("SSH-2.0-")
    (tmp_path / "later").mkdir()
    kh.write_text(f"[localhost]:{sshd.port} {wrong_key_line(tmp_path / 'later')}\n")
    with pytest.raises(StepFailed) as err:
        wait_until_ssh(Playbook.model_validate(data), info, rep, timeout=30)
    assert str(err.value).startswith(f"ssh jump host root@localhost:{sshd.port}: the host key changed")


def _connections_to(port: int) -> int:
    """This process's own ESTABLISHED TCP sockets to port `port` (/proc/net/tcp rows whose socket inode is one
    of our file descriptors: sshd's own sockets, e.g. of a jump host's forwarding, are not ours)."""
    ours = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            ours.add(link[len("socket:["):-1])
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote, state, inode = fields[2], fields[3], fields[9]
        if remote.endswith(f":{port:04X}") and state == "01" and inode in ours:
            count += 1
    return count


def test_a_refused_host_key_leaves_no_connection_open(sshd, tmp_path: Path) -> None:
    """sshd counts a connection that never authenticates against MaxStartups (10 on a stock host) until its
    LoginGraceTime (120 s): a refused key must close the socket at once, for the target and the jump host,
    or a few refusals in a row make the host drop every new connection."""
    kh = tmp_path / "known_hosts"
    wrong = wrong_key_line(tmp_path)
    kh.write_text(f"[localhost]:{sshd.port} {wrong}\n[127.0.0.1]:{sshd.port} {wrong}\n")
    before = _connections_to(sshd.port)
    for target in (via_bastion(sshd, kh),
                   SshTarget("127.0.0.1", sshd.port, "root", sshd.key_file, kh, connect_timeout=5)):
        for _ in range(3):
            with pytest.raises(StepFailed, match="host key"):
                Remote(target).open()
    assert _connections_to(sshd.port) == before
