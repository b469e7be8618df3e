"""Swarm facts (recorded output of provision.swarm.SWARM_FACTS_SCRIPT on sim hosts) and the pure swarm plan:
init, join (worker/manager, the token only on stdin), no-op, rejoin after a replacement, a foreign swarm."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from provision.errors import StepFailed
from provision.ops import Argv, digest
from provision.swarm import (
    NodeFacts,
    SwarmFacts,
    member_role,
    parse_route_source,
    parse_swarm_facts,
    plan_init,
    plan_member,
    plan_stale_nodes,
)

pytestmark = pytest.mark.unit

FACTS = Path(__file__).parent / "swarm_facts"
TOKEN = b"SWMTKN-1-recorded-worker-token"


def recorded(name: str) -> SwarmFacts:
    return parse_swarm_facts((FACTS / f"{name}.txt").read_text())


def test_a_leader_is_parsed_with_its_cluster_and_node_list() -> None:
    leader = recorded("leader-active")
    assert (leader.state, leader.control_available, leader.cluster_id) == ("active", True, "wdm6li4ixt5qipfp1kyleqe2l")
    assert leader.advertise_address == "172.17.0.2" and leader.hostname == "dytswx-exp0"
    assert [(n.hostname, n.status, n.manager_status) for n in leader.nodes] == [
        ("dytswx-exp0", "Ready", "Leader"), ("dytswx-exp1", "Ready", "")]


def test_a_worker_knows_no_cluster_id_and_a_fresh_host_is_inactive() -> None:
    worker, fresh = recorded("worker-active"), recorded("fresh")
    assert (worker.state, worker.control_available, worker.cluster_id, worker.nodes) == ("active", False, "", ())
    assert (fresh.state, fresh.node_id, fresh.advertise_address) == ("inactive", "", "172.17.0.3")


def test_no_engine_and_a_loopback_route_give_no_address() -> None:
    facts = recorded("no-engine")
    assert not facts.engine_answers and facts.advertise_address is None
    assert parse_route_source(["1.1.1.1 dev lo src 127.0.0.1 uid 0"]) is None
    assert parse_route_source(["2606:4700:4700::1111 via fe80::1 dev eth0 src fd00::5 metric 1024"]) == "fd00::5"


def test_truncated_facts_are_a_failure_not_a_guess() -> None:
    text = (FACTS / "fresh.txt").read_text().replace("@@end", "")
    with pytest.raises(StepFailed, match="did not finish"):
        parse_swarm_facts(text)


def test_a_fresh_first_host_inits_on_its_own_private_address() -> None:
    task = plan_init("h-1", recorded("fresh"))
    assert task.error is None and [c.target for c in task.changes] == ["swarm:init"]
    (step,) = task.changes[0].steps
    assert step.op == Argv(("docker", "swarm", "init", "--advertise-addr", "172.17.0.3"), sudo=True)


def test_an_active_leader_plans_nothing_and_a_worker_first_host_is_refused() -> None:
    assert plan_init("h-1", recorded("leader-active")).changes == []
    task = plan_init("h-1", recorded("worker-active"))
    assert task.changes == [] and "must be a manager" in (task.error or "")


def test_a_first_host_without_a_private_address_is_refused() -> None:
    task = plan_init("h-1", replace(recorded("fresh"), advertise_address=None))
    assert task.changes == [] and "no private address" in (task.error or "")


def test_a_fresh_member_joins_the_leader_as_a_worker_with_the_token_on_stdin_only() -> None:
    task = plan_member("h-3", 2, recorded("fresh"), recorded("leader-active"), 1, {"worker": TOKEN})
    (change,) = task.changes
    (step,) = change.steps
    assert isinstance(step.op, Argv) and step.op.argv[-2:] == ("172.17.0.3", "172.17.0.2:2377")
    assert step.op.stdin == TOKEN + b"\n" and step.op.stdin_digest == digest(TOKEN + b"\n")
    shown = " ".join(step.op.argv) + step.description + repr(step) + str(change.to_json())
    assert TOKEN.decode() not in shown


def test_with_three_managers_hosts_two_and_three_join_as_managers() -> None:
    assert [member_role(i, 3) for i in range(4)] == ["worker", "manager", "manager", "worker"]
    assert [member_role(i, 1) for i in range(3)] == ["worker"] * 3
    task = plan_member("h-2", 1, recorded("fresh"), recorded("leader-active"), 3, {"manager": b"M"})
    assert task.data["role"] == "manager" and task.changes[0].steps[0].op.stdin == b"M\n"


def test_a_member_already_in_this_swarm_changes_nothing() -> None:
    task = plan_member("h-2", 1, recorded("worker-active"), recorded("leader-active"), 1, {})
    assert task.changes == [] and task.error is None


def test_a_member_in_another_swarm_is_an_error_naming_it() -> None:
    foreign = replace(recorded("worker-active"), node_id="zzzforeignnode")
    task = plan_member("h-2", 1, foreign, recorded("leader-active"), 1, {"worker": TOKEN})
    assert task.changes == [] and "h-2 is in another swarm" in (task.error or "")


def test_a_half_joined_member_is_an_error() -> None:
    pending = replace(recorded("fresh"), state="pending", error="timeout")
    task = plan_member("h-2", 1, pending, recorded("leader-active"), 1, {"worker": TOKEN})
    assert task.changes == [] and "pending" in (task.error or "")


def test_a_replaced_host_that_rejoined_has_its_old_down_entry_removed() -> None:
    leader = recorded("leader-active")
    old = NodeFacts("oldid", "dytswx-exp1", "Down", "Active", "")
    other_down = NodeFacts("otherid", "someone-else", "Down", "Active", "")
    leader = replace(leader, nodes=(*leader.nodes, old, other_down))
    task = plan_stale_nodes(leader, [leader, recorded("worker-active")])
    assert [(c.target, [s.op.argv for s in c.steps]) for c in task.changes] == [
        ("swarm:node:oldid", [("docker", "node", "rm", "oldid")])]


def test_a_replaced_manager_is_demoted_before_removal_and_a_down_current_node_is_kept() -> None:
    leader = recorded("leader-active")
    old_manager = NodeFacts("oldmgr", "dytswx-exp1", "Down", "Active", "Unreachable")
    current_down = NodeFacts("e7jdmaedrra2gz4iwthmd8xc3", "dytswx-exp1", "Down", "Active", "")
    leader = replace(leader, nodes=(leader.nodes[0], old_manager, current_down))
    task = plan_stale_nodes(leader, [leader, recorded("worker-active")])
    (change,) = task.changes
    assert [s.op.argv for s in change.steps] == [("docker", "node", "demote", "oldmgr"),
                                                 ("docker", "node", "rm", "oldmgr")]


def test_a_converged_swarm_plans_no_removal() -> None:
    leader = recorded("leader-active")
    assert plan_stale_nodes(leader, [leader, recorded("worker-active")]).changes == []
