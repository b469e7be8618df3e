"""The EC2 host plan: recorded describe responses → facts → changes; effects run against a fake context."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from pydantic import ValidationError

from provision.errors import InputError, StepFailed
from provision.facts.aws import (
    AmiFact,
    HostFacts,
    Rule,
    TeardownFacts,
    image_parameter,
    key_fingerprints,
    parse_ami,
    parse_instance,
    parse_key_pair,
    parse_rules,
    parse_security_group,
    read_local_key,
)
from provision.ops import Ec2Call, Wait, thaw
from provision.ops import params as kw
from provision.plan.host import (
    client_tokens,
    desired_from_playbook,
    plan_host,
    run_instance_params,
)
from provision.plan.teardown import plan_teardown
from provision.providers.aws_context import AwsContext
from provision.spec import Playbook

pytestmark = pytest.mark.unit

TAGS = [{"Key": "dockyard:project", "Value": "shop"}, {"Key": "dockyard:environment", "Value": "staging"},
        {"Key": "Name", "Value": "shop-staging"}]
START = Ec2Call("instance.start", kw(instance_id="i-0abc"))
RUNNING = Wait("instance.running", kw(ids=("i-0abc",)), timeout=600.0)
STOPPED = Wait("instance.stopped", kw(ids=("i-0abc",)), timeout=600.0)
IMAGE = AmiFact(id="ami-0123456789abcdef0", root_device_name="/dev/sda1", architecture="x86_64")


class FakeEc2:
    """The boto3 EC2 client calls a fresh provision makes, exactly those; records them."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def import_key_pair(self, **kw: Any) -> None:
        self.calls.append(("import_key_pair", kw))

    def create_security_group(self, **kw: Any) -> dict[str, Any]:
        self.calls.append(("create_security_group", kw))
        return {"GroupId": "sg-new"}

    def authorize_security_group_ingress(self, **kw: Any) -> None:
        self.calls.append(("authorize_security_group_ingress", kw))

    def run_instances(self, **kw: Any) -> dict[str, Any]:
        self.calls.append(("run_instances", kw))
        return {"Instances": [{**_instance("pending"), "InstanceId": "i-new"}]}

    def get_waiter(self, name: str) -> Any:
        calls = self.calls

        class Waiter:
            def wait(self, **kw: Any) -> None:
                calls.append((name, kw))
        return Waiter()


def ops(changes) -> list[Any]:
    return [step.op for change in changes for step in change.steps]


def apply(changes) -> FakeEc2:
    ec2 = FakeEc2()
    ctx = AwsContext(ec2, "eu-west-1", delay=0.01, max_wait=0.05)
    for op in ops(changes):
        ctx.execute(op)
    return ec2


def _pub(tmp_path: Path, kind: str = "ed25519") -> Path:
    key = ed25519.Ed25519PrivateKey.generate() if kind == "ed25519" else \
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
    line = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    private = tmp_path / f"id_{kind}"
    Path(str(private) + ".pub").write_bytes(line + b" me@laptop\n")
    return private


def _playbook(tmp_path: Path, ssh: dict[str, Any] | None = None, **host: Any) -> Playbook:
    data = {"project": "shop", "environment": "staging", "provider": "aws",
            "host": {"region": "eu-west-1", "ssh_from": ["203.0.113.7/32"], "open_ports": [80, 443], **host},
            "ssh": {"key_file": str(_pub(tmp_path)), **(ssh or {})}}
    return Playbook.model_validate(data)


@pytest.fixture
def desired(tmp_path: Path):
    pb = _playbook(tmp_path, tags={"team": "web"})
    return desired_from_playbook(pb, read_local_key(pb.key_file))


def _sg(rules: list[dict[str, Any]], tags=TAGS) -> dict[str, Any]:
    return {"GroupId": "sg-0aa", "GroupName": "dockyard-shop-staging", "VpcId": "vpc-1", "Tags": tags,
            "IpPermissions": rules}


