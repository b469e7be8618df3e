"""The hosts dockyard is tested against run sshd with OpenSSH's stock limits (MaxSessions 10, MaxStartups
10:30:100), as a cloud image does: a sim host (tests/simhost.py) and the local sandbox's image
(provision/sandbox). `sshd -T` prints the effective configuration."""

from __future__ import annotations

import subprocess

import pytest

from provision.sandbox import ensure_sandbox_image
from tests.simhost import simhost  # noqa: F401 - the fixture

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

STOCK = ["maxsessions 10", "maxstartups 10:30:100"]


def test_a_sim_host_keeps_the_stock_sshd_limits(simhost) -> None:  # noqa: F811 - the fixture
    code, out = simhost.exec("sshd -T")
    assert code == 0, out
    lines = out.splitlines()
    assert all(line in lines for line in STOCK), [line for line in lines if line.startswith("max")]


def test_the_local_sandbox_image_keeps_the_stock_sshd_limits(docker_client, unique: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKYARD_MINBASE", "dockyard-ci/bookworm-minbase:1")  # no registry here
    ref = ensure_sandbox_image(docker_client, lambda _: None).ref
    done = subprocess.run(["docker", "run", "--rm", "--name", f"{unique}-sshd-t", "--entrypoint", "sh", ref, "-c",
                           "ssh-keygen -A >/dev/null && sshd -T"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert all(line in lines for line in STOCK), [line for line in lines if line.startswith("max")]
