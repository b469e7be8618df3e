"""The aws provider against in-process moto (`mock_aws`): idempotency, rules, tags, IMDS, volume, resize,
key mismatch, teardown, cleanup after a failed create, and --check making no mutating call.

The SSH wait dials only 127.0.0.1 (a banner server, via ssh.host/ssh.port); a guard fails the test if anything
tries to connect elsewhere (moto's 54.x/10.x addresses are fake).
"""

from __future__ import annotations

import datetime
import io
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from moto import mock_aws
from rich.console import Console

from provision.changes import Status
from provision.errors import StepFailed
from provision.facts.aws import image_parameter
from provision.phases.host import environment_hosts
from provision.playbook import load_playbook
from provision.providers import aws as provider
from provision.report import Reporter

pytestmark = pytest.mark.integration

REGION = "eu-west-1"
MUTATING = ("Create", "Run", "Import", "Authorize", "Revoke", "Delete", "Terminate", "Start", "Stop",
            "Modify")
TAG_FILTERS = [{"Name": "tag:dockyard:project", "Values": ["shop"]},
               {"Name": "tag:dockyard:environment", "Values": ["staging"]}]


@pytest.fixture
def no_remote_dials(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Record every TCP dial and refuse anything outside 127.0.0.0/8."""
    dials: list[tuple[str, int]] = []
    real = socket.create_connection

    def guarded(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        dials.append(address)
        assert address[0].startswith("127."), f"test tried to dial {address}"
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", guarded)
    return dials


@pytest.fixture
def banner() -> Iterator[int]:
    """A tiny SSH identification server on 127.0.0.1 (what the wait checks for)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    srv.settimeout(0.5)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(b"SSH-2.0-dockyard-test\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield srv.getsockname()[1]
    stop.set()
    thread.join(timeout=5)
    srv.close()


@pytest.fixture
def aws(aws_env: None) -> Iterator[boto3.Session]:
    with mock_aws():
        yield boto3.Session(region_name=REGION)


def seed_image(session: boto3.Session, alias: str = "ubuntu-24.04", instance_type: str = "t3.small") -> str:
    """Register an AMI and publish it under the alias's SSM public parameter (moto lacks Ubuntu's)."""
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.ssm.models import Parameter, ssm_backends

    ami = session.client("ec2").register_image(Name=f"test-{alias}", RootDeviceName="/dev/sda1")["ImageId"]
    name = image_parameter(alias, instance_type)
    ssm_backends[DEFAULT_ACCOUNT_ID][REGION]._parameters[name].append(Parameter(
        account_id=DEFAULT_ACCOUNT_ID, name=name, value=ami, parameter_type="String", description=None,
        allowed_pattern=None, keyid=None, last_modified_date=datetime.datetime.now(), version=1,
        data_type="aws:ec2:image"))
    return ami


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "t", "-f", str(path)], check=True)
    return path


def write_playbook(tmp_path: Path, port: int, *, image: str = "ubuntu-24.04", instance_type: str = "t3.small",
                   open_ports: str = "[80, 443]", key: Path | None = None, extra: str = "") -> Any:
    key = key or (tmp_path / "id_ed25519" if (tmp_path / "id_ed25519").exists()
                  else keygen(tmp_path / "id_ed25519"))
    path = tmp_path / "staging.yml"
    path.write_text(f"""\
project: shop
provider: aws
host:
  region: {REGION}
  instance_type: {instance_type}
  image: {image}
  volume_gb: 30
  ssh_from: [203.0.113.7/32]
  open_ports: {open_ports}
  tags: {{team: web}}
{extra}ssh:
  key_file: {key}
  host: 127.0.0.1
  port: {port}
  known_hosts: {tmp_path / 'known_hosts'}
""")
    return load_playbook(path)


def reporter() -> Reporter:
    return Reporter(console=Console(file=io.StringIO(), width=200))


def statuses(rep: Reporter) -> dict[str, Status]:
    return {r.task: r.status for r in rep.results}