def _instance(state: str = "running", itype: str = "t3.small", groups=("sg-0aa",)) -> dict[str, Any]:
    return {"InstanceId": "i-0abc", "State": {"Name": state}, "InstanceType": itype, "ImageId": IMAGE.id,
            "KeyName": "dockyard-shop-staging", "PublicIpAddress": "54.1.2.3", "PrivateIpAddress": "10.0.0.5",
            "SubnetId": "subnet-1", "VpcId": "vpc-1", "Tags": TAGS,
            "SecurityGroups": [{"GroupId": g, "GroupName": "x"} for g in groups]}


CONVERGED_RULES = [
    {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "203.0.113.7/32"}]},
    {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
     "Ipv6Ranges": [{"CidrIpv6": "::/0"}]},
    {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
     "Ipv6Ranges": [{"CidrIpv6": "::/0"}]},
]


def _key(desired, fingerprint: str | None = None) -> dict[str, Any]:
    return {"KeyName": "dockyard-shop-staging", "KeyPairId": "key-1", "KeyType": "ed25519", "Tags": TAGS,
            "KeyFingerprint": fingerprint or sorted(desired.key.fingerprints)[0]}


def _facts(desired, *, instances=(), sg=None, key=True, gone=()) -> HostFacts:
    return HostFacts(region="eu-west-1", vpc_id="vpc-1",
                     instances=tuple(parse_instance(i) for i in instances),
                     gone=tuple(parse_instance(i) for i in gone),
                     security_group=parse_security_group(sg) if sg else None,
                     key_pair=parse_key_pair(_key(desired)) if key is True else key, image=IMAGE)


def test_fresh_environment_creates_key_group_rules_and_instance_in_order(desired) -> None:
    changes = plan_host(desired, _facts(desired, key=None))
    assert [(c.target, c.action) for c in changes] == [
        ("aws:key-pair", "create"), ("aws:security-group", "create"), ("aws:security-group:rules", "update"),
        ("aws:instance", "create")]
    steps = ops(changes)
    assert steps[:2] == [
        Ec2Call("key_pair.import", kw(name="dockyard-shop-staging", material=desired.key.material,
                                          tags=desired.tags)),
        Ec2Call("security_group.create", kw(name="dockyard-shop-staging", description="dockyard host shop/staging",
                                                vpc_id="vpc-1", tags=desired.tags))]
    assert steps[2].refs == steps[3].refs == (("group_id", "security_group_id"),)  # the group made by step 2
    assert steps[4] == Wait("instance.running", timeout=600.0, refs=(("ids", "instance_id"),))
    # the EC2 executor resolves the refs from what it created
    ec2 = apply(changes)
    names = [name for name, _ in ec2.calls]
    assert names == ["import_key_pair", "create_security_group", "authorize_security_group_ingress",
                     "run_instances", "instance_running"]
    key = ec2.calls[0][1]
    assert key["KeyName"] == "dockyard-shop-staging" and key["PublicKeyMaterial"].startswith(b"ssh-ed25519 ")
    key_tags = {t["Key"]: t["Value"] for t in key["TagSpecifications"][0]["Tags"]}
    assert key_tags["dockyard:project"] == "shop" and key_tags["team"] == "web"
    group_id, perms = ec2.calls[2][1]["GroupId"], ec2.calls[2][1]["IpPermissions"]
    assert group_id == "sg-new"  # the freshly created group
    ssh = {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "203.0.113.7/32"}]}
    assert ssh in perms
    assert not any(p["FromPort"] == 22 and "Ipv6Ranges" in p for p in perms)
    https6 = {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}
    assert https6 in perms
    assert len(perms) == 5
    run = ec2.calls[3][1]
    tokens = [run.pop("ClientToken")]
    assert ec2.calls[4][1]["InstanceIds"] == ["i-new"]
    params = run
    assert params["SecurityGroupIds"] == ["sg-new"]
    assert params["MetadataOptions"]["HttpTokens"] == "required"
    assert params["MetadataOptions"]["HttpPutResponseHopLimit"] == 1  # containers cannot reach IMDS
    assert params["BlockDeviceMappings"] == [{"DeviceName": "/dev/sda1", "Ebs": {
        "VolumeSize": 20, "VolumeType": "gp3", "Encrypted": True, "DeleteOnTermination": True}}]
    kinds = {spec["ResourceType"]: {t["Key"]: t["Value"] for t in spec["Tags"]}
             for spec in params["TagSpecifications"]}
    assert set(kinds) == {"instance", "volume"}
    for tags in kinds.values():
        assert tags["dockyard:project"] == "shop" and tags["dockyard:environment"] == "staging"
        assert tags["Name"] == "shop-staging" and tags["team"] == "web"
    assert params["KeyName"] == "dockyard-shop-staging" and params["ImageId"] == IMAGE.id
    assert tokens == client_tokens("shop", "staging", "sg-new", ())[:1]


