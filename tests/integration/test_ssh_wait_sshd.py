"""The SSH wait against the real test sshd: directly, and through a bastion (`ssh.jump`) as a direct-tcpip
channel, the way a host in a private subnet is reached."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from provision.errors import StepFailed
from provision.providers import HostInfo
from provision.providers.aws import wait_until_ssh
from provision.report import Reporter
from provision.spec import Playbook
from provision.ssh_wait import wait_for_ssh

pytestmark = pytest.mark.integration


def _playbook(sshd, tmp_path: Path, jump: str | None) -> Playbook:
    known = tmp_path / "known_hosts"
    known.write_text(Path(sshd.known_hosts).read_text())
    return Playbook.model_validate({
        "project": "shop", "environment": "staging", "provider": "aws",
        "host": {"region": "eu-west-1", "ssh_from": ["127.0.0.1/32"]},
        "ssh": {"user": sshd.user, "key_file": str(sshd.key_file), "known_hosts": str(known),
                **({"jump": jump} if jump else {})}})


def _info(address: str, port: int) -> HostInfo:
    return HostInfo(provider="aws", host_id="i-0test", state="running", ssh_address=address, ssh_port=port,
                    ssh_user="root", private_address=address)


def test_real_sshd_banner_directly(sshd) -> None:
    assert wait_for_ssh(sshd.host, sshd.port, timeout=30, interval=0.2).startswith("SSH-2.0-OpenSSH")


def test_banner_through_a_jump_host(sshd, tmp_path: Path) -> None:
    pb = _playbook(sshd, tmp_path, jump=f"{sshd.user}@{sshd.host}:{sshd.port}")
    rep = Reporter(console=Console(file=io.StringIO()))
    banner = wait_until_ssh(pb, _info(sshd.host, sshd.port), rep, timeout=30)
    assert banner.startswith("SSH-2.0-OpenSSH")


def test_a_closed_port_times_out_naming_the_instance(sshd, tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on (bound, never listening)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        pb = _playbook(sshd, tmp_path, jump=None)
        rep = Reporter(console=Console(file=io.StringIO()))
        with pytest.raises(StepFailed, match=rf"127\.0\.0\.1:{port} \(i-0test private IP\).*refused"):
            wait_until_ssh(pb, _info("127.0.0.1", port), rep, timeout=0.5)