def live_instances(ec2: Any) -> list[dict[str, Any]]:
    live = {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}
    res = ec2.describe_instances(Filters=[*TAG_FILTERS, live])
    return [i for r in res["Reservations"] for i in r["Instances"]]


def dockyard_groups(ec2: Any) -> list[dict[str, Any]]:
    return ec2.describe_security_groups(Filters=[{"Name": "group-name",
                                                  "Values": ["dockyard-shop-staging"]}])["SecurityGroups"]


def dockyard_keys(ec2: Any) -> list[dict[str, Any]]:
    by_name = [{"Name": "key-name", "Values": ["dockyard-shop-staging"]}]
    return ec2.describe_key_pairs(Filters=by_name)["KeyPairs"]


def ingress(group: dict[str, Any]) -> set[tuple[int, str]]:
    out = set()
    for p in group["IpPermissions"]:
        out |= {(p["FromPort"], r["CidrIp"]) for r in p.get("IpRanges", ())}
        out |= {(p["FromPort"], r["CidrIpv6"]) for r in p.get("Ipv6Ranges", ())}
    return out


def want_rules(ssh_port: int) -> set[tuple[int, str]]:
    """The SSH rule follows ssh.port (here the banner server's port, as the playbooks dial it)."""
    return {(ssh_port, "203.0.113.7/32"), (80, "0.0.0.0/0"), (80, "::/0"), (443, "0.0.0.0/0"), (443, "::/0")}


def test_provision_twice_makes_exactly_one_host_with_the_promised_settings(
        aws, tmp_path, banner, no_remote_dials) -> None:
    ami = seed_image(aws)
    pb = write_playbook(tmp_path, banner)
    first = reporter()
    info = provider.ensure_host(pb, reporter=first, session=aws)
    assert set(statuses(first).values()) == {Status.CHANGED}
    assert info.state == "running" and info.host_id.startswith("i-")
    assert info.ssh_address == "127.0.0.1" and info.ssh_port == banner and info.public_address
    second = reporter()
    again = provider.ensure_host(pb, reporter=second, session=aws)
    assert statuses(second) == {"aws key pair": Status.OK, "aws security group": Status.OK,
                                "aws instance": Status.OK}
    assert again.host_id == info.host_id and again.data["changes"] == []
    found = provider.find_host(pb, session=aws)
    assert found is not None and (found.host_id, found.ssh_address, found.ssh_port) == \
        (info.host_id, "127.0.0.1", banner)

    ec2 = aws.client("ec2")
    [inst] = live_instances(ec2)
    [group] = dockyard_groups(ec2)
    [key] = dockyard_keys(ec2)
    assert inst["ImageId"] == ami and inst["KeyName"] == key["KeyName"] == "dockyard-shop-staging"
    tags = {t["Key"]: t["Value"] for t in inst["Tags"]}
    assert tags == {"dockyard:project": "shop", "dockyard:environment": "staging", "Name": "shop-staging",
                    "team": "web"}
    assert inst["MetadataOptions"]["HttpTokens"] == "required"
    assert inst["MetadataOptions"]["HttpPutResponseHopLimit"] == 1  # containers cannot reach the role
    assert [g["GroupId"] for g in inst["SecurityGroups"]] == [group["GroupId"]]
    [mapping] = inst["BlockDeviceMappings"]
    assert mapping["DeviceName"] == "/dev/sda1"
    [volume] = ec2.describe_volumes(VolumeIds=[mapping["Ebs"]["VolumeId"]])["Volumes"]
    assert (volume["Size"], volume["VolumeType"], volume["Encrypted"]) == (30, "gp3", True)
    assert {t["Key"]: t["Value"] for t in volume["Tags"]} == tags
    assert ingress(group) == want_rules(banner)
    assert {t["Key"]: t["Value"] for t in group["Tags"]}["dockyard:environment"] == "staging"
    assert {t["Key"]: t["Value"] for t in key["Tags"]}["dockyard:project"] == "shop"
    assert no_remote_dials and {d[0] for d in no_remote_dials} == {"127.0.0.1"}


