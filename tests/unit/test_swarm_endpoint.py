"""IPVS from the hosts' facts → the services' endpoint mode: the routing mesh (vip + ingress ports) only when every
host has IPVS, else dnsrr + host-mode ports; the choice is in the spec and its hash only through the facts."""

from __future__ import annotations

import pytest

from provision.facts.ipvs import IPVS_SCRIPT, parse_ipvs
from provision.plan.services import endpoint_choice, plan_service
from tests.unit.test_plan_services import facts_of
from tests.unit.test_service_spec import kwargs, svc, web

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("out,state,available", [
    ("ipvs=present\n", "present", True),
    ("ipvs=loaded\n", "loaded", True),
    ("ipvs=loadable\n", "loadable", True),
    ("ipvs=absent\n", "absent", False),
    ("motd: welcome\nipvs=absent\n", "absent", False),
    ("", "unknown", False),
    ("ipvs=maybe\n", "unknown", False),
])
def test_parse_ipvs(out, state, available):
    fact = parse_ipvs(out)
    assert (fact.state, fact.available) == (state, available)


def test_the_script_checks_the_proc_file_then_the_module():
    assert "/proc/net/ip_vs" in IPVS_SCRIPT and "modprobe -n ip_vs" in IPVS_SCRIPT
    assert IPVS_SCRIPT.index("/proc/net/ip_vs") < IPVS_SCRIPT.index("modprobe")


def test_every_host_with_ipvs_chooses_the_routing_mesh():
    choice = endpoint_choice({"node-1": True, "node-2": True, "node-3": True})
    assert choice.routing_mesh is True and "routing mesh" in choice.reason


@pytest.mark.parametrize("facts,named", [
    ({"node-1": True, "node-2": False, "node-3": True}, "node-2"),
    ({"node-1": True, "node-2": None}, "node-2"),  # unknown counts as absent
    ({"node-1": False}, "node-1"),
])
def test_one_host_without_ipvs_means_dnsrr_and_says_which(facts, named):
    choice = endpoint_choice(facts)
    assert choice.routing_mesh is False
    assert "dnsrr" in choice.reason and named in choice.reason
    assert all(label in choice.reason for label, has in facts.items() if not has)
    assert not any(label in choice.reason for label, has in facts.items() if has)


def test_no_hosts_is_no_mesh():
    assert endpoint_choice({}).routing_mesh is False


def test_mesh_spec_is_vip_with_ingress_ports_and_start_first():
    kw = kwargs(svc(routing_mesh=True))
    assert kw["endpoint_spec"] == {
        "Mode": "vip",
        "Ports": [{"Protocol": "tcp", "TargetPort": 8000, "PublishedPort": 18080, "PublishMode": "ingress"}]}
    # ingress ports are not bound per task: old and new tasks may run side by side
    assert kw["update_config"]["Order"] == "start-first"
    assert kw["rollback_config"]["Order"] == "start-first"
    assert "endpoint: vip" in svc(routing_mesh=True).describe()
    assert "endpoint: dnsrr" in svc().describe()


def test_without_mesh_the_spec_and_hash_are_as_before():
    kw = kwargs(svc(routing_mesh=False))
    assert kw["endpoint_spec"]["Mode"] == "dnsrr"
    assert kw["endpoint_spec"]["Ports"][0]["PublishMode"] == "host"
    assert kw["update_config"]["Order"] == "stop-first"
    assert svc(routing_mesh=False).config_hash == svc().config_hash


def test_the_choice_is_in_the_hash_and_stable_for_the_same_facts():
    assert svc(routing_mesh=True).config_hash != svc(routing_mesh=False).config_hash
    same = endpoint_choice({"a": False, "b": True}).routing_mesh
    first = svc(routing_mesh=same)
    second = svc(routing_mesh=endpoint_choice({"a": False, "b": True}).routing_mesh)
    # a second deploy on the same hosts: equal hashes, so the service is not touched
    assert plan_service(second, facts_of(first)) == []
    # hosts that gained IPVS: one update to the routing mesh
    mesh = svc(routing_mesh=endpoint_choice({"a": True, "b": True}).routing_mesh)
    assert [c.action for c in plan_service(mesh, facts_of(first))] == ["update"]


def test_unpublished_apps_have_no_ports_either_way():
    assert kwargs(svc(web(publish=None), routing_mesh=True))["endpoint_spec"] == {"Mode": "vip", "Ports": []}
