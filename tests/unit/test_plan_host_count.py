"""host.count and engine.mode swarm in the EC2 host plan: launches per missing index (with index tags), the surplus
terminated highest index first, self-referencing swarm rules on the one security group, and the no-op."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from pydantic import ValidationError
from rich.console import Console

from provision.changes import Change, Step
from provision.cli.aws import confirm
from provision.errors import InputError, StepFailed
from provision.facts.aws import AmiFact, HostFacts, parse_instance, parse_key_pair, parse_security_group
from provision.ops import Ec2Call, Wait, thaw
from provision.plan.host import client_tokens, desired_from_playbook, plan_host
from provision.playbook import load_playbook
from provision.providers.aws import _surplus_confirmed
from provision.providers.aws_context import AwsContext
from provision.report import Reporter
from provision.spec import Playbook

pytestmark = pytest.mark.unit

IMAGE = AmiFact(id="ami-0123456789abcdef0", root_device_name="/dev/sda1")
OWNED = [{"Key": "dockyard:project", "Value": "shop"}, {"Key": "dockyard:environment", "Value": "staging"}]
BASE_RULES = [
    {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "203.0.113.7/32"}]},
    {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
     "Ipv6Ranges": [{"CidrIpv6": "::/0"}]},
]
SWARM = {("tcp", 2377), ("tcp", 7946), ("udp", 7946), ("udp", 4789)}


def _self_rules(group_id: str) -> list[dict[str, Any]]:
    return [{"IpProtocol": proto, "FromPort": port, "ToPort": port, "UserIdGroupPairs": [{"GroupId": group_id}]}
            for proto, port in sorted(SWARM)]


def _canon(perms: list[dict[str, Any]]) -> set[str]:
    return {json.dumps(p, sort_keys=True) for p in perms}


class FakeEc2:
    """Records calls; each RunInstances answers a new instance id (i-1, i-2, …)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        def call(**kw: Any) -> Any:
            self.calls.append((name, kw))
            if name == "create_security_group":
                return {"GroupId": "sg-new"}
            if name == "run_instances":
                n = sum(1 for c, _ in self.calls if c == "run_instances")
                return {"Instances": [{"InstanceId": f"i-{n}", "State": {"Name": "pending"},
                                       "InstanceType": "t3.small"}]}
            return {}
        return call

    def get_waiter(self, name: str) -> Any:
        calls = self.calls

        class Waiter:
            def wait(self, **kw: Any) -> None:
                calls.append((name, kw))
        return Waiter()


def _playbook(tmp_path: Path, count: int = 3, mode: str = "swarm") -> Playbook:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    line = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    private = tmp_path / "id_ed25519"
    Path(str(private) + ".pub").write_bytes(line + b" me\n")
    return Playbook.model_validate({
        "project": "shop", "environment": "staging", "provider": "aws",
        "host": {"region": "eu-west-1", "ssh_from": ["203.0.113.7/32"], "open_ports": [80], "count": count},
        "engine": {"mode": mode}, "ssh": {"key_file": str(private)}})


def _desired(tmp_path: Path, count: int = 3, mode: str = "swarm") -> Any:
    from provision.facts.aws import read_local_key

    pb = _playbook(tmp_path, count, mode)
    return desired_from_playbook(pb, read_local_key(pb.key_file))


def _instance(index: int | None, iid: str | None = None) -> dict[str, Any]:
    tags = [*OWNED, {"Key": "Name", "Value": "shop-staging" if index is None else f"shop-staging-{index}"}]
    if index is not None:
        tags.append({"Key": "dockyard:index", "Value": str(index)})
    return {"InstanceId": iid or f"i-{index}", "State": {"Name": "running"}, "InstanceType": "t3.small",
            "ImageId": IMAGE.id, "KeyName": "dockyard-shop-staging", "VpcId": "vpc-1", "Tags": tags,
            "SecurityGroups": [{"GroupId": "sg-0aa"}]}