def test_rules_converge_stale_removed_missing_added(aws, tmp_path, banner, no_remote_dials) -> None:
    seed_image(aws)
    pb = write_playbook(tmp_path, banner)
    provider.ensure_host(pb, reporter=reporter(), session=aws)
    ec2 = aws.client("ec2")
    gid = dockyard_groups(ec2)[0]["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
        {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}])
    ec2.revoke_security_group_ingress(GroupId=gid, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    rep = reporter()
    provider.ensure_host(pb, reporter=rep, session=aws)
    assert statuses(rep)["aws security group"] is Status.CHANGED
    assert ingress(dockyard_groups(ec2)[0]) == want_rules(banner)
    pb2 = write_playbook(tmp_path, banner, open_ports="[8080]")
    provider.ensure_host(pb2, reporter=reporter(), session=aws)
    assert ingress(dockyard_groups(ec2)[0]) == {(banner, "203.0.113.7/32"), (8080, "0.0.0.0/0"),
                                                 (8080, "::/0")}


def test_a_stopped_host_is_started(aws, tmp_path, banner, no_remote_dials) -> None:
    seed_image(aws)
    pb = write_playbook(tmp_path, banner)
    info = provider.ensure_host(pb, reporter=reporter(), session=aws)
    ec2 = aws.client("ec2")
    ec2.stop_instances(InstanceIds=[info.host_id])
    rep = reporter()
    again = provider.ensure_host(pb, reporter=rep, session=aws)
    assert statuses(rep)["aws instance"] is Status.CHANGED
    assert again.host_id == info.host_id and again.state == "running"
    assert [i["State"]["Name"] for i in live_instances(ec2)] == ["running"]


def test_instance_type_drift_is_reported_and_applied_only_with_resize(aws, tmp_path, banner,
                                                                      no_remote_dials) -> None:
    seed_image(aws)
    info = provider.ensure_host(write_playbook(tmp_path, banner), reporter=reporter(), session=aws)
    bigger = write_playbook(tmp_path, banner, instance_type="t3.medium")
    ec2 = aws.client("ec2")
    held = reporter()
    provider.ensure_host(bigger, reporter=held, session=aws)
    assert statuses(held)["aws instance"] is Status.OK
    assert "--resize" in held.console.file.getvalue()
    assert live_instances(ec2)[0]["InstanceType"] == "t3.small"
    checked = reporter()
    plan = provider.ensure_host(bigger, check=True, reporter=checked, session=aws)
    assert statuses(checked)["aws instance"] is Status.CHANGED
    assert [c["action"] for c in plan.data["changes"]] == ["resize"]
    assert live_instances(ec2)[0]["InstanceType"] == "t3.small"
    resized = reporter()
    after = provider.ensure_host(bigger, resize=True, reporter=resized, session=aws)
    assert statuses(resized)["aws instance"] is Status.CHANGED
    [inst] = live_instances(ec2)
    assert (inst["InstanceId"], inst["InstanceType"], inst["State"]["Name"]) == \
        (info.host_id, "t3.medium", "running")
    assert after.state == "running"


def test_key_pair_with_a_different_key_is_an_error_and_nothing_is_created(aws, tmp_path, banner) -> None:
    seed_image(aws)
    other = keygen(tmp_path / "other")
    ec2 = aws.client("ec2")
    ec2.import_key_pair(KeyName="dockyard-shop-staging",
                        PublicKeyMaterial=Path(str(other) + ".pub").read_bytes())
    pb = write_playbook(tmp_path, banner)
    with pytest.raises(StepFailed, match="never overwrites"):
        provider.ensure_host(pb, reporter=reporter(), session=aws)
    assert dockyard_groups(ec2) == [] and live_instances(ec2) == []
    assert dockyard_keys(ec2)[0]["KeyFingerprint"]  # still the other key, untouched


def test_a_matching_key_pair_imported_by_hand_is_reused(aws, tmp_path, banner, no_remote_dials) -> None:
    seed_image(aws)
    pb = write_playbook(tmp_path, banner)
    ec2 = aws.client("ec2")
    ec2.import_key_pair(KeyName="dockyard-shop-staging",
                        PublicKeyMaterial=Path(str(pb.key_file) + ".pub").read_bytes())
    rep = reporter()
    provider.ensure_host(pb, reporter=rep, session=aws)
    assert statuses(rep)["aws key pair"] is Status.OK


def test_teardown_removes_only_dockyard_resources_and_can_run_again(aws, tmp_path, banner,
                                                                    no_remote_dials) -> None:
    ami = seed_image(aws)
    ec2 = aws.client("ec2")
    foreign_sg = ec2.create_security_group(GroupName="someone-else", Description="not ours")["GroupId"]
    foreign = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, TagSpecifications=[
        {"ResourceType": "instance", "Tags": [{"Key": "dockyard:project", "Value": "shop"}]}])
    foreign_id = foreign["Instances"][0]["InstanceId"]
    pb = write_playbook(tmp_path, banner)
    info = provider.ensure_host(pb, reporter=reporter(), session=aws)
    (tmp_path / "known_hosts").write_text(f"[127.0.0.1]:{banner} ssh-ed25519 AAAA\nother ssh-ed25519 BBBB\n")

    rep = reporter()
    changes = provider.destroy_host(pb, reporter=rep, session=aws, delay=0.1)
    assert [c.target for c in changes] == ["aws:instance", "aws:security-group", "aws:key-pair"]
    assert live_instances(ec2) == [] and dockyard_groups(ec2) == [] and dockyard_keys(ec2) == []
    state = ec2.describe_instances(InstanceIds=[info.host_id])["Reservations"][0]["Instances"][0]["State"]
    assert state["Name"] == "terminated"
    assert ec2.describe_instances(InstanceIds=[foreign_id])["Reservations"][0]["Instances"][0]["State"][
        "Name"] == "running"
    assert ec2.describe_security_groups(GroupIds=[foreign_sg])["SecurityGroups"]
    assert (tmp_path / "known_hosts").read_text() == "other ssh-ed25519 BBBB\n"
    volumes = ec2.describe_volumes(Filters=TAG_FILTERS)["Volumes"]
    assert volumes == []  # the root volume went with the instance (DeleteOnTermination)
    assert provider.find_host(pb, session=aws) is None

    again = reporter()
    assert provider.destroy_host(pb, reporter=again, session=aws) == []
    assert set(statuses(again).values()) == {Status.OK}

    # a fresh provision after teardown launches a new instance (the ClientToken does not pin the old one)
    fresh = provider.ensure_host(pb, reporter=reporter(), session=aws)
    assert fresh.host_id != info.host_id and len(live_instances(ec2)) == 1


