"""`exec`'s command after `--` comes from the argv the program was run with, not from this process's
sys.argv (so `Program.run(argv)` in-process, as the tests and embedders do, gets the right command)."""

from __future__ import annotations

from pathlib import Path

import pytest
from invoke import Context

from provision.cli import program
from provision.cli.deploy import _exec_argv

pytestmark = pytest.mark.unit

GOOD = Path(__file__).parent / "good_playbooks" / "local.yml"


def test_words_after_double_dash_are_kept_as_argv(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.argv", ["pytest", "--", "not", "this"])
    program.run(["dockyard", "validate", "-p", str(GOOD), "--", "sh", "-c", "echo 'a b'"], exit=False)
    capsys.readouterr()
    ctx = Context(config=program.config)
    assert _exec_argv(ctx, "") == ["sh", "-c", "echo 'a b'"]  # quoting kept word by word
    assert _exec_argv(ctx, "ls -l '/x y'") == ["ls", "-l", "/x y"]  # --cmd wins


def test_no_double_dash_means_no_command(monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.argv", ["pytest", "--", "stale"])
    program.run(["dockyard", "validate", "-p", str(GOOD)], exit=False)
    capsys.readouterr()
    assert _exec_argv(Context(config=program.config), "") == []