def _facts(d: Any, indexes: list[int | None], rules: list[dict[str, Any]] | None = None,
           group: bool = True) -> HostFacts:
    # by default the group already holds what the playbook wants (the swarm rules too, in swarm mode)
    wanted = BASE_RULES + (_self_rules("sg-0aa") if d.swarm else [])
    sg = {"GroupId": "sg-0aa", "GroupName": "dockyard-shop-staging", "VpcId": "vpc-1", "Tags": OWNED,
          "IpPermissions": wanted if rules is None else rules}
    key = {"KeyName": "dockyard-shop-staging", "KeyFingerprint": sorted(d.key.fingerprints)[0], "Tags": OWNED}
    return HostFacts(region="eu-west-1", vpc_id="vpc-1",
                     instances=tuple(parse_instance(_instance(i)) for i in indexes),
                     security_group=parse_security_group(sg) if group else None,
                     key_pair=parse_key_pair(key), image=IMAGE)


def _ops(changes: list[Change]) -> list[Any]:
    return [step.op for change in changes for step in change.steps]


def _apply(changes: list[Change]) -> FakeEc2:
    ec2 = FakeEc2()
    ctx = AwsContext(ec2, "eu-west-1", delay=0.01, max_wait=0.05)
    for op in _ops(changes):
        ctx.execute(op)
    return ec2


def _tags(run: dict[str, Any]) -> dict[str, str]:
    [spec] = [s for s in run["TagSpecifications"] if s["ResourceType"] == "instance"]
    return {t["Key"]: t["Value"] for t in spec["Tags"]}


def test_count_3_from_nothing_launches_three_indexed_instances_then_waits_for_all(tmp_path) -> None:
    d = _desired(tmp_path)
    changes = plan_host(d, _facts(d, []))
    launches = [c for c in changes if c.target == "aws:instance"]
    assert [(c.action, c.data["index"], c.data["name"]) for c in launches] == [
        ("create", 1, "shop-staging-1"), ("create", 2, "shop-staging-2"), ("create", 3, "shop-staging-3")]
    waits = [op for op in _ops(changes) if isinstance(op, Wait)]
    assert waits == [Wait("instance.running", timeout=600.0, refs=(("ids", "launched_ids"),))]
    ec2 = _apply(changes)
    runs = [kw for name, kw in ec2.calls if name == "run_instances"]
    assert [(_tags(r)["Name"], _tags(r)["dockyard:index"]) for r in runs] == [
        ("shop-staging-1", "1"), ("shop-staging-2", "2"), ("shop-staging-3", "3")]
    assert all(_tags(r)["dockyard:project"] == "shop" and r["InstanceType"] == "t3.small" for r in runs)
    assert len({r["ClientToken"] for r in runs}) == 3  # one index's retry never returns another's instance
    assert runs[1]["ClientToken"] == client_tokens("shop", "staging", "sg-0aa", (), index=2)[0]
    assert [kw["InstanceIds"] for name, kw in ec2.calls if name == "instance_running"] == [["i-1", "i-2", "i-3"]]


def test_count_3_from_2_launches_only_index_3(tmp_path) -> None:
    d = _desired(tmp_path)
    changes = plan_host(d, _facts(d, [1, 2]))
    assert [(c.target, c.action, c.data.get("index")) for c in changes] == [("aws:instance", "create", 3)]
    [run] = [op for op in _ops(changes) if isinstance(op, Ec2Call) and op.op == "instance.run"]
    assert _tags(thaw(dict(run.params)["params"]))["Name"] == "shop-staging-3"
    assert dict(run.params)["index"] == 3


def test_count_3_from_4_terminates_index_4_and_from_5_highest_first(tmp_path) -> None:
    d = _desired(tmp_path)
    changes = plan_host(d, _facts(d, [1, 2, 3, 4]))
    assert [(c.target, c.action, c.data["instances"]) for c in changes] == [("aws:instance", "delete", ["i-4"])]
    assert _ops(changes) == [Ec2Call("instance.terminate", (("ids", ("i-4",)),)),
                             Wait("instance.terminated", (("ids", ("i-4",)),), timeout=600.0)]
    five = plan_host(d, _facts(d, [5, 1, 4, 2, 3]))
    assert [c.data["index"] for c in five] == [5, 4]
    assert [op.op for op in _ops(five) if isinstance(op, Ec2Call)] == ["instance.terminate"] * 2
    assert five[-1].steps[-1].op == Wait("instance.terminated", (("ids", ("i-5", "i-4")),), timeout=600.0)


