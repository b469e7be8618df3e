"""A host whose sshd allows fewer sessions than dockyard's budget (MaxSessions 3 < 8): the refused channel
lowers the budget, is said once, and every command still runs. A second sshd is started from the `sshd`
fixture's own config and keys, on another 127.0.0.1 port, with only MaxSessions changed."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from provision.remote import Remote, SshTarget
from tests.ports import free_port

pytestmark = pytest.mark.integration

MAX_SESSIONS = 3


@pytest.fixture
def small_sshd(sshd, tmp_path: Path) -> Iterator[int]:
    port = free_port()
    config = (sshd.key_file.parent / "sshd_config").read_text()
    config = re.sub(r"(?m)^Port \d+$", f"Port {port}", config)
    config = re.sub(r"(?m)^PidFile .*$", f"PidFile {tmp_path / 'sshd.pid'}", config)
    (tmp_path / "sshd_config").write_text(config + f"MaxSessions {MAX_SESSIONS}\n")
    binary = shutil.which("sshd") or "/usr/sbin/sshd"
    proc = subprocess.Popen([binary, "-D", "-f", str(tmp_path / "sshd_config"), "-E", str(tmp_path / "log")],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):  # bounded: 10 s
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    if s.recv(64).startswith(b"SSH-"):
                        break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail(f"second sshd did not come up: {(tmp_path / 'log').read_text()}")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_lower_max_sessions_than_the_budget_is_learnt_once_and_everything_runs(sshd, small_sshd: int) -> None:
    known_hosts = sshd.known_hosts.parent / f"known_hosts_{small_sshd}"
    target = SshTarget("127.0.0.1", small_sshd, "root", sshd.key_file, known_hosts)
    assert target.max_sessions == 8
    warnings: list[str] = []
    results: list[str] = []
    errors: list[BaseException] = []
    with Remote(target) as remote:
        remote.warn = warnings.append

        def one(n: int) -> None:
            try:
                results.append(remote.run(["sh", "-c", f"sleep 1; echo {n}"]).stdout.strip())
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=one, args=(n,), daemon=True) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads)
        assert errors == [] and sorted(results) == [str(n) for n in range(8)]
        assert 1 <= remote.budget.limit <= MAX_SESSIONS and remote.connections_opened == 1
    assert len(warnings) == 1, warnings
    assert re.fullmatch(rf"ssh root@127\.0\.0\.1:{small_sshd}: the server refused a \d+(st|nd|rd|th) session; "
                        r"using at most \d at once", warnings[0]), warnings