def test_failed_create_cleans_up_what_this_run_created(aws, tmp_path, banner, monkeypatch) -> None:
    seed_image(aws)
    pb = write_playbook(tmp_path, banner)
    real_client = aws.client

    def failing_client(name: str, **kwargs: Any) -> Any:
        client = real_client(name, **kwargs)
        if name == "ec2":
            def refuse(**_: Any) -> None:
                error = {"Code": "VcpuLimitExceeded", "Message": "You have requested more vCPU capacity"}
                raise ClientError({"Error": error}, "RunInstances")
            client.run_instances = refuse
        return client

    monkeypatch.setattr(aws, "client", failing_client)
    with pytest.raises(StepFailed) as err:
        provider.ensure_host(pb, reporter=reporter(), session=aws)
    message = str(err.value)
    assert "\n" not in message and "VcpuLimitExceeded" in message and "vCPU quota" in message
    assert "cleaned up" in message and "security-group sg-" in message
    assert "key-pair dockyard-shop-staging" in message
    ec2 = real_client("ec2")
    assert dockyard_groups(ec2) == [] and dockyard_keys(ec2) == [] and live_instances(ec2) == []


def test_check_makes_no_mutating_call(aws, tmp_path, banner, no_remote_dials) -> None:
    seed_image(aws)
    pb = write_playbook(tmp_path, banner)
    calls: list[str] = []
    aws.events.register("before-call", lambda model, **_: calls.append(model.name))
    rep = reporter()
    info = provider.ensure_host(pb, check=True, reporter=rep, session=aws)
    assert calls and not [c for c in calls if c.startswith(MUTATING)]
    assert info.state == "absent"
    assert [c["target"] for c in info.data["changes"]] == [
        "aws:key-pair", "aws:security-group", "aws:security-group:rules", "aws:instance"]
    assert "would launch shop-staging" in rep.console.file.getvalue()
    ec2 = aws.client("ec2")
    assert dockyard_keys(ec2) == [] and dockyard_groups(ec2) == []
    assert no_remote_dials == []

    provider.ensure_host(pb, reporter=reporter(), session=aws)
    calls.clear()
    changes = provider.destroy_host(pb, check=True, reporter=reporter(), session=aws)
    assert [c.target for c in changes] == ["aws:instance", "aws:security-group", "aws:key-pair"]
    assert calls and not [c for c in calls if c.startswith(MUTATING)]
    assert len(live_instances(ec2)) == 1


