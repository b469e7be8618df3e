"""The dockyard program run in-process, as the console script runs it: its exit code (stdout and stderr are
left to pytest's capsys)."""

from __future__ import annotations

from provision.cli import program


def run_cli(*argv: str) -> int:
    try:
        program.run(["dockyard", *argv], exit=True)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
