"""The harness itself: the sshd fixture really serves SSH and reaches this machine's engine through it."""

from __future__ import annotations

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
