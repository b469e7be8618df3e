"""Drive a command through a pseudo-terminal the test owns, as a person at a terminal would: wait for each
prompt, type the reply (Enter is a carriage return in raw mode). Reads are bounded in time."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest


def run_in_pty(argv: Sequence[str], answers: Sequence[tuple[bytes, bytes]], *, cwd: Path,
               env: Mapping[str, str], timeout: float = 60) -> tuple[int, bytes]:
    """`argv` with a pseudo-terminal as its stdin/stdout/stderr; each (prompt, reply): when the output so far
    holds `prompt` (after the previous one), type `reply`. Returns (exit code, everything it printed)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(list(argv), cwd=cwd, env=dict(env), stdin=slave, stdout=slave, stderr=slave,
                            start_new_session=True)
    os.close(slave)
    seen = b""
    pending = list(answers)
    mark = 0
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the child closed its side (it exited)
                    break
                if not chunk:
                    break
                seen += chunk
            if pending and pending[0][0] in seen[mark:]:
                mark = seen.index(pending[0][0], mark) + len(pending[0][0])
                os.write(master, pending.pop(0)[1])
            if not ready and proc.poll() is not None:
                break
        else:
            pytest.fail(f"no end within {timeout}s; printed so far: {seen!r}")
        return proc.wait(timeout=30), seen
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        os.close(master)
