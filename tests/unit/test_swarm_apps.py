"""The pure pieces of logs/exec/releases/rollback in swarm mode (provision.swarm_apps), the rollback executor
against a fake of docker-py's APIClient, and the CLI's refusals (exit 2 before any host is dialled)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from provision.errors import StepFailed
from provision.ops import EngineCall, Wait
from provision.phases import swarm_apps as phase
from provision.providers.hostinfo import HostInfo
from provision.serviceops import rollback_service
from provision.swarm_apps import (
    HostIdentity,
    LogPrefixer,
    NodeInfo,
    TaskInfo,
    host_for_node,
    identity_of,
    parse_details,
    parse_nodes,
    parse_tasks,
    pick_task,
    plan_service_rollback,
    rollback_state,
    running_tasks,
    service_releases,
    unmatched_node_error,
)
from tests.unit.test_cli import run
from tests.unit.test_cli_swarm import SWARM

pytestmark = pytest.mark.unit


def host(address: str, port: int = 22, private: str | None = None) -> HostInfo:
    return HostInfo(provider="existing", host_id=address, state="running", ssh_address=address, ssh_port=port,
                    ssh_user="deploy", public_address=address, private_address=private)


AWS_LIKE = [("shop-prod-1", host("203.0.113.1", private="10.0.0.5")),
            ("shop-prod-2", host("203.0.113.2", private="10.0.0.6"))]
FORWARDED = [("shop-prod-1", host("127.0.0.1", 40001)), ("shop-prod-2", host("127.0.0.1", 40002))]
IDENTITIES = {"shop-prod-1": HostIdentity("n-lead", "alpha"), "shop-prod-2": HostIdentity("n-work", "beta")}


# --- task location ------------------------------------------------------------------------------------------


def test_a_node_is_the_host_with_its_private_or_public_address() -> None:
    assert host_for_node(NodeInfo("n-work", "beta", "10.0.0.6"), AWS_LIKE) == "shop-prod-2"
    assert host_for_node(NodeInfo("n-lead", "alpha", "203.0.113.1"), AWS_LIKE) == "shop-prod-1"


def test_behind_nat_the_node_is_found_by_node_id_then_hostname() -> None:
    node = NodeInfo("n-work", "beta", "172.17.0.3")  # the swarm's address: none of dockyard's
    assert host_for_node(node, FORWARDED) is None  # no identities yet: the caller reads them
    assert host_for_node(node, FORWARDED, IDENTITIES) == "shop-prod-2"
    by_name = NodeInfo("n-other-id", "alpha", "172.17.0.2")
    assert host_for_node(by_name, FORWARDED, IDENTITIES) == "shop-prod-1"
    assert host_for_node(NodeInfo("n-x", "gamma", "172.17.0.9"), FORWARDED, IDENTITIES) is None


def test_an_address_two_hosts_share_does_not_decide() -> None:
    node = NodeInfo("n-lead", "alpha", "127.0.0.1")
    assert host_for_node(node, FORWARDED) is None
    assert host_for_node(node, FORWARDED, IDENTITIES) == "shop-prod-1"


def test_an_unmatched_node_error_names_the_node_and_the_hosts() -> None:
    text = str(unmatched_node_error(NodeInfo("n-x", "gamma", "172.17.0.9"), AWS_LIKE))
    assert "gamma" in text and "172.17.0.9" in text and "shop-prod-2 (10.0.0.6, 203.0.113.2)" in text


def test_task_hosts_reads_the_identities_only_when_an_address_does_not_settle_it(monkeypatch: Any) -> None:
    reads: list[int] = []

    def identities(pb: Any, hosts: Any) -> dict[str, HostIdentity]:
        reads.append(1)
        return IDENTITIES

    monkeypatch.setattr(phase, "_identities", identities)
    nodes = {"n-lead": NodeInfo("n-lead", "alpha", "10.0.0.5"), "n-work": NodeInfo("n-work", "beta", "10.0.0.6")}
    tasks = [TaskInfo("t1", 1, "n-work", "running"), TaskInfo("t2", 2, "n-lead", "running")]
    assert phase.task_hosts(None, AWS_LIKE, tasks, nodes) == {"t1": "shop-prod-2", "t2": "shop-prod-1"}
    assert reads == []
    nat = {k: NodeInfo(n.id, n.hostname, "172.17.0.4") for k, n in nodes.items()}
    assert phase.task_hosts(None, FORWARDED, tasks, nat) == {"t1": "shop-prod-2", "t2": "shop-prod-1"}
    assert reads == [1]  # once for every task
    with pytest.raises(StepFailed, match="swarm node gamma"):
        phase.task_hosts(None, FORWARDED, [TaskInfo("t3", 1, "n-x", "running")],
                         {"n-x": NodeInfo("n-x", "gamma", "172.17.0.9")})
    with pytest.raises(StepFailed, match="does not list"):
        phase.task_hosts(None, FORWARDED, [TaskInfo("t3", 1, "n-gone", "running")], {})


def test_tasks_and_nodes_parse_from_the_engine_shape() -> None:
    tasks = parse_tasks([{"ID": "t2", "Slot": 2, "NodeID": "n2", "Status": {"State": "running"}},
                         {"ID": "t1", "Slot": 1, "NodeID": "n1", "Status": {"State": "running"}},
                         {"ID": "t0", "Slot": 1, "NodeID": "n1", "Status": {"State": "shutdown"}},
                         {"ID": "t9", "Slot": 3, "NodeID": "", "Status": {"State": "running"}}])
    assert [t.id for t in running_tasks(tasks)] == ["t1", "t2"]
    nodes = parse_nodes([{"ID": "n1", "Description": {"Hostname": "alpha"}, "Status": {"Addr": "10.0.0.5"}}])
    assert nodes == {"n1": NodeInfo("n1", "alpha", "10.0.0.5")}
    assert identity_of({"Name": "alpha", "Swarm": {"NodeID": "n1"}}) == HostIdentity("n1", "alpha")


def test_exec_picks_the_first_task_or_the_slot_or_the_node() -> None:
    running = [TaskInfo("t1", 1, "n1", "running"), TaskInfo("t2", 2, "n2", "running"),
               TaskInfo("t3", 3, "n2", "running")]
    where = {"t1": "shop-prod-1", "t2": "shop-prod-2", "t3": "shop-prod-2"}
    assert pick_task(running, "web").id == "t1"
    assert pick_task(running, "web", slot=3).id == "t3"
    assert pick_task(running, "web", node_label="shop-prod-2", labels=where).id == "t2"
    with pytest.raises(StepFailed, match=r"no running task 4 \(running: 1, 2, 3\)"):
        pick_task(running, "web", slot=4)
    with pytest.raises(StepFailed, match="no running task on shop-prod-3"):
        pick_task(running, "web", node_label="shop-prod-3", labels=where)
    with pytest.raises(StepFailed, match="no running task"):
        pick_task([], "web")


# --- logs ---------------------------------------------------------------------------------------------------

DETAILS = b"com.docker.swarm.node.id=n2,com.docker.swarm.service.id=s1,com.docker.swarm.task.id=t2abcdefghijklmnop"


def test_details_split_from_the_message() -> None:
    assert parse_details(DETAILS + b" GET / 200") == ({"com.docker.swarm.node.id": "n2",
                                                      "com.docker.swarm.service.id": "s1",
                                                      "com.docker.swarm.task.id": "t2abcdefghijklmnop"},
                                                     b"GET / 200")
    assert parse_details(b"a%3Db=c%2Cd msg") == ({"a=b": "c,d"}, b"msg")
    assert parse_details(b"plain line without details") == ({}, b"plain line without details")


def test_log_lines_are_prefixed_with_task_and_node_across_chunk_boundaries() -> None:
    tasks = [TaskInfo("t2abcdefghijklmnop", 2, "n2", "running")]
    p = LogPrefixer("shop-prod-web", tasks, {"n2": NodeInfo("n2", "beta", "10.0.0.6")})
    line = DETAILS + b" hello\n"
    assert p.feed(line[:20]) == b""
    assert p.feed(line[20:] + DETAILS + b" par") == b"shop-prod-web.2.t2abcdefghij@beta | hello\n"
    assert p.feed(b"tial\n") == b"shop-prod-web.2.t2abcdefghij@beta | partial\n"
    assert p.feed(b"no details here\n") == b"no details here\n"
    unknown = b"com.docker.swarm.node.id=n9abcdefghijklmn,com.docker.swarm.task.id=tx one\n"
    assert p.feed(unknown) == b"shop-prod-web.?.tx@n9abcdefghij | one\n"
    p.feed(DETAILS + b" last")
    assert p.flush() == b"shop-prod-web.2.t2abcdefghij@beta | last"
    assert p.flush() == b""


# --- releases and rollback ----------------------------------------------------------------------------------


def spec(release: str, config_hash: str, replicas: int = 2) -> dict[str, Any]:
    return {"Name": "shop-prod-web", "Labels": {"dockyard.release": release, "dockyard.config-hash": config_hash},
            "TaskTemplate": {"ContainerSpec": {"Image": f"dockyard/shop-prod-web:{release}"}},
            "Mode": {"Replicated": {"Replicas": replicas}}}


SERVICE = {"ID": "svc1", "Version": {"Index": 42}, "UpdatedAt": "2026-11-30T21:00:05.123456789Z",
           "Spec": spec("v2", "hash-2"), "PreviousSpec": spec("v1", "hash-1", replicas=3)}


def test_releases_are_the_current_and_the_previous_spec() -> None:
    found = [r.to_json() for r in service_releases("web", SERVICE)]
    assert [(r["release"], r["current"], r["state"], r["image"]) for r in found] == [
        ("v2", True, "current", "dockyard/shop-prod-web:v2"), ("v1", False, "previous", "dockyard/shop-prod-web:v1")]
    assert found[0]["created"] == 1796072405 and found[0]["container"] == "shop-prod-web"
    only = {k: v for k, v in SERVICE.items() if k != "PreviousSpec"}
    assert [r.release for r in service_releases("web", only)] == ["v2"]


def test_rollback_plan_is_the_engine_rollback_then_a_bounded_wait_for_the_previous_spec() -> None:
    [change] = plan_service_rollback("web", SERVICE, monitor=10.0)
    assert (change.target, change.action, change.data["release"]) == ("app:web:service", "rollback", "v1")
    call, wait = (s.op for s in change.steps)
    assert call == EngineCall("service.rollback", (("id", "svc1"), ("version", 42)))
    assert isinstance(wait, Wait) and wait.probe == "service.rolled_back"
    assert dict(wait.params) == {"service": "shop-prod-web", "config_hash": "hash-1", "replicas": 3,
                                 "label": "app web"}
    assert wait.timeout == 60.0 + 3 * 10.0
    with pytest.raises(StepFailed, match="nothing to roll back to"):
        plan_service_rollback("web", {k: v for k, v in SERVICE.items() if k != "PreviousSpec"}, monitor=10.0)


@pytest.mark.parametrize(("state", "labels_hash", "running", "verdict"), [
    ("rollback_started", "hash-1", 0, "wait"),
    ("rollback_started", "hash-1", 3, "wait"),
    ("rollback_completed", "hash-1", 2, "wait"),
    ("rollback_completed", "hash-1", 3, "done"),
    ("rollback_paused", "hash-1", 1, "failed: the rollback rollback paused (task failed)"),
    ("rollback_started", "hash-9", 3, "failed: the service does not carry the previous spec (changed by someone "
                                      "else?)"),
])
def test_rollback_state(state: str, labels_hash: str, running: int, verdict: str) -> None:
    attrs = {"UpdateStatus": {"State": state, "Message": "task   failed"},
             "Spec": {"Labels": {"dockyard.config-hash": labels_hash}}}
    assert rollback_state(attrs, "hash-1", running, 3) == verdict


class Response:
    def __init__(self, status: int, text: str = "") -> None:
        self.status_code, self.text = status, text


class RollbackApi:
    base_url = "http://placeholder:2375"
    api_version = "1.41"

    def __init__(self, index: int, status: int = 200) -> None:
        self.index, self.status, self.posts = index, status, []

    def inspect_service(self, id: str) -> dict[str, Any]:
        return {**SERVICE, "Version": {"Index": self.index}}

    def post(self, url: str, **kw: Any) -> Response:
        self.posts.append((url, kw))
        return Response(self.status, "rpc error:\n  no previous spec")


class Ctx:
    def __init__(self, api: RollbackApi) -> None:
        self.api = api

    def docker(self) -> Any:
        return type("Client", (), {"api": self.api})()


def test_rollback_posts_rollback_previous_with_the_current_spec() -> None:
    api = RollbackApi(42)
    rollback_service(Ctx(api), id="svc1", version=42)
    [(url, kw)] = api.posts
    assert url == "http://placeholder:2375/v1.41/services/svc1/update"
    assert kw["params"] == {"version": 42, "rollback": "previous"} and kw["json"] == SERVICE["Spec"]


def test_rollback_refuses_a_service_changed_since_it_was_read_and_reports_an_engine_refusal() -> None:
    moved = RollbackApi(43)
    with pytest.raises(StepFailed, match="changed since it was read"):
        rollback_service(Ctx(moved), id="svc1", version=42)
    assert moved.posts == []
    with pytest.raises(StepFailed, match="HTTP 500 rpc error: no previous spec"):
        rollback_service(Ctx(RollbackApi(42, status=500)), id="svc1", version=42)


# --- the CLI's refusals (nothing dialled: 198.51.100.x are documentation addresses) -------------------------

APP = "apps:\n  web: {template: python-web, port: 8000, replicas: 2}\n"


@pytest.mark.parametrize(("args", "needle"), [
    (("rollback", "--app", "web", "--to", "v1"), "keeps only its previous spec"),
    (("exec", "--app", "web", "--task", "1", "--node", "shop-prod-1", "--", "true"), "not both"),
])
def test_swarm_refusals_exit_2_before_any_host_is_dialled(tmp_path: Path, args: tuple[str, ...],
                                                          needle: str) -> None:
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "prod.yml").write_text(SWARM + APP)
    done = run(tmp_path, *args[:1], "-e", "prod", "--json", *args[1:])
    assert done.returncode == 2, done.stdout + done.stderr
    assert needle in json.dumps(json.loads(done.stdout)) and "Traceback" not in done.stderr


def test_exec_task_and_node_need_swarm_mode(tmp_path: Path) -> None:
    (tmp_path / "playbooks").mkdir()
    standalone = SWARM.replace("engine: {mode: swarm, managers: 3}\n", "").replace(
        'addresses: ["198.51.100.10", "198.51.100.11:2222", "198.51.100.12"]', "address: 198.51.100.10")
    (tmp_path / "playbooks" / "prod.yml").write_text(standalone + APP.replace(", replicas: 2", ""))
    done = run(tmp_path, "exec", "-e", "prod", "--json", "--app", "web", "--task", "2", "--", "true")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "engine.mode: swarm" in done.stdout