def test_aws_errors_are_one_readable_line(aws, tmp_path, banner) -> None:
    seed_image(aws)
    pb = write_playbook(tmp_path, banner, extra="  subnet_id: subnet-0123456789abcdef0\n")
    with pytest.raises(StepFailed, match=r"InvalidSubnetID\.NotFound.*host\.subnet_id") as err:
        provider.ensure_host(pb, reporter=reporter(), session=aws)
    assert "\n" not in str(err.value)
    with pytest.raises(StepFailed, match=r"InvalidAMIID\.NotFound.*check host\.image"):
        provider.ensure_host(write_playbook(tmp_path, banner, image="ami-0123456789abcdef0"),
                             reporter=reporter(), session=aws)


def test_unauthorized_operation_is_one_line_without_the_encoded_blob(aws, tmp_path, banner,
                                                                      monkeypatch) -> None:
    seed_image(aws)
    pb = write_playbook(tmp_path, banner)
    real_client = aws.client

    def stubbed_client(name: str, **kwargs: Any) -> Any:
        client = real_client(name, **kwargs)
        if name == "ec2":
            stubber = Stubber(client)
            stubber.add_client_error(
                "describe_vpcs", "UnauthorizedOperation",
                "You are not authorized to perform this operation. Encoded authorization failure message: "
                + "Q" * 900)
            stubber.activate()
        return client

    monkeypatch.setattr(aws, "client", stubbed_client)
    with pytest.raises(StepFailed) as err:
        provider.ensure_host(pb, reporter=reporter(), session=aws)
    message = str(err.value)
    assert "UnauthorizedOperation" in message and "IAM permission" in message
    assert "QQQQ" not in message and "\n" not in message and len(message) < 300


def test_explicit_ami_and_al2023_alias_resolve(aws, tmp_path, banner, no_remote_dials) -> None:
    ami = seed_image(aws, "al2023")
    info = provider.ensure_host(write_playbook(tmp_path, banner, image="al2023"), reporter=reporter(),
                                session=aws)
    ec2 = aws.client("ec2")
    assert ec2.describe_instances(InstanceIds=[info.host_id])["Reservations"][0]["Instances"][0][
        "ImageId"] == ami


class _FakeEc2:
    """RunInstances answering the first token with a terminated instance (a token reused after teardown)."""

    def __init__(self) -> None:
        self.tokens: list[str] = []

    def run_instances(self, **params: Any) -> dict[str, Any]:
        self.tokens.append(params["ClientToken"])
        state = "terminated" if len(self.tokens) == 1 else "pending"
        return {"Instances": [{"InstanceId": f"i-{len(self.tokens)}", "State": {"Name": state},
                               "InstanceType": "t3.small"}]}


def test_run_instance_moves_past_a_token_pinned_to_a_terminated_instance() -> None:
    fake = _FakeEc2()
    ctx = provider.AwsContext(fake, REGION)
    assert ctx.run_instance({"ImageId": "ami-1"}, ["tok-a", "tok-b", "tok-c"]) == "i-2"
    assert fake.tokens == ["tok-a", "tok-b"] and ctx.created == [("instance", "i-2")]


