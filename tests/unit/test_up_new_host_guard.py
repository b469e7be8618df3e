"""`up`'s guard: a playbook copied to a new file name would silently provision a second host (the environment
defaults to the file's stem). Before creating a host for such an environment, `up` says what it would create
and asks; under --json or without a terminal it refuses (exit 2) unless --yes or `environment:` is set."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from provision.changes import HostRecap
from provision.cli import pipeline
from provision.phases.up import UpResult, new_host_named_by_file
from provision.playbook import environment_from_file_name, load_playbook
from provision.providers.hostinfo import HostInfo
from tests.cli import run_cli

pytestmark = pytest.mark.unit

BODY = "project: demo\nprovider: local\napps:\n  web:\n    template: python-web\n    port: 8000\n"
EXISTS = HostInfo(provider="local", host_id="c0ffee", state="running", ssh_address="127.0.0.1", ssh_port=2222,
                  ssh_user="dockyard")


def playbook(tmp_path: Path, name: str = "local-copy.yml", extra: str = "") -> Path:
    path = tmp_path / name
    path.write_text(extra + BODY)
    return path


class TtyIn(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def up_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """run_up replaced by a recorder (nothing is provisioned), the local host lookup by "absent"."""
    calls: list[str] = []

    def fake_run_up(pb: Any, **kwargs: Any) -> UpResult:
        calls.append(pb.environment)
        return UpResult(HostRecap("demo-x", [], 0.0))

    monkeypatch.setattr(pipeline, "run_up", fake_run_up)
    monkeypatch.setattr("provision.providers.local.find_host", lambda pb: None)
    return calls


def test_the_loader_remembers_whether_environment_was_written(tmp_path: Path) -> None:
    assert environment_from_file_name(load_playbook(playbook(tmp_path)))
    assert not environment_from_file_name(load_playbook(playbook(tmp_path, "b.yml", "environment: local\n")))
    (tmp_path / "base.yml").write_text("environment: staging\n")
    extended = load_playbook(playbook(tmp_path, "c.yml", "extends: base.yml\n"))
    assert extended.environment == "staging" and not environment_from_file_name(extended)


def test_only_a_missing_host_named_by_its_file_needs_confirming(tmp_path: Path) -> None:
    pb = load_playbook(playbook(tmp_path))
    what = new_host_named_by_file(pb, find=lambda _: None)
    assert what is not None and "dockyard-demo-local-copy" in what and "'local-copy'" in what
    assert new_host_named_by_file(pb, find=lambda _: EXISTS) is None
    named = load_playbook(playbook(tmp_path, "d.yml", "environment: local\n"))
    assert new_host_named_by_file(named, find=lambda _: None) is None


def test_json_refuses_naming_the_file(tmp_path: Path, up_calls: list[str], capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", TtyIn(""))  # even with a terminal: --json never asks
    assert run_cli("up", "-p", str(playbook(tmp_path)), "--json") == 2
    out = capsys.readouterr()
    doc = json.loads(out.out)
    message = doc["errors"][0]["message"]
    assert "set `environment:` in the file or pass --yes" in message and "local-copy.yml" in message
    assert doc["errors"][0]["file"].endswith("local-copy.yml") and up_calls == []


def test_no_terminal_refuses_and_yes_goes_ahead(tmp_path: Path, up_calls: list[str],
                                                capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))  # piped: nobody to answer, even a "y"
    path = playbook(tmp_path)
    assert run_cli("up", "-p", str(path)) == 2
    out = capsys.readouterr()
    assert "up will create a sandbox container dockyard-demo-local-copy" in out.out  # what, before refusing
    assert "set `environment:` in the file or pass --yes" in out.err
    assert up_calls == []
    assert run_cli("up", "-p", str(path), "--yes") == 0
    assert up_calls == ["local-copy"]


def test_a_terminal_asks(tmp_path: Path, up_calls: list[str], capsys: pytest.CaptureFixture[str],
                         monkeypatch: pytest.MonkeyPatch) -> None:
    path = playbook(tmp_path)
    monkeypatch.setattr("sys.stdin", TtyIn("n\n"))
    assert run_cli("up", "-p", str(path)) == 1
    assert "cancelled" in capsys.readouterr().err and up_calls == []
    monkeypatch.setattr("sys.stdin", TtyIn("y\n"))
    assert run_cli("up", "-p", str(path)) == 0
    assert "Create a new local host for environment 'local-copy'?" in capsys.readouterr().err
    assert up_calls == ["local-copy"]


def test_no_question_when_the_host_exists_or_environment_is_set(tmp_path: Path, up_calls: list[str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert run_cli("up", "-p", str(playbook(tmp_path, "e.yml", "environment: local\n"))) == 0
    monkeypatch.setattr("provision.providers.local.find_host", lambda pb: EXISTS)
    assert run_cli("up", "-p", str(playbook(tmp_path))) == 0
    assert run_cli("up", "-p", str(playbook(tmp_path)), "--check") == 0
    assert up_calls == ["local", "local-copy", "local-copy"]


def test_check_mode_creates_nothing_so_it_never_asks(tmp_path: Path, up_calls: list[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert run_cli("up", "-p", str(playbook(tmp_path)), "--check") == 0
    assert up_calls == ["local-copy"]
