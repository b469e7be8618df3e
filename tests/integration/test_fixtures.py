"""The harness itself: the sshd fixture really serves SSH and reaches this machine's engine through it."""

from __future__ import annotations

import shutil
import subprocess

import pytest

pytestmark = pytest.mark.integration


def _ssh(sshd, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ssh", "-p", str(sshd.port), "-i", str(sshd.key_file), "-o", "BatchMode=yes",
         "-o", f"UserKnownHostsFile={sshd.known_hosts}", "-o", "StrictHostKeyChecking=yes",
         f"{sshd.user}@{sshd.host}", *argv],
        capture_output=True, text=True, timeout=30, check=False)


def test_sshd_accepts_the_throwaway_key_and_checks_its_host_key(sshd) -> None:
    done = _ssh(sshd, "id", "-u")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0"


def test_engine_is_reachable_through_sshd(sshd, docker_client) -> None:
    done = _ssh(sshd, "docker", "version", "--format", "{{.Server.Version}}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == docker_client.version()["Version"]


def test_the_test_sshd_has_openssh_stock_limits(sshd) -> None:
    """Nothing raises MaxSessions/MaxStartups: dockyard must keep within a cloud image's defaults."""
    config = sshd.key_file.parent / "sshd_config"
    binary = shutil.which("sshd") or "/usr/sbin/sshd"
    done = subprocess.run([binary, "-T", "-f", str(config)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    effective = done.stdout.splitlines()
    assert "maxsessions 10" in effective and "maxstartups 10:30:100" in effective