def test_instance_that_dies_while_starting_is_cleaned_up_with_the_rest(aws, tmp_path, banner,
                                                                        monkeypatch) -> None:
    seed_image(aws)
    pb = write_playbook(tmp_path, banner)
    ec2 = aws.client("ec2")
    # the group exists from an earlier run: the failed run must not delete it
    provider.ensure_host(pb, reporter=reporter(), session=aws)
    provider.destroy_host(pb, reporter=reporter(), session=aws)
    ours = [{"Key": "dockyard:project", "Value": "shop"}, {"Key": "dockyard:environment", "Value": "staging"}]
    spec = [{"ResourceType": "security-group", "Tags": ours}]
    gid = ec2.create_security_group(GroupName="dockyard-shop-staging", Description="earlier",
                                    TagSpecifications=spec)["GroupId"]

    def dies(self: Any, instance_id: str | None) -> None:
        raise StepFailed(f"{instance_id or self.instance_id} went to terminated: Server.InternalError")

    monkeypatch.setattr(provider.AwsContext, "wait_running", dies)
    with pytest.raises(StepFailed, match=r"went to terminated.*cleaned up.*instance i-.*key-pair") as err:
        provider.ensure_host(pb, reporter=reporter(), session=aws)
    assert "security-group" not in str(err.value)
    assert live_instances(ec2) == [] and dockyard_keys(ec2) == []
    assert [g["GroupId"] for g in dockyard_groups(ec2)] == [gid]


def test_rules_added_concurrently_never_surface_as_duplicates(aws) -> None:
    ec2 = aws.client("ec2")
    gid = ec2.create_security_group(GroupName="g", Description="d")["GroupId"]
    existing = {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
    new = {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
    ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=[existing])
    with pytest.raises(ClientError, match="Duplicate"):  # what AWS (and moto) say for the batch
        ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=[existing, new])
    ctx = provider.AwsContext(ec2, REGION)
    ctx.authorize_ingress(gid, [existing, new])
    [group] = ec2.describe_security_groups(GroupIds=[gid])["SecurityGroups"]
    assert ingress(group) == {(80, "0.0.0.0/0"), (443, "0.0.0.0/0")}
    ctx.revoke_ingress(gid, [new, {**new, "FromPort": 8443, "ToPort": 8443}])  # one already gone: fine
    [group] = ec2.describe_security_groups(GroupIds=[gid])["SecurityGroups"]
    assert ingress(group) == {(80, "0.0.0.0/0")}


class _BusyGroupEc2:
    def __init__(self, busy: int) -> None:
        self.busy = busy
        self.calls = 0

    def delete_security_group(self, GroupId: str) -> None:
        self.calls += 1
        if self.calls <= self.busy:
            raise ClientError({"Error": {"Code": "DependencyViolation", "Message": "in use"}},
                              "DeleteSecurityGroup")


def test_group_still_held_by_a_terminated_instance_is_retried_then_deleted() -> None:
    fake = _BusyGroupEc2(busy=2)
    provider.AwsContext(fake, REGION, delay=0.01, max_wait=5).delete_security_group("sg-1")
    assert fake.calls == 3
    stuck = _BusyGroupEc2(busy=10**6)
    with pytest.raises(StepFailed, match="DependencyViolation"):
        provider.AwsContext(stuck, REGION, delay=0.01, max_wait=0.1).delete_security_group("sg-1")
    assert stuck.calls <= 12


SWARM_ENGINE = "  count: 3\nengine:\n  mode: swarm\n"


def own_group_rules(group: dict[str, Any]) -> set[tuple[str, int]]:
    """The rules whose source is the group itself (the swarm members reaching each other)."""
    return {(p["IpProtocol"], p["FromPort"]) for p in group["IpPermissions"]
            for pair in p.get("UserIdGroupPairs", ()) if pair["GroupId"] == group["GroupId"]}


