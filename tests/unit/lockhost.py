"""A Remote stand-in for the lock and audit tests: runs each argv with this machine's `sh` in a scratch
directory (the SSH user's "home"), so the real acquire/read/release/append scripts run, with stdin."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from provision.errors import StepFailed
from provision.sshconn import RunResult


@dataclass
class LocalRemote:
    home: Path
    user: str = "deploy"  # not root: the dockyard directory is .dockyard/… relative to `home`
    calls: list[list[str]] = field(default_factory=list)
    opened: int = 0
    closed: int = 0
    target: Any = field(default_factory=lambda: SimpleNamespace(label="deploy@test-host:22"))

    def open(self) -> LocalRemote:
        self.opened += 1
        return self

    def close(self) -> None:
        self.closed += 1

    def __enter__(self) -> LocalRemote:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, argv: list[str], *, stdin: bytes | None = None, check: bool = True, sudo: bool = False,
            timeout: float | None = None) -> RunResult:
        assert isinstance(argv, list) and all(isinstance(a, str) for a in argv)
        self.calls.append(list(argv))
        done = subprocess.run(argv, cwd=self.home, input=stdin or b"", capture_output=True, timeout=30,
                              check=False)
        result = RunResult(done.returncode, done.stdout.decode("utf-8", "replace"),
                           done.stderr.decode("utf-8", "replace"))
        if check and not result.ok:
            raise StepFailed(f"exited {result.exit_code}: {result.stderr[-200:]}")
        return result


def playbook(project: str = "shop", environment: str = "staging") -> Any:
    return SimpleNamespace(project=project, environment=environment, apps={"web": None, "worker": None},
                           source=None)