def test_a_single_host_that_grows_becomes_index_1_and_is_not_replaced(tmp_path) -> None:
    d = _desired(tmp_path)
    changes = plan_host(d, _facts(d, [None]))
    assert [(c.target, c.action) for c in changes] == [
        ("aws:instance:tags", "update"), ("aws:instance", "create"), ("aws:instance", "create")]
    assert changes[0].steps[0].op == Ec2Call("instance.tags", (
        ("instance_id", "i-None"), ("tags", (("Name", "shop-staging-1"), ("dockyard:index", "1")))))
    assert [c.data["index"] for c in changes[1:]] == [2, 3]
    ec2 = _apply(changes[:1])
    assert ec2.calls == [("create_tags", {"Resources": ["i-None"], "Tags": [
        {"Key": "Name", "Value": "shop-staging-1"}, {"Key": "dockyard:index", "Value": "1"}]})]


def test_count_1_keeps_the_single_hosts_name_and_tags(tmp_path) -> None:
    d = _desired(tmp_path, count=1)
    changes = plan_host(d, _facts(d, []))
    [run] = [op for op in _ops(changes) if isinstance(op, Ec2Call) and op.op == "instance.run"]
    tags = _tags(thaw(dict(run.params)["params"]))
    assert tags["Name"] == "shop-staging" and "dockyard:index" not in tags and "index" not in dict(run.params)
    assert plan_host(d, _facts(d, [None])) == []


def test_two_instances_on_one_index_or_an_unreadable_index_are_errors(tmp_path) -> None:
    d = _desired(tmp_path)
    twice = HostFacts(region="eu-west-1", vpc_id="vpc-1", image=IMAGE, instances=(
        parse_instance(_instance(2)), parse_instance(_instance(2, "i-other"))))
    with pytest.raises(StepFailed, match=r"index 2: i-2 .*i-other .*expected at most one"):
        plan_host(d, twice)
    bad = _instance(1)
    bad["Tags"] = [*OWNED, {"Key": "dockyard:index", "Value": "one"}]
    with pytest.raises(StepFailed, match="dockyard:index='one'"):
        plan_host(d, HostFacts(region="eu-west-1", vpc_id="vpc-1", image=IMAGE, instances=(parse_instance(bad),)))


def test_swarm_rules_reference_the_group_itself_on_a_new_group(tmp_path) -> None:
    d = _desired(tmp_path, mode="swarm")
    changes = plan_host(d, _facts(d, [], group=False))
    [rules] = [c for c in changes if c.target == "aws:security-group:rules"]
    assert "tcp/2377 from this group" in rules.data["added"] and "udp/4789 from this group" in rules.data["added"]
    ec2 = _apply(changes)
    [(_, auth)] = [(n, kw) for n, kw in ec2.calls if n == "authorize_security_group_ingress"]
    assert auth["GroupId"] == "sg-new"
    own = [p for p in auth["IpPermissions"] if "UserIdGroupPairs" in p]
    assert {(p["IpProtocol"], p["FromPort"]) for p in own} == SWARM
    assert all(p["UserIdGroupPairs"] == [{"GroupId": "sg-new"}] and "IpRanges" not in p for p in own)
    swarm_ports = {port for _, port in SWARM}
    assert not any(p["FromPort"] in swarm_ports for p in auth["IpPermissions"] if "IpRanges" in p)


