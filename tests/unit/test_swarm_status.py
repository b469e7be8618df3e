"""`status` in swarm mode: the pure rows (provision.swarm_status) from Engine API shaped nodes, services and
tasks; the phase's reads against a fake APIClient (one read each, through the first host only); the table and
the --json shape the e2e node-loss step reads."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from provision.cli.deploy import service_table, swarm_status_json
from provision.errors import StepFailed
from provision.phases import swarm as phase
from provision.swarm_status import node_facts, nodes_text, replicas_text, row_json, service_rows

pytestmark = pytest.mark.unit


def node(node_id: str, hostname: str, state: str = "ready", leader: bool = False, reach: str = "") -> dict[str, Any]:
    n: dict[str, Any] = {"ID": node_id, "Description": {"Hostname": hostname}, "Spec": {"Availability": "active"},
                         "Status": {"State": state, "Addr": "10.0.0.1"}}
    if leader or reach:
        n["ManagerStatus"] = {"Leader": leader, "Reachability": reach or "reachable", "Addr": "10.0.0.1:2377"}
    return n


def service(service_id: str, app: str, replicas: int, release: str = "abc1234", update: str | None = None
            ) -> dict[str, Any]:
    s: dict[str, Any] = {"ID": service_id, "Version": {"Index": 42},
                         "Spec": {"Name": f"shop-prod-{app}", "Labels": {"dockyard.app": app, "dockyard.release":
                                                                         release, "dockyard.project": "shop"},
                                  "Mode": {"Replicated": {"Replicas": replicas}}}}
    if update:
        s["UpdateStatus"] = {"State": update, "Message": "update in progress"}
    return s


def task(task_id: str, service_id: str, node_id: str, state: str = "running", desired: str = "running",
         slot: int = 1) -> dict[str, Any]:
    return {"ID": task_id, "ServiceID": service_id, "NodeID": node_id, "Slot": slot, "DesiredState": desired,
            "Status": {"State": state, "Message": state}}


NODES = [node("n1", "node1", leader=True), node("n2", "node2", reach="reachable"), node("n3", "node3", "down",
                                                                                         reach="unreachable")]


def test_node_facts_are_spelled_as_docker_node_ls_prints_them() -> None:
    assert [(f.hostname, f.status, f.availability, f.manager_status, f.down) for f in map(node_facts, NODES)] == [
        ("node1", "Ready", "Active", "Leader", False), ("node2", "Ready", "Active", "Reachable", False),
        ("node3", "Down", "Active", "Unreachable", True)]
    assert node_facts(node("n4", "worker4")).manager_status == ""


def test_replicas_rescheduled_off_a_down_node_count_where_they_run_now() -> None:
    # node3 went down: its two web tasks were shut down (orphaned) and rescheduled onto node1 and node2
    tasks = [task("t1", "s-web", "n1", slot=1), task("t2", "s-web", "n2", slot=2),
             task("t3", "s-web", "n3", "orphaned", "shutdown", slot=3),
             task("t3b", "s-web", "n1", slot=3),
             task("t4", "s-web", "n2", "starting", "running", slot=4),  # not serving yet
             task("t5", "s-web", "n2", "shutdown", "shutdown", slot=4),
             task("w1", "s-worker", "n2")]
    rows = service_rows([service("s-worker", "worker", 1), service("s-web", "web", 4, update="updating")],
                        tasks, NODES)
    assert [r.app for r in rows] == ["web", "worker"]
    web, worker = rows
    assert (web.service, web.release, web.desired, web.running, web.nodes, web.update) == (
        "shop-prod-web", "abc1234", 4, 3, {"node1": 2, "node2": 1}, "updating")
    assert web.down_nodes == {} and web.note == ""
    assert (replicas_text(web), nodes_text(web)) == ("3/4", "node1:2 node2:1")
    assert (worker.running, worker.nodes, worker.update) == (1, {"node2": 1}, "-")


def test_tasks_still_running_on_a_down_node_are_not_counted_but_noted() -> None:
    tasks = [task("t1", "s-web", "n1"), task("t2", "s-web", "n3", slot=2), task("t3", "s-web", "n3", slot=3)]
    (web,) = service_rows([service("s-web", "web", 3)], tasks, NODES)
    assert (web.running, web.nodes, web.down_nodes) == (1, {"node1": 1}, {"node3": 2})
    assert "node3" in web.note and "not rescheduled" in web.note
    assert nodes_text(web) == "node1:1 node3:2(down)"


def test_a_playbook_app_without_a_service_gets_a_row_saying_so() -> None:
    rows = service_rows([service("s-web", "web", 1)], [task("t1", "s-web", "n1")], NODES, ["web", "api"])
    api = rows[0]
    assert (api.app, api.service, api.desired, api.running, api.note) == ("api", "", 0, 0,
                                                                          "no service (not deployed)")
    assert replicas_text(api) == "-"
    assert service_table(rows) == [["api", "-", "-", "-", "no service (not deployed)"],
                                   ["web", "abc1234", "1/1", "node1:1", "-"]]


def test_the_json_rows_carry_app_replicas_and_nodes_for_the_e2e() -> None:
    rows = service_rows([service("s-web", "web", 2)], [task("t1", "s-web", "n1"), task("t2", "s-web", "n2")], NODES)
    out = swarm_status_json("prod", [node_facts(n) for n in NODES], rows)
    out = json.loads(json.dumps(out))  # what --json prints
    assert out["services"] == out["apps"]
    (web,) = out["services"]
    assert (web["app"], web["replicas"], web["nodes"]) == ("web", {"desired": 2, "running": 2},
                                                            {"node1": 1, "node2": 1})
    assert [n["status"] for n in out["nodes"]] == ["Ready", "Ready", "Down"]
    assert set(out["nodes"][0]) == {"id", "hostname", "status", "availability", "manager_status"}
    assert row_json(rows[0])["update"] == "-"


# --- the phase: reads through the first host ------------------------------------------------------------------


class FakeApi:
    def __init__(self, nodes_error: Exception | None = None) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.nodes_error = nodes_error

    def nodes(self) -> list[dict[str, Any]]:
        self.calls.append(("nodes", None))
        if self.nodes_error is not None:
            raise self.nodes_error
        return NODES

    def services(self, filters: dict[str, Any]) -> list[dict[str, Any]]:
        self.calls.append(("services", filters))
        return [service("s-web", "web", 2)]

    def tasks(self, filters: dict[str, Any]) -> list[dict[str, Any]]:
        self.calls.append(("tasks", filters))
        return [task("t1", "s-web", "n1"), task("t2", "s-web", "n2", slot=2)]


class FakeRemote:
    def __init__(self, api: FakeApi, fail: str = "") -> None:
        self.api, self.fail = api, fail

    def __enter__(self) -> FakeRemote:
        if self.fail:
            raise StepFailed(self.fail)
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def docker(self) -> Any:
        return SimpleNamespace(api=self.api)


PB = SimpleNamespace(project="shop", environment="prod", apps={"web": None}, engine=SimpleNamespace(managers=3))
HOSTS = [("shop-prod-1", "info1"), ("shop-prod-2", "info2"), ("shop-prod-3", "info3")]


def patch_hosts(monkeypatch: Any, api: FakeApi, fail: str = "") -> list[Any]:
    dialled: list[Any] = []

    def remote_for(pb: Any, info: Any = None) -> FakeRemote:
        dialled.append(info)
        return FakeRemote(api, fail)

    monkeypatch.setattr(phase, "environment_hosts", lambda pb: HOSTS)
    monkeypatch.setattr(phase, "remote_for", remote_for)
    return dialled


def test_status_reads_nodes_services_and_their_running_tasks_once_through_the_first_host(monkeypatch: Any) -> None:
    api = FakeApi()
    dialled = patch_hosts(monkeypatch, api)
    nodes, rows = phase.swarm_status(PB)
    assert dialled == ["info1"]
    assert [name for name, _ in api.calls] == ["nodes", "services", "tasks"]
    assert "dockyard.project=shop" in json.dumps(api.calls[1][1])
    assert api.calls[2][1] == {"service": ["s-web"], "desired-state": "running"}
    assert [n.hostname for n in nodes] == ["node1", "node2", "node3"]
    assert [(r.app, r.running, r.nodes) for r in rows] == [("web", 2, {"node1": 1, "node2": 1})]


def test_an_unreachable_first_host_is_named_with_the_other_managers(monkeypatch: Any) -> None:
    patch_hosts(monkeypatch, FakeApi(), fail="ssh 198.51.100.10: connection refused")
    with pytest.raises(StepFailed) as caught:
        phase.swarm_status(PB)
    message = str(caught.value)
    assert "shop-prod-1" in message and "connection refused" in message
    assert "shop-prod-2, shop-prod-3" in message
    one_manager = SimpleNamespace(**{**vars(PB), "engine": SimpleNamespace(managers=1)})
    with pytest.raises(StepFailed, match="only manager"):
        phase.swarm_status(one_manager)


class NotManager(Exception):
    response = SimpleNamespace(status_code=503)


def test_a_first_host_that_is_no_manager_says_to_run_setup(monkeypatch: Any) -> None:
    patch_hosts(monkeypatch, FakeApi(nodes_error=NotManager("This node is not a swarm manager")))
    with pytest.raises(StepFailed, match=r"shop-prod-1 \(the first host\) is not a swarm manager: run `dockyard setup"):
        phase.swarm_status(PB)
