"""provision.phases: `up` composes provision → setup → deploy in one place (exercised here with specific fakes
for the three phase functions and the connection they share), and every phase's recap is its Runners'."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

import provision.phases.host as phases_host
from provision.changes import Change, HostRecap, Status, Step, TaskResult
from provision.deploy import DeployResult
from provision.errors import StepFailed
from provision.ops import Argv, Ec2Call, freeze
from provision.phases.host import ProvisionResult, TeardownResult, provision_host, teardown_host
from provision.phases.up import Phases, run_recreate, run_up
from provision.providers.hostinfo import HostInfo
from provision.spec import Playbook

pytestmark = pytest.mark.unit

PB = Playbook.model_validate({
    "project": "shop", "environment": "staging", "provider": "existing", "host": {"address": "198.51.100.10"},
    "ssh": {"user": "deploy", "key_file": "id_test"},
    "apps": {"web": {"dockerfile": "Dockerfile", "port": 8080, "publish": 8082}},
})
LABEL = "shop-staging"
RUNNING = HostInfo(provider="existing", host_id="198.51.100.10", state="running", ssh_address="198.51.100.10",
                   ssh_port=22, ssh_user="deploy", public_address="198.51.100.10")
ABSENT = HostInfo(provider="aws", host_id="", state="absent", ssh_address="", ssh_port=22, ssh_user="deploy")


def result(task: str, status: Status) -> TaskResult:
    return TaskResult(LABEL, task, status)


@dataclass
class Reporter:
    """The Reporter interface, keeping what it was told."""

    lines: list[str] = field(default_factory=list)
    tasks: list[TaskResult] = field(default_factory=list)

    def info(self, message: str) -> None:
        self.lines.append(message)

    def warn(self, message: str) -> None:
        self.lines.append(f"warning: {message}")

    def task(self, result: TaskResult, *, diff: bool = False, check: bool = False) -> None:
        self.tasks.append(result)


class FakeRemote:
    def __init__(self) -> None:
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


@dataclass
class Script:
    """What each fake phase returns (or raises), and the calls they saw, in order."""

    provision: ProvisionResult | Exception
    setup: list[TaskResult] = field(default_factory=list)
    deploy: list[TaskResult] = field(default_factory=list)
    built: list[str] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    remote: FakeRemote = field(default_factory=FakeRemote)

    def run_provision(self, pb: Any, *, check: bool, resize: bool, reporter: Any) -> ProvisionResult:
        self.calls.append(f"provision check={check} resize={resize}")
        if isinstance(self.provision, Exception):
            raise self.provision
        return self.provision

    def connect(self, pb: Any, host: HostInfo) -> FakeRemote:
        self.calls.append(f"remote {host.ssh_address}")
        return self.remote

    def run_setup(self, pb: Any, *, check: bool, diff: bool, reporter: Any, host: HostInfo,
                  remote: Any) -> HostRecap:
        assert remote is self.remote and host is self.host
        self.calls.append(f"setup check={check} diff={diff}")
        return HostRecap(LABEL, list(self.setup), 1.0)

    def run_deploy(self, pb: Any, *, check: bool, diff: bool, reporter: Any, host: HostInfo, remote: Any,
                   prune: bool, verbose: bool) -> DeployResult:
        assert remote is self.remote and host is self.host
        self.calls.append(f"deploy check={check} prune={prune}")
        return DeployResult(HostRecap(LABEL, list(self.deploy), 2.0), [], list(self.built))

    @property
    def host(self) -> HostInfo:
        assert isinstance(self.provision, ProvisionResult)
        return self.provision.host

    def phases(self) -> Phases:
        return Phases(provision=self.run_provision, setup=self.run_setup, deploy=self.run_deploy,
                      remote=self.connect)


def provisioned(host: HostInfo, *results: TaskResult) -> ProvisionResult:
    return ProvisionResult(host, HostRecap(LABEL, list(results), 0.5))


def test_up_runs_the_three_phases_in_order_over_one_connection_and_joins_their_recaps() -> None:
    script = Script(provisioned(RUNNING, result("aws instance", Status.OK)),
                    setup=[result("gather facts", Status.OK), result("daemon.json", Status.CHANGED)],
                    deploy=[result("app web: container", Status.CHANGED)], built=["web"])
    reporter = Reporter()
    up = run_up(PB, reporter=reporter, prune=True, phases=script.phases())
    assert script.calls == ["provision check=False resize=False", "remote 198.51.100.10",
                            "setup check=False diff=False", "deploy check=False prune=True"]
    assert script.remote.closed == 1
    assert up.recap.host == LABEL
    assert [r.task for r in up.recap.results] == ["aws instance", "gather facts", "daemon.json", "app web: container"]
    assert (up.stopped_after, up.built, up.host) == (None, ["web"], RUNNING)
    assert up.urls == {"web": "http://198.51.100.10:8082/"}
    assert "host 198.51.100.10 is running at 198.51.100.10" in reporter.lines


def test_up_stops_when_provision_raises_and_never_connects() -> None:
    script = Script(StepFailed("aws instance: InsufficientInstanceCapacity"))
    with pytest.raises(StepFailed, match="InsufficientInstanceCapacity"):
        run_up(PB, reporter=Reporter(), phases=script.phases())
    assert script.calls == ["provision check=False resize=False"]


def test_up_stops_after_a_failed_provision_recap_without_setup_or_deploy() -> None:
    failed = result("local sandbox", Status.FAILED)
    script = Script(provisioned(RUNNING, result("local sandbox image", Status.CHANGED), failed))
    up = run_up(PB, reporter=Reporter(), phases=script.phases())
    assert script.calls == ["provision check=False resize=False"]
    assert up.failed and up.stopped_after == "provision"
    assert up.recap.results == [result("local sandbox image", Status.CHANGED), failed]
    assert up.urls == {}


def test_up_stops_after_a_failed_setup_and_closes_the_connection() -> None:
    script = Script(provisioned(RUNNING), setup=[result("gather facts", Status.FAILED)],
                    deploy=[result("app web: container", Status.CHANGED)])
    up = run_up(PB, reporter=Reporter(), phases=script.phases())
    assert script.calls[-1] == "setup check=False diff=False"
    assert (up.failed, up.stopped_after, up.urls) == (True, "setup", {})
    assert [r.task for r in up.recap.results] == ["gather facts"]
    assert script.remote.closed == 1


def test_up_check_mode_stops_when_the_host_does_not_run_yet() -> None:
    script = Script(provisioned(ABSENT, result("aws instance", Status.CHANGED)))
    reporter = Reporter()
    up = run_up(PB, reporter=reporter, check=True, phases=script.phases())
    assert script.calls == ["provision check=True resize=False"]
    assert up.stopped_after == "provision" and not up.failed
    assert reporter.lines == [f"[{LABEL}] the host does not run yet: setup and deploy are planned once it does"]


def test_up_check_mode_plans_no_deploy_while_the_engine_has_pending_changes() -> None:
    script = Script(provisioned(RUNNING), setup=[result("install docker engine", Status.CHANGED)])
    up = run_up(PB, reporter=Reporter(), check=True, diff=True, phases=script.phases())
    assert script.calls[-1] == "setup check=True diff=True"
    assert up.stopped_after == "setup" and not up.failed


def test_up_reports_a_failed_deploy_without_urls() -> None:
    script = Script(provisioned(RUNNING), deploy=[result("app web: container", Status.FAILED)], built=["web"])
    up = run_up(PB, reporter=Reporter(), phases=script.phases())
    assert (up.failed, up.stopped_after, up.urls, up.built) == (True, "deploy", {}, ["web"])


def test_recreate_tears_down_then_runs_up_and_joins_both_recaps() -> None:
    terminate = Ec2Call("instance.terminate", freeze({"instance_ids": ["i-1"]}))
    change = Change("aws:instance", "delete", "i-1 running", (Step("terminate i-1", op=terminate),))
    teardowns: list[bool] = []

    def teardown(pb: Any, *, check: bool, reporter: Any) -> TeardownResult:
        teardowns.append(check)
        return TeardownResult(HostRecap(LABEL, [result("aws instance (teardown)", Status.CHANGED)]), [change])

    script = Script(provisioned(RUNNING, result("aws instance", Status.CHANGED)))
    done = run_recreate(PB, reporter=Reporter(), teardown=teardown, phases=script.phases())
    assert teardowns == [False] and done.removed == [change]
    assert done.up is not None and script.calls[0] == "provision check=False resize=False"
    assert [r.task for r in done.recap.results] == ["aws instance (teardown)", "aws instance"]

    script = Script(provisioned(RUNNING))
    reporter = Reporter()
    planned = run_recreate(PB, reporter=reporter, check=True, teardown=teardown, phases=script.phases())
    assert planned.up is None and script.calls == [] and teardowns == [False, True]
    assert [r.task for r in planned.recap.results] == ["aws instance (teardown)"]


class Ctx:
    """What the runner applies steps against: records each command's verb."""

    def __init__(self) -> None:
        self.applied: list[str] = []

    def execute(self, op: Argv) -> None:
        self.applied.append({"start": "start", "rm": "remove"}[op.argv[1]])


