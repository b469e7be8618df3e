"""The shipped CI example uses only commands and flags dockyard really has: every `dockyard …` line of
examples/github-actions/release.yml is checked against the command's own `--help`."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from tests.cli import run_cli

pytestmark = pytest.mark.unit

WORKFLOW = Path(__file__).resolve().parents[2] / "examples" / "github-actions" / "release.yml"


def dockyard_lines() -> list[list[str]]:
    doc = yaml.safe_load(WORKFLOW.read_text())
    runs = [step["run"] for job in doc["jobs"].values() for step in job["steps"] if "run" in step]
    lines = []
    for script in runs:
        for line in script.splitlines():
            line = re.sub(r"\$\{\{[^}]*\}\}", "X", line).split(">")[0].strip()
            if line.startswith("dockyard "):
                lines.append(shlex.split(line))
    return lines


def test_the_workflow_runs_up_with_lock_wait_and_a_manual_rollback() -> None:
    commands = [argv[1] for argv in dockyard_lines()]
    assert "up" in commands and "rollback" in commands
    up = next(argv for argv in dockyard_lines() if argv[1] == "up")
    assert {"--json", "--lock-wait"} <= set(up)


def test_every_flag_in_the_workflow_is_a_documented_flag(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in dockyard_lines():
        capsys.readouterr()
        assert run_cli(argv[1], "--help") == 0
        helptext = capsys.readouterr().out
        flags = [a.split("=")[0] for a in argv[2:] if a.startswith("-")]
        assert flags, argv
        for flag in flags:
            assert re.search(rf"(^|[\s,]){re.escape(flag)}([\s=,\[]|$)", helptext, re.M), (argv[1], flag)
