"""Teardown's confirmation: --yes, a typed environment name on a terminal, refusal without a terminal."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from provision.changes import Change, Step
from provision.cli.aws import confirm
from provision.errors import InputError, StepFailed
from provision.ops import Ec2Call, params
from provision.report import Reporter
from provision.spec import Playbook

pytestmark = pytest.mark.unit

PB = Playbook.model_validate({"project": "shop", "environment": "staging", "provider": "aws",
                              "host": {"ssh_from": ["203.0.113.7/32"]}})
TERMINATE = Ec2Call("instance.terminate", params(ids=["i-1"]))
CHANGES = [Change("aws:instance", "delete", "i-1 running", (Step("terminate i-1", TERMINATE),))]


class Tty(io.StringIO):
    def __init__(self, text: str, tty: bool = True) -> None:
        super().__init__(text)
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def _reporter() -> Reporter:
    return Reporter(console=Console(file=io.StringIO()))


def test_typed_environment_name_confirms(monkeypatch) -> None:
    monkeypatch.setattr("sys.stdin", Tty("staging\n"))
    rep = _reporter()
    confirm(PB, CHANGES, yes=False, reporter=rep)
    assert "will delete aws:instance" in rep.console.file.getvalue()


def test_anything_else_cancels(monkeypatch) -> None:
    monkeypatch.setattr("sys.stdin", Tty("y\n"))
    with pytest.raises(StepFailed, match="cancelled"):
        confirm(PB, CHANGES, yes=False, reporter=_reporter())


def test_no_terminal_needs_yes(monkeypatch) -> None:
    monkeypatch.setattr("sys.stdin", Tty("staging\n", tty=False))
    with pytest.raises(InputError, match="--yes"):
        confirm(PB, CHANGES, yes=False, reporter=_reporter())
    confirm(PB, CHANGES, yes=True, reporter=_reporter())  # --yes never asks
    confirm(PB, [], yes=False, reporter=_reporter())  # nothing to destroy: nothing to ask
