"""provision.phases.up_swarm: `up` in swarm mode chains provision → every engine + the swarm → services, sharing
ONE connection per host between setup and deploy, with one recap per host; `recreate` tears down first. The
phase functions are fakes here; the real chain runs in tests/e2e/test_swarm_services_simhost.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

import provision.phases.up_swarm as up_swarm
from provision.changes import HostRecap, Status, TaskResult
from provision.errors import InputError
from provision.phases.host import ProvisionResult, TeardownResult
from provision.phases.up_swarm import run_recreate_swarm, run_up_swarm
from provision.providers.hostinfo import HostInfo
from provision.spec import Playbook

pytestmark = pytest.mark.unit

ADDRESSES = ["198.51.100.10", "198.51.100.11:2222", "198.51.100.12"]
LABELS = ["shop-prod-1", "shop-prod-2", "shop-prod-3"]


def playbook(**app: Any) -> Playbook:
    return Playbook.model_validate({
        "project": "shop", "environment": "prod", "provider": "existing", "host": {"addresses": ADDRESSES},
        "ssh": {"user": "deploy", "key_file": "id_test"}, "engine": {"mode": "swarm"},
        "apps": {"web": {"dockerfile": "Dockerfile", "port": 8080, "publish": 8082, "replicas": 3, **app}},
    })


def info(address: str) -> HostInfo:
    return HostInfo(provider="existing", host_id=address, state="running", ssh_address=address.split(":")[0],
                    ssh_port=22, ssh_user="deploy", public_address=address.split(":")[0])


class Reporter:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, message: str) -> None:
        self.lines.append(message)

    warn = info


@dataclass
class FakeRemote:
    label: str
    calls: list[str]

    def close(self) -> None:
        self.calls.append(f"close {self.label}")


@dataclass
class World:
    """The fake phases: what they return and the calls they saw, in order."""

    provision_status: Status = Status.OK
    setup_status: dict[str, Status] = field(default_factory=dict)
    deploy_status: Status = Status.CHANGED
    calls: list[str] = field(default_factory=list)
    remotes: list[FakeRemote] = field(default_factory=list)

    def provision(self, pb: Any, *, check: bool, resize: bool, reporter: Any) -> ProvisionResult:
        self.calls.append(f"provision check={check}")
        return ProvisionResult(info(ADDRESSES[0]), HostRecap("shop-prod", [TaskResult("shop-prod", "aws instance",
                                                                                       self.provision_status)]))

    def hosts_of(self, pb: Any) -> list[tuple[str, HostInfo]]:
        return [(label, info(a)) for label, a in zip(LABELS, ADDRESSES, strict=True)]

    def remote(self, pb: Any, host: HostInfo) -> FakeRemote:
        made = FakeRemote(LABELS[len(self.remotes)], self.calls)
        self.remotes.append(made)
        return made

    def setup_hosts(self, pb: Any, *, check: bool, diff: bool, reporter: Any, hosts: Any,
                    remotes: Any) -> list[HostRecap]:
        assert list(remotes) == self.remotes  # the connections deploy gets next
        self.calls.append(f"setup {[label for label, _ in hosts]}")
        return [HostRecap(label, [TaskResult(label, "engine", self.setup_status.get(label, Status.OK))])
                for label, _ in hosts]

    def deploy(self, pb: Any, *, check: bool, diff: bool, reporter: Any, prune: bool, verbose: bool,
               remotes: Any) -> Any:
        assert [r for _, r in remotes] == self.remotes and [label for label, _ in remotes] == LABELS
        self.calls.append("deploy")
        recaps = [HostRecap(label, [TaskResult(label, "app web: image", Status.OK)]) for label in LABELS]
        recaps[0].results.append(TaskResult(LABELS[0], "app web: service", self.deploy_status))
        return SimpleNamespace(recaps=recaps, failed=self.deploy_status is Status.FAILED, built=["web:abc"],
                               services=["shop-prod-web"], endpoint_mode="dnsrr")


def run(world: World, monkeypatch: pytest.MonkeyPatch, pb: Playbook | None = None, **kwargs: Any) -> Any:
    monkeypatch.setattr(up_swarm, "setup_hosts", world.setup_hosts)
    monkeypatch.setattr(up_swarm, "deploy_swarm_env", world.deploy)
    return run_up_swarm(pb or playbook(), reporter=Reporter(), provision=world.provision,
                        hosts_of=world.hosts_of, remote=world.remote, **kwargs)


def test_up_chains_the_phases_over_one_connection_per_host_with_one_recap_per_host(
        monkeypatch: pytest.MonkeyPatch) -> None:
    world = World()
    result = run(world, monkeypatch)
    assert world.calls == ["provision check=False", f"setup {LABELS}", "deploy",
                           *[f"close {label}" for label in LABELS]]
    assert [r.host for r in result.recaps] == LABELS
    # provisioning's task counts on the first host; each host has its engine and image tasks; the service: first
    assert [t.task for t in result.recaps[0].results] == ["aws instance", "engine", "app web: image",
                                                          "app web: service"]
    assert [t.task for t in result.recaps[2].results] == ["engine", "app web: image"]
    assert result.services == ["shop-prod-web"] and result.built == ["web:abc"] and result.endpoint_mode == "dnsrr"
    assert result.urls == {"web": "http://198.51.100.10:8082/"} and not result.failed


def test_a_failed_engine_stops_before_the_services_and_closes_every_connection(
        monkeypatch: pytest.MonkeyPatch) -> None:
    world = World(setup_status={"shop-prod-2": Status.FAILED})
    result = run(world, monkeypatch)
    assert "deploy" not in world.calls and world.calls[-3:] == [f"close {label}" for label in LABELS]
    assert result.failed and result.stopped_after == "setup" and result.recaps[1].failed


def test_a_failed_provision_touches_no_host(monkeypatch: pytest.MonkeyPatch) -> None:
    world = World(provision_status=Status.FAILED)
    result = run(world, monkeypatch)
    assert world.calls == ["provision check=False"] and world.remotes == []
    assert result.failed and result.stopped_after == "provision"


def test_check_mode_plans_no_services_while_engines_have_pending_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    world = World(setup_status={"shop-prod-3": Status.CHANGED})
    result = run(world, monkeypatch, check=True)
    assert "deploy" not in world.calls and result.stopped_after == "setup" and not result.failed


def test_check_mode_stops_after_provision_when_hosts_are_still_to_be_made(monkeypatch: pytest.MonkeyPatch) -> None:
    world = World(provision_status=Status.CHANGED)
    result = run(world, monkeypatch, check=True)
    assert world.calls == ["provision check=True"] and result.stopped_after == "provision"


def test_a_failed_rollout_fails_up_without_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    result = run(World(deploy_status=Status.FAILED), monkeypatch)
    assert result.failed and result.urls == {} and result.stopped_after == "deploy"


def test_what_services_cannot_do_is_refused_before_anything_is_made(monkeypatch: pytest.MonkeyPatch) -> None:
    world = World()
    with pytest.raises(InputError) as refused:
        run(world, monkeypatch, pb=playbook(publish="127.0.0.1:8082"))
    assert "apps.web.publish" in str(refused.value) and world.calls == []


def test_recreate_tears_down_then_runs_up_and_counts_the_teardown_on_the_first_host() -> None:
    calls: list[str] = []

    def teardown(pb: Any, *, check: bool, reporter: Any) -> TeardownResult:
        calls.append("teardown")
        return TeardownResult(HostRecap("shop-prod", [TaskResult("shop-prod", "aws instance", Status.CHANGED)]))

    def up(pb: Any, *, reporter: Any, verbose: bool, lock: Any) -> Any:
        calls.append("up")
        return up_swarm.SwarmUpResult([HostRecap(label, [TaskResult(label, "engine", Status.OK)])
                                       for label in LABELS])

    result = run_recreate_swarm(playbook(), reporter=Reporter(), teardown=teardown, up=up)
    assert calls == ["teardown", "up"]
    assert [t.task for t in result.recaps[0].results] == ["aws instance", "engine"]
    assert [r.host for r in result.recaps] == LABELS