def fake_provider(ctx: Ctx) -> SimpleNamespace:
    """A provider module whose flows run their tasks through the Runners `make_runner` gives them."""

    def ensure_host(pb: Any, *, check: bool, resize: bool, reporter: Any, make_runner: Any) -> HostInfo:
        images = make_runner(LABEL, ctx, check=check, reporter=reporter)
        images.run_task("local sandbox image", [])
        sandbox = make_runner(LABEL, ctx, check=check, reporter=reporter)
        step = Step("start the sandbox", argv=("docker", "start", "sandbox"))
        sandbox.run_task("local sandbox", [Change("local:sandbox", "start", "stopped", (step,))])
        return RUNNING

    def destroy_host(pb: Any, *, check: bool, reporter: Any, make_runner: Any) -> list[Change]:
        step = Step("remove the sandbox", argv=("docker", "rm", "sandbox"))
        changes = [Change("local:sandbox", "delete", "teardown", (step,))]
        make_runner(LABEL, ctx, check=check, reporter=reporter).run_task("local sandbox (teardown)", changes)
        return changes

    return SimpleNamespace(ensure_host=ensure_host, destroy_host=destroy_host)


def test_provision_and_teardown_recaps_are_the_provider_runners_results(monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = Ctx()
    monkeypatch.setattr(phases_host, "provider_module", lambda pb: fake_provider(ctx))
    reporter = Reporter()
    made = provision_host(PB, reporter=reporter)
    assert made.host is RUNNING and ctx.applied == ["start"]
    assert [(r.task, r.status) for r in made.recap.results] == [("local sandbox image", Status.OK),
                                                                ("local sandbox", Status.CHANGED)]
    assert made.recap.results == reporter.tasks and made.recap.host == LABEL

    removed = teardown_host(PB, reporter=reporter)
    assert ctx.applied == ["start", "remove"] and [c.target for c in removed.changes] == ["local:sandbox"]
    assert [(r.task, r.status) for r in removed.recap.results] == [("local sandbox (teardown)", Status.CHANGED)]


def test_provision_of_an_existing_host_runs_nothing() -> None:
    made = provision_host(PB, reporter=Reporter())
    assert (made.host.ssh_address, made.host.ssh_user, made.recap.results) == ("198.51.100.10", "deploy", [])
    assert teardown_host(PB, reporter=Reporter()).changes == []
