"""The runner's answer to a lost SSH connection: one reconnect (Remote.recover), the step retried once, said
once; a second loss fails with one line naming step and host; other errors are not retried."""

from __future__ import annotations

import io
from dataclasses import dataclass

import pytest
import requests
from rich.console import Console

from provision.changes import Change, Status, Step
from provision.channels import ConnectionLost
from provision.errors import StepFailed
from provision.report import Reporter
from provision.runner import Runner

pytestmark = pytest.mark.unit


@dataclass(frozen=True)
class Target:
    label: str = "deploy@198.51.100.7:22"


class FakeRemote:
    """Remote's reconnect contract: `generation`, `recover(generation)`, `target.label`, `warn`. Each `run`
    pops the next scripted outcome (None: success; an exception: raised)."""

    def __init__(self, *outcomes: BaseException | None, reconnect_fails: bool = False) -> None:
        self.outcomes = list(outcomes)
        self.target = Target()
        self.generation = 1
        self.recovered: list[int] = []
        self.reconnect_fails = reconnect_fails
        self.ran: list[tuple[str, ...]] = []
        self.warn = print

    def run(self, argv, *, sudo=False, stdin=None) -> None:
        self.ran.append(tuple(argv))
        outcome = self.outcomes.pop(0)
        if outcome is not None:
            raise outcome

    def recover(self, generation: int) -> bool:
        self.recovered.append(generation)
        if self.reconnect_fails:
            raise StepFailed(f"ssh {self.target.label}: connection refused")
        self.generation += 1
        return True


@dataclass
class DeployCtx:  # deploy's context carries the Remote as `.remote`
    remote: FakeRemote

    def run(self, argv, *, sudo=False, stdin=None) -> None:
        self.remote.run(argv, sudo=sudo, stdin=stdin)


def task(*argvs: tuple[str, ...]) -> list[Change]:
    return [Change("app:x:image", "create", "absent", tuple(Step(f"run {' '.join(a)}", argv=a) for a in argvs))]


def runner_on(ctx) -> tuple[Runner, io.StringIO]:
    buf = io.StringIO()
    return Runner("web-1", ctx, reporter=Reporter(console=Console(file=buf, width=300, color_system=None))), buf


def test_one_lost_connection_reconnects_once_retries_the_step_and_says_so() -> None:
    remote = FakeRemote(None, requests.exceptions.ConnectionError("Connection aborted"), None, None)
    runner, out = runner_on(DeployCtx(remote))
    result = runner.run_task("app x: image", task(("a",), ("b",), ("c",)))
    assert result.status is Status.CHANGED
    assert remote.ran == [("a",), ("b",), ("b",), ("c",)]  # only the failed step again
    assert remote.recovered == [1]
    said = [line for line in out.getvalue().splitlines() if "reconnected" in line]
    assert said == ["warning: ssh deploy@198.51.100.7:22: the connection was lost during 'run b'; reconnected, "
                    "retrying the step once"]


def test_a_second_loss_fails_with_one_line_naming_step_and_host() -> None:
    remote = FakeRemote(ConnectionLost("ssh x: connection lost during `b`"),
                        ConnectionLost("ssh x: connection lost during `b`\nsecond line"), None)
    runner, _ = runner_on(remote)  # setup's context is the Remote itself
    result = runner.run_task("engine", task(("b",), ("c",)))
    assert result.status is Status.FAILED and runner.failed
    assert remote.ran == [("b",), ("b",)] and remote.recovered == [1]
    assert "\n" not in result.message
    assert result.message.startswith("run b: the connection to the host was lost again after a reconnect "
                                     "(ssh deploy@198.51.100.7:22)")


def test_a_failed_reconnect_fails_the_step_in_one_line() -> None:
    remote = FakeRemote(ConnectionLost("ssh x: the connection was lost"), reconnect_fails=True)
    runner, _ = runner_on(DeployCtx(remote))
    result = runner.run_task("app x: image", task(("b",)))
    assert result.status is Status.FAILED and remote.ran == [("b",)]
    assert result.message == ("run b: the connection to the host was lost (ssh x: the connection was lost) and "
                              "reconnecting failed: ssh deploy@198.51.100.7:22: connection refused")


def test_an_answer_from_the_host_is_not_retried() -> None:
    remote = FakeRemote(StepFailed("`b` exited 1: no such file"))
    runner, _ = runner_on(DeployCtx(remote))
    result = runner.run_task("app x: image", task(("b",), ("c",)))
    assert result.status is Status.FAILED and result.message == "run b: `b` exited 1: no such file"
    assert remote.ran == [("b",)] and remote.recovered == []


def test_the_runner_points_the_remote_warnings_at_the_reporter() -> None:
    remote = FakeRemote()
    _, out = runner_on(DeployCtx(remote))
    remote.warn("ssh h: the server refused a 9th session; using at most 8 at once")
    assert out.getvalue() == "warning: ssh h: the server refused a 9th session; using at most 8 at once\n"