def test_count_3_swarm_makes_three_hosts_one_self_referencing_group_and_teardown_leaves_nothing(
        aws, tmp_path, banner, no_remote_dials) -> None:
    seed_image(aws)
    pb = write_playbook(tmp_path, banner, extra=SWARM_ENGINE)
    info = provider.ensure_host(pb, reporter=reporter(), session=aws)
    ec2 = aws.client("ec2")
    made = live_instances(ec2)
    assert len(made) == 3
    tags = [{t["Key"]: t["Value"] for t in i["Tags"]} for i in made]
    assert sorted((t["Name"], t["dockyard:index"]) for t in tags) == [
        ("shop-staging-1", "1"), ("shop-staging-2", "2"), ("shop-staging-3", "3")]
    [group] = dockyard_groups(ec2)
    assert all([g["GroupId"] for g in i["SecurityGroups"]] == [group["GroupId"]] for i in made)
    assert own_group_rules(group) == {("tcp", 2377), ("tcp", 7946), ("udp", 7946), ("udp", 4789)}
    assert ingress(group) == want_rules(banner)  # every CIDR rule is today's: no swarm port from a CIDR
    assert [h["index"] for h in info.data["hosts"]] == [1, 2, 3] and info.data["index"] == 1
    assert {h["id"] for h in info.data["hosts"]} == {i["InstanceId"] for i in made}
    assert [h.host_id for h in provider.find_hosts(pb, session=aws)] == [h["id"] for h in info.data["hosts"]]
    # setup/deploy/up reach every instance, labelled by its index (the first leads the swarm)
    assert [(label, h.host_id) for label, h in environment_hosts(pb)] == [
        (f"shop-staging-{h['index']}", h["id"]) for h in info.data["hosts"]]

    second = reporter()
    again = provider.ensure_host(pb, reporter=second, session=aws)
    assert set(statuses(second).values()) == {Status.OK} and again.data["changes"] == []
    assert len(live_instances(ec2)) == 3 and dockyard_groups(ec2) == [group]

    changes = provider.destroy_host(pb, reporter=reporter(), session=aws, delay=0.1)
    assert [c.target for c in changes] == ["aws:instance", "aws:security-group", "aws:key-pair"]
    assert live_instances(ec2) == [] and dockyard_groups(ec2) == [] and dockyard_keys(ec2) == []
    assert ec2.describe_volumes(Filters=TAG_FILTERS)["Volumes"] == []
    assert provider.find_hosts(pb, session=aws) == []
    assert {d[0] for d in no_remote_dials} == {"127.0.0.1"}


def test_count_changes_add_and_terminate_by_index_and_swarm_off_removes_the_rules(
        aws, tmp_path, banner, no_remote_dials) -> None:
    seed_image(aws)
    single = provider.ensure_host(write_playbook(tmp_path, banner), reporter=reporter(), session=aws)
    ec2 = aws.client("ec2")
    grown = provider.ensure_host(write_playbook(tmp_path, banner, extra=SWARM_ENGINE), reporter=reporter(),
                                 session=aws)
    assert grown.host_id == single.host_id  # the single host became index 1: not replaced
    by_index = {h["index"]: h["id"] for h in grown.data["hosts"]}
    assert sorted(by_index) == [1, 2, 3] and by_index[1] == single.host_id
    named = {i["InstanceId"]: {t["Key"]: t["Value"] for t in i["Tags"]}["Name"] for i in live_instances(ec2)}
    assert named[single.host_id] == "shop-staging-1"

    # standalone again (several instances need swarm mode): back to one instance
    two = write_playbook(tmp_path, banner, extra="  count: 1\n")
    with pytest.raises(StepFailed, match="would terminate"):
        provider.ensure_host(two, reporter=reporter(), session=aws)  # nobody was asked: nothing happens
    assert len(live_instances(ec2)) == 3
    asked: list[Any] = []
    provider.ensure_host(two, reporter=reporter(), session=aws, delay=0.1, confirm_destroy=asked.append)
    assert sorted(i for c in asked[0] for i in c.data["instances"]) == sorted([by_index[2], by_index[3]])
    assert {i["InstanceId"] for i in live_instances(ec2)} == {by_index[1]}
    [group] = dockyard_groups(ec2)
    assert own_group_rules(group) == set() and ingress(group) == want_rules(banner)