def test_converged_environment_plans_nothing(desired) -> None:
    facts = _facts(desired, instances=[_instance()], sg=_sg(CONVERGED_RULES))
    assert plan_host(desired, facts) == []


def test_rules_converge_missing_added_stale_removed(desired) -> None:
    rules = [CONVERGED_RULES[0], CONVERGED_RULES[1],
             {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
             {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": "sg-other"}]}]
    changes = plan_host(desired, _facts(desired, instances=[_instance()], sg=_sg(rules)))
    assert [c.target for c in changes] == ["aws:security-group:rules"]
    add, remove = ops(changes)
    assert (add.op, add.get("group_id"), add.refs) == ("security_group.authorize", "sg-0aa", ())
    assert (remove.op, remove.get("group_id"), remove.refs) == ("security_group.revoke", "sg-0aa", ())
    added, removed = thaw(add.get("perms")), thaw(remove.get("perms"))
    assert sorted(p["FromPort"] for p in added) == [443, 443]
    open_ssh = {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
    assert open_ssh in removed
    assert {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": "sg-other"}]} in removed
    assert len(removed) == 2
    assert changes[0].data["removed"] == sorted(changes[0].data["removed"])
    assert "tcp/22 from 0.0.0.0/0" in changes[0].before and "tcp/22 from 0.0.0.0/0" not in changes[0].after


def test_stopped_host_is_started_and_stopping_host_waited_for_first(desired) -> None:
    changes = plan_host(desired, _facts(desired, instances=[_instance("stopped")], sg=_sg(CONVERGED_RULES)))
    assert [(c.target, c.action) for c in changes] == [("aws:instance", "start")]
    start, running = START, RUNNING
    assert ops(changes) == [start, running]
    changes = plan_host(desired, _facts(desired, instances=[_instance("stopping")], sg=_sg(CONVERGED_RULES)))
    assert ops(changes) == [STOPPED, start, running]


def test_instance_type_drift_is_a_resize_change_that_stops_modifies_and_starts(desired) -> None:
    changes = plan_host(desired, _facts(desired, instances=[_instance(itype="t3.micro")],
                                        sg=_sg(CONVERGED_RULES)))
    assert [(c.target, c.action) for c in changes] == [("aws:instance:type", "resize")]
    assert changes[0].data == {"flag": "--resize"}
    assert ops(changes) == [Ec2Call("instance.stop", kw(instance_id="i-0abc")), STOPPED,
                            Ec2Call("instance.modify_type", kw(instance_id="i-0abc", instance_type="t3.small")),
                            START, RUNNING]


def test_resize_of_a_stopped_host_modifies_before_the_start(desired) -> None:
    changes = plan_host(desired, _facts(desired, instances=[_instance("stopped", itype="t3.micro")],
                                        sg=_sg(CONVERGED_RULES)))
    assert [c.target for c in changes] == ["aws:instance:type", "aws:instance"]
    assert ops(changes) == [Ec2Call("instance.modify_type", kw(instance_id="i-0abc", instance_type="t3.small")),
                            START, RUNNING]


def test_missing_group_on_existing_instance_is_attached(desired) -> None:
    changes = plan_host(desired, _facts(desired, instances=[_instance(groups=("sg-default",))],
                                        sg=_sg(CONVERGED_RULES)))
    assert ops(changes) == [Ec2Call("instance.groups", kw(instance_id="i-0abc", groups=["sg-default", "sg-0aa"]))]


def test_key_pair_with_another_fingerprint_is_an_error_never_an_overwrite(desired) -> None:
    bad = parse_key_pair(_key(desired, fingerprint="aa:bb:cc"))
    with pytest.raises(StepFailed, match=r"dockyard-shop-staging.*aa:bb:cc.*never overwrites"):
        plan_host(desired, _facts(desired, key=bad))


def test_key_pair_matches_by_returned_public_key_too(desired) -> None:
    kp = parse_key_pair({**_key(desired, fingerprint="zz"), "PublicKey": desired.key.material.split()[0] + " "
                         + desired.key.blob + " other-comment"})
    assert [c.target for c in plan_host(desired, _facts(desired, key=kp, sg=_sg(CONVERGED_RULES),
                                                        instances=[_instance()]))] == []


def test_more_than_one_tagged_instance_is_refused(desired) -> None:
    second = {**_instance(), "InstanceId": "i-0def"}
    with pytest.raises(StepFailed, match=r"2 instances carry the tags.*i-0abc.*i-0def"):
        plan_host(desired, _facts(desired, instances=[_instance(), second], sg=_sg(CONVERGED_RULES)))


def test_untagged_group_with_our_name_is_not_touched(desired) -> None:
    with pytest.raises(StepFailed, match="does not carry the tags"):
        plan_host(desired, _facts(desired, sg=_sg(CONVERGED_RULES, tags=[])))


def test_the_ssh_port_in_open_ports_is_refused_by_the_playbook(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="port 22 is the SSH port"):
        _playbook(tmp_path, open_ports=[22, 80])
    with pytest.raises(ValidationError, match="port 2222 is the SSH port"):
        _playbook(tmp_path, ssh={"port": 2222}, open_ports=[80, 2222])
    assert _playbook(tmp_path, open_ports=[22, 80], ssh={"port": 2222}).host.open_ports == (22, 80)


def test_the_ssh_rule_follows_ssh_port(tmp_path: Path) -> None:
    pb = _playbook(tmp_path, ssh={"port": 2222})
    d = desired_from_playbook(pb, read_local_key(pb.key_file))
    ssh_rules = {r for r in d.rules if r.source == "203.0.113.7/32"}
    assert ssh_rules == {Rule.tcp(2222, "203.0.113.7/32")}
    stale = {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "203.0.113.7/32"}]}
    changes = plan_host(d, _facts(d, instances=[_instance()], sg=_sg([stale, *CONVERGED_RULES[1:]])))
    assert changes[0].data == {"added": ["tcp/2222 from 203.0.113.7/32"], "removed": ["tcp/22 from 203.0.113.7/32"]}


def test_ssh_from_anywhere_needs_the_opt_in(tmp_path: Path) -> None:
    for cidr in ("0.0.0.0/0", "::/0"):
        with pytest.raises(ValidationError, match="opens SSH to the whole internet"):
            _playbook(tmp_path, ssh_from=["203.0.113.7/32", cidr])
    pb = _playbook(tmp_path, ssh_from=["0.0.0.0/0"], allow_ssh_from_anywhere=True)
    assert Rule.tcp(22, "0.0.0.0/0") in desired_from_playbook(pb, read_local_key(pb.key_file)).rules


def test_imds_hop_limit_defaults_to_1_and_converges_on_existing_hosts(tmp_path: Path) -> None:
    pb = _playbook(tmp_path, imds_hop_limit=2)
    d = desired_from_playbook(pb, read_local_key(pb.key_file))
    params = run_instance_params(d, IMAGE, "sg-1")
    assert params["MetadataOptions"]["HttpPutResponseHopLimit"] == 2
    for bad in (0, 65, True):
        with pytest.raises(ValidationError, match="imds_hop_limit"):
            _playbook(tmp_path, imds_hop_limit=bad)
    d1 = desired_from_playbook(_playbook(tmp_path), read_local_key(pb.key_file))
    old = {**_instance(), "MetadataOptions": {"HttpTokens": "required", "HttpPutResponseHopLimit": 2}}
    changes = plan_host(d1, _facts(d1, instances=[old], sg=_sg(CONVERGED_RULES)))
    assert [(c.target, c.action) for c in changes] == [("aws:instance:metadata", "update")]
    assert ops(changes) == [Ec2Call("instance.metadata_options", kw(instance_id="i-0abc", hop_limit=1))]
    old["MetadataOptions"]["HttpPutResponseHopLimit"] = 1
    assert plan_host(d1, _facts(d1, instances=[old], sg=_sg(CONVERGED_RULES))) == []


def test_client_tokens_are_stable_per_generation_and_new_after_teardown() -> None:
    first = client_tokens("shop", "staging", "sg-1", ())
    assert first == client_tokens("shop", "staging", "sg-1", ())  # a retry reuses the token
    assert len(set(first)) == 3 and all(len(t) <= 64 and t.isascii() for t in first)
    assert first[0] != client_tokens("shop", "staging", "sg-2", ())[0]  # new group after teardown
    assert first[0] != client_tokens("shop", "staging", "sg-1", ("i-dead",))[0]  # instance terminated
    assert first[0] != client_tokens("shop", "prod", "sg-1", ())[0]


def test_teardown_touches_only_what_carries_both_tags() -> None:
    foreign = {**_instance(), "InstanceId": "i-foreign",
               "Tags": [{"Key": "dockyard:project", "Value": "shop"}]}
    facts = TeardownFacts(
        instances=(parse_instance(_instance()), parse_instance(foreign),
                   parse_instance({**_instance("shutting-down"), "InstanceId": "i-dying"})),
        security_groups=(parse_security_group(_sg([])), parse_security_group({**_sg([]), "GroupId": "sg-x",
                                                                                "Tags": []})),
        key_pair=parse_key_pair({"KeyName": "dockyard-shop-staging", "KeyFingerprint": "x", "Tags": TAGS}))
    changes = plan_teardown(facts, "shop", "staging")
    assert [(c.target, c.action) for c in changes] == [
        ("aws:instance", "delete"), ("aws:security-group", "delete"), ("aws:key-pair", "delete")]
    assert ops(changes) == [
        Ec2Call("instance.terminate", kw(ids=["i-0abc"])),
        Wait("instance.terminated", kw(ids=("i-0abc", "i-dying")), timeout=600.0),
        Ec2Call("security_group.delete", kw(group_id="sg-0aa")),
        Ec2Call("key_pair.delete", kw(name="dockyard-shop-staging"))]
    untagged_key = parse_key_pair({"KeyName": "dockyard-shop-staging", "KeyFingerprint": "x"})
    assert plan_teardown(TeardownFacts(key_pair=untagged_key), "shop", "staging") == []


def test_parsers_flatten_rules_and_find_the_root_device() -> None:
    rules = parse_rules([{"IpProtocol": "tcp", "FromPort": 80, "ToPort": 81,
                          "IpRanges": [{"CidrIp": "1.2.3.0/24"}, {"CidrIp": "5.6.7.8/32"}]},
                         {"IpProtocol": "-1", "PrefixListIds": [{"PrefixListId": "pl-1"}]}])
    assert sorted(map(str, rules)) == ["all traffic from pl-1", "tcp/80-81 from 1.2.3.0/24",
                                       "tcp/80-81 from 5.6.7.8/32"]
    assert Rule.tcp(22, "2001:db8::/32").permission() == {
        "IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "Ipv6Ranges": [{"CidrIpv6": "2001:db8::/32"}]}
    assert parse_ami({"ImageId": "ami-1", "RootDeviceName": "/dev/xvda"}).root_device_name == "/dev/xvda"
    assert parse_ami({"ImageId": "ami-1", "BlockDeviceMappings": [
        {"DeviceName": "/dev/sdb", "VirtualName": "ephemeral0"},
        {"DeviceName": "/dev/sda1", "Ebs": {}}]}).root_device_name == "/dev/sda1"


def test_image_parameters_follow_the_architecture_of_the_instance_type() -> None:
    assert image_parameter("ubuntu-24.04", "t3.small") == \
        "/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id"
    assert "/arm64/" in image_parameter("ubuntu-22.04", "t4g.small")
    assert image_parameter("al2023", "m7gd.large").endswith("al2023-ami-kernel-default-arm64")
    assert image_parameter("al2023", "g5.xlarge").endswith("al2023-ami-kernel-default-x86_64")
    assert image_parameter("debian-12", "c6gn.large") == "/aws/service/debian/release/12/latest/arm64"


def test_ed25519_fingerprint_includes_openssh_sha256_form(tmp_path: Path) -> None:
    private = _pub(tmp_path, "ed25519")
    out = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(private) + ".pub"],
                         capture_output=True, text=True, check=True).stdout
    openssh = out.split()[1].removeprefix("SHA256:")
    key_type, _, prints = key_fingerprints(Path(str(private) + ".pub").read_text())
    assert key_type == "ed25519"
    assert openssh in prints and openssh + "=" in prints


def test_rsa_fingerprint_is_md5_of_the_der_public_key_as_aws_documents(tmp_path: Path) -> None:
    private = _pub(tmp_path, "rsa")
    pem = subprocess.run(["ssh-keygen", "-e", "-m", "PKCS8", "-f", str(private) + ".pub"],
                         capture_output=True, check=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pem, capture_output=True,
                         check=True).stdout
    md5 = subprocess.run(["openssl", "md5", "-c"], input=der, capture_output=True,
                         check=True).stdout.decode().split()[-1]
    assert key_fingerprints(Path(str(private) + ".pub").read_text())[2] == {md5}


def test_missing_public_key_is_invalid_input_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"id_none\.pub.*ssh-keygen"):
        read_local_key(tmp_path / "id_none")


def test_subnet_and_instance_profile_reach_run_instances(tmp_path: Path) -> None:
    pb = _playbook(tmp_path, subnet_id="subnet-0abc", instance_profile="docker-host")
    params = run_instance_params(desired_from_playbook(pb, read_local_key(pb.key_file)), IMAGE, "sg-1")
    assert params["SubnetId"] == "subnet-0abc" and params["IamInstanceProfile"] == {"Name": "docker-host"}
    arn = "arn:aws:iam::123456789012:instance-profile/docker-host"
    pb = _playbook(tmp_path, instance_profile=arn)
    params = run_instance_params(desired_from_playbook(pb, read_local_key(pb.key_file)), IMAGE, "sg-1")
    assert params["IamInstanceProfile"] == {"Arn": arn} and "SubnetId" not in params


def test_host_plans_differing_only_in_an_op_parameter_compare_unequal(desired) -> None:
    facts = _facts(desired, instances=[_instance(itype="t3.micro")], sg=_sg(CONVERGED_RULES))
    assert plan_host(desired, facts) == plan_host(desired, facts)
    bigger = dataclasses.replace(desired, instance_type="t3.medium")
    one, other = plan_host(desired, facts), plan_host(bigger, facts)
    assert [s.description.split(" to ")[0] for c in one for s in c.steps] == \
        [s.description.split(" to ")[0] for c in other for s in c.steps]
    assert one != other