def test_swarm_rules_on_an_existing_group_name_its_id_and_converge(tmp_path) -> None:
    d = _desired(tmp_path, mode="swarm")
    [added] = plan_host(d, _facts(d, [1, 2, 3], rules=BASE_RULES))  # a group from before swarm mode
    [auth] = _ops([added])
    assert auth.op == "security_group.authorize" and "self_perms" not in dict(auth.params)
    perms = thaw(dict(auth.params)["perms"])
    assert _canon(perms) == _canon(_self_rules("sg-0aa"))
    assert plan_host(d, _facts(d, [1, 2, 3], rules=BASE_RULES + _self_rules("sg-0aa"))) == []  # no-op
    # swarm off: the self-referencing rules are removed, nothing else
    standalone = dataclasses.replace(d, swarm=False)
    [removed] = plan_host(standalone, _facts(d, [1, 2, 3], rules=BASE_RULES + _self_rules("sg-0aa")))
    [revoke] = _ops([removed])
    assert revoke.op == "security_group.revoke" and len(removed.data["removed"]) == 4
    assert _canon(thaw(dict(revoke.params)["perms"])) == _canon(_self_rules("sg-0aa"))


def test_without_swarm_no_rule_references_a_group(tmp_path) -> None:
    d = _desired(tmp_path, count=1, mode="standalone")
    assert not any(r.kind in ("self", "group") for r in d.rules)
    assert {r.kind for r in _desired(tmp_path, mode="swarm").rules} >= {"self"}


def test_count_is_1_to_10_and_only_for_aws(tmp_path) -> None:
    for bad in (0, 11):
        with pytest.raises(ValidationError):
            _playbook(tmp_path, count=bad)
    path = tmp_path / "existing.yml"
    path.write_text("project: shop\nprovider: existing\nhost:\n  address: 192.0.2.1\n  count: 2\n")
    with pytest.raises(InputError, match=r"host\.count.*provider aws"):
        load_playbook(path)
    # several instances are one environment only as a swarm
    with pytest.raises(ValidationError, match="only as a swarm"):
        _playbook(tmp_path, count=2, mode="standalone")


def test_lowering_the_count_asks_like_teardown(tmp_path, monkeypatch) -> None:
    pb = _playbook(tmp_path, count=1)
    doomed = [Change("aws:instance", "delete", "index 2 is above host.count 1",
                     (Step("terminate i-2", Ec2Call("instance.terminate", (("ids", ("i-2",)),))),),
                     data={"instances": ["i-2"], "index": 2})]
    with pytest.raises(StepFailed, match=r"would terminate i-2.*--yes"):
        _surplus_confirmed(pb, doomed, None, check=False)  # nobody to ask: refuse
    _surplus_confirmed(pb, doomed, None, check=True)  # --check terminates nothing
    asked: list[list[Change]] = []
    _surplus_confirmed(pb, doomed, asked.append, check=False)
    assert asked == [doomed]
    rep = Reporter(console=Console(file=io.StringIO()))

    class NoTty(io.StringIO):
        def isatty(self) -> bool:
            return False

    monkeypatch.setattr("sys.stdin", NoTty("staging\n"))
    with pytest.raises(InputError, match=r"provision of shop/staging needs confirmation.*--yes"):
        confirm(pb, doomed, yes=False, reporter=rep, command="provision")


def test_provision_says_where_every_host_is(tmp_path) -> None:
    from provision.phases.host import say_where
    from provision.providers.aws import host_info
    from provision.providers.hostinfo import host_entries

    pb = _playbook(tmp_path)
    each = [host_info(pb, parse_instance({**_instance(i), "PublicIpAddress": f"203.0.113.{i}"}), "eu-west-1")
            for i in (1, 2, 3)]
    first = host_info(pb, parse_instance({**_instance(1), "PublicIpAddress": "203.0.113.1"}), "eu-west-1",
                      hosts=each)
    assert [(h["index"], h["name"], h["id"]) for h in host_entries(first)] == [
        (1, "shop-staging-1", "i-1"), (2, "shop-staging-2", "i-2"), (3, "shop-staging-3", "i-3")]
    rep = Reporter(console=Console(file=io.StringIO(), width=200))
    say_where(pb, first, rep)
    out = rep.console.file.getvalue()
    assert "i-1 is running at 203.0.113.1" in out
    assert "i-3 (shop-staging-3) is running at 203.0.113.3" in out
