"""What exists in EC2 now, as typed facts: describe calls (reads only) + pure parsers.

Every parser takes the plain dict botocore returns, so the plan can be unit-tested with recorded responses.
The gather functions make only Describe*/Get* calls; callers wrap them to translate AWS errors.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from provision.errors import StepFailed

# re-exported: these lived here before provision.facts.aws_keys was split off
from provision.facts.aws_keys import LocalKey as LocalKey
from provision.facts.aws_keys import key_fingerprints as key_fingerprints
from provision.facts.aws_keys import read_local_key as read_local_key

TAG_PROJECT = "dockyard:project"
TAG_ENVIRONMENT = "dockyard:environment"
TAG_INDEX = "dockyard:index"  # 1..host.count; an instance without it is index 1 (a single host, as before count)
LIVE_STATES = ("pending", "running", "stopping", "stopped")
GONE_STATES = ("shutting-down", "terminated")

# SSM public parameters per image alias; {arch} is amd64/arm64 (Ubuntu, Debian) or x86_64/arm64 (AL2023).
SSM_IMAGE_PARAMETERS = {
    "ubuntu-24.04": "/aws/service/canonical/ubuntu/server/24.04/stable/current/{arch}/hvm/ebs-gp3/ami-id",
    "ubuntu-22.04": "/aws/service/canonical/ubuntu/server/22.04/stable/current/{arch}/hvm/ebs-gp2/ami-id",
    "debian-12": "/aws/service/debian/release/12/latest/{arch}",
    "al2023": "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-{arch}",
}
_GRAVITON = re.compile(r"^[a-z]+\d+g[a-z]*\.")  # t4g.small, m7gd.large, c6gn.xlarge (not g5.xlarge)


def resource_name(project: str, environment: str) -> str:
    """The name of the key pair and security group dockyard owns for (project, environment)."""
    return f"dockyard-{project}-{environment}"


def image_parameter(alias: str, instance_type: str) -> str:
    arm = bool(_GRAVITON.match(instance_type))
    arch = "arm64" if arm else ("x86_64" if alias == "al2023" else "amd64")
    return SSM_IMAGE_PARAMETERS[alias].format(arch=arch)


# ---------------------------------------------------------------------------------------------- facts


@dataclass(frozen=True, order=True)
class Rule:
    """One ingress permission, flattened: one protocol, one port range, one source."""

    protocol: str  # "tcp", "udp", "icmp", "-1"
    from_port: int | None
    to_port: int | None
    kind: str  # cidr | cidr6 | group | prefix | self (the group that holds the rule)
    source: str

    @classmethod
    def tcp(cls, port: int, cidr: str) -> Rule:
        net = ipaddress.ip_network(cidr, strict=False)
        return cls("tcp", port, port, "cidr6" if net.version == 6 else "cidr", str(net))

    @classmethod
    def from_own_group(cls, protocol: str, port: int) -> Rule:
        """A rule whose source is the security group that holds it (the members reach each other)."""
        return cls(protocol, port, port, "self", "this group")

    def __str__(self) -> str:
        if self.protocol == "-1":
            what = "all traffic"
        elif self.from_port == self.to_port:
            what = f"{self.protocol}/{self.from_port}"
        else:
            what = f"{self.protocol}/{self.from_port}-{self.to_port}"
        return f"{what} from {self.source}"

    def permission(self, own_group: str | None = None) -> dict[str, Any]:
        """The IpPermissions item that authorizes or revokes exactly this rule; a rule from the group itself
        names `own_group` (without it, the item lacks its source: the EC2 executor adds the group's id)."""
        perm: dict[str, Any] = {"IpProtocol": self.protocol}
        if self.from_port is not None:
            perm["FromPort"] = self.from_port
        if self.to_port is not None:
            perm["ToPort"] = self.to_port
        if self.kind == "cidr":
            perm["IpRanges"] = [{"CidrIp": self.source}]
        elif self.kind == "cidr6":
            perm["Ipv6Ranges"] = [{"CidrIpv6": self.source}]
        elif self.kind == "group":
            perm["UserIdGroupPairs"] = [{"GroupId": self.source}]
        elif self.kind == "self":
            if own_group:
                perm["UserIdGroupPairs"] = [{"GroupId": own_group}]
        else:
            perm["PrefixListIds"] = [{"PrefixListId": self.source}]
        return perm


@dataclass(frozen=True)
class InstanceFact:
    id: str
    state: str
    instance_type: str
    image_id: str | None = None
    key_name: str | None = None
    public_ip: str | None = None
    private_ip: str | None = None
    public_dns: str | None = None
    subnet_id: str | None = None
    vpc_id: str | None = None
    security_group_ids: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict, compare=False)
    client_token: str | None = None
    imds_hop_limit: int | None = None  # MetadataOptions.HttpPutResponseHopLimit (None: not reported)


@dataclass(frozen=True)
class SecurityGroupFact:
    id: str
    name: str
    vpc_id: str | None
    tags: dict[str, str] = field(default_factory=dict, compare=False)
    rules: frozenset[Rule] = frozenset()


@dataclass(frozen=True)
class KeyPairFact:
    name: str
    id: str | None
    fingerprint: str
    key_type: str | None = None
    public_key: str | None = None  # "ssh-ed25519 AAAA…" when the API returned it
    tags: dict[str, str] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class AmiFact:
    id: str
    root_device_name: str
    architecture: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class HostFacts:
    """Everything provision plans from."""

    region: str
    vpc_id: str
    instances: tuple[InstanceFact, ...] = ()  # tagged, not terminated
    gone: tuple[InstanceFact, ...] = ()  # tagged, shutting-down/terminated (still visible for a while)
    security_group: SecurityGroupFact | None = None  # by name in vpc_id
    key_pair: KeyPairFact | None = None
    image: AmiFact | None = None


@dataclass(frozen=True)
class TeardownFacts:
    instances: tuple[InstanceFact, ...] = ()  # tagged, not terminated (shutting-down included)
    security_groups: tuple[SecurityGroupFact, ...] = ()  # tagged + named, any VPC
    key_pair: KeyPairFact | None = None


def owned(tags: dict[str, str], project: str, environment: str) -> bool:
    return tags.get(TAG_PROJECT) == project and tags.get(TAG_ENVIRONMENT) == environment


# --------------------------------------------------------------------------------------------- parsers


def _tags(items: list[dict[str, str]] | None) -> dict[str, str]:
    return {t["Key"]: t.get("Value", "") for t in items or ()}


def parse_instance(d: dict[str, Any]) -> InstanceFact:
    return InstanceFact(
        id=d["InstanceId"],
        state=d.get("State", {}).get("Name", "unknown"),
        instance_type=d.get("InstanceType", ""),
        image_id=d.get("ImageId"),
        key_name=d.get("KeyName"),
        public_ip=d.get("PublicIpAddress") or None,
        private_ip=d.get("PrivateIpAddress") or None,
        public_dns=d.get("PublicDnsName") or None,
        subnet_id=d.get("SubnetId"),
        vpc_id=d.get("VpcId"),
        security_group_ids=tuple(g["GroupId"] for g in d.get("SecurityGroups", ())),
        tags=_tags(d.get("Tags")),
        client_token=d.get("ClientToken") or None,
        imds_hop_limit=d.get("MetadataOptions", {}).get("HttpPutResponseHopLimit"),
    )


def instance_index(inst: InstanceFact) -> int | None:
    """Which of the host.count instances this is: its index tag (1..99), 1 without one, None when unreadable."""
    tag = inst.tags.get(TAG_INDEX)
    if tag is None:
        return 1
    return int(tag) if tag.isascii() and tag.isdigit() and 1 <= int(tag) <= 99 else None


def parse_rules(permissions: list[dict[str, Any]], own_group: str | None = None) -> frozenset[Rule]:
    """`own_group`: the id of the group these rules belong to; a rule from it becomes Rule kind "self"."""
    rules: set[Rule] = set()
    for p in permissions:
        proto = str(p.get("IpProtocol", "-1"))
        lo, hi = p.get("FromPort"), p.get("ToPort")
        if proto in ("-1", "all"):
            proto, lo, hi = "-1", None, None
        for r in p.get("IpRanges", ()):
            rules.add(Rule(proto, lo, hi, "cidr", r["CidrIp"]))
        for r in p.get("Ipv6Ranges", ()):
            rules.add(Rule(proto, lo, hi, "cidr6", r["CidrIpv6"]))
        for r in p.get("UserIdGroupPairs", ()):
            source = r.get("GroupId") or r.get("GroupName", "")
            if own_group and source == own_group:
                rules.add(Rule(proto, lo, hi, "self", "this group"))
            else:
                rules.add(Rule(proto, lo, hi, "group", source))
        for r in p.get("PrefixListIds", ()):
            rules.add(Rule(proto, lo, hi, "prefix", r["PrefixListId"]))
    return frozenset(rules)


def parse_security_group(d: dict[str, Any]) -> SecurityGroupFact:
    return SecurityGroupFact(id=d["GroupId"], name=d.get("GroupName", ""), vpc_id=d.get("VpcId"),
                             tags=_tags(d.get("Tags")),
                             rules=parse_rules(d.get("IpPermissions", []), own_group=d["GroupId"]))


def parse_key_pair(d: dict[str, Any]) -> KeyPairFact:
    return KeyPairFact(name=d["KeyName"], id=d.get("KeyPairId"), fingerprint=d.get("KeyFingerprint", ""),
                       key_type=d.get("KeyType"), public_key=d.get("PublicKey"), tags=_tags(d.get("Tags")))


def parse_ami(d: dict[str, Any]) -> AmiFact:
    root = d.get("RootDeviceName")
    if not root:
        mappings = [m["DeviceName"] for m in d.get("BlockDeviceMappings", ()) if "Ebs" in m]
        root = mappings[0] if mappings else "/dev/xvda"
    return AmiFact(id=d["ImageId"], root_device_name=root, architecture=d.get("Architecture"),
                     name=d.get("Name"))


# ------------------------------------------------------------------------------------------ local key


def key_matches(remote: KeyPairFact, local: LocalKey) -> bool:
    if remote.public_key:
        fields = remote.public_key.split()
        if len(fields) >= 2 and fields[1] == local.blob:
            return True
    return remote.fingerprint in local.fingerprints


# ---------------------------------------------------------------------------------------------- reads


def _paginate(client: Any, operation: str, key: str, **kwargs: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for page in client.get_paginator(operation).paginate(**kwargs):
        out.extend(page.get(key, ()))
    return out


def _tag_filters(project: str, environment: str) -> list[dict[str, Any]]:
    return [{"Name": f"tag:{TAG_PROJECT}", "Values": [project]},
            {"Name": f"tag:{TAG_ENVIRONMENT}", "Values": [environment]}]


def find_instances(ec2: Any, project: str, environment: str) -> list[InstanceFact]:
    reservations = _paginate(ec2, "describe_instances", "Reservations",
                             Filters=_tag_filters(project, environment))
    found = [parse_instance(i) for r in reservations for i in r.get("Instances", ())]
    return [i for i in found if owned(i.tags, project, environment)]


def find_vpc(ec2: Any, subnet_id: str | None) -> str:
    if subnet_id:
        subnets = ec2.describe_subnets(SubnetIds=[subnet_id]).get("Subnets", [])
        if not subnets:
            raise StepFailed(f"subnet {subnet_id} not found")
        return str(subnets[0]["VpcId"])
    vpcs = _paginate(ec2, "describe_vpcs", "Vpcs", Filters=[{"Name": "is-default", "Values": ["true"]}])
    if not vpcs:
        raise StepFailed("this region has no default VPC: set host.subnet_id to a subnet of the VPC to use")
    return str(vpcs[0]["VpcId"])


def find_security_groups(ec2: Any, name: str, vpc_id: str | None = None) -> list[SecurityGroupFact]:
    filters = [{"Name": "group-name", "Values": [name]}]
    if vpc_id:
        filters.append({"Name": "vpc-id", "Values": [vpc_id]})
    return [parse_security_group(g) for g in _paginate(ec2, "describe_security_groups", "SecurityGroups",
                                                         Filters=filters)]


def find_key_pair(ec2: Any, name: str) -> KeyPairFact | None:
    pairs = ec2.describe_key_pairs(Filters=[{"Name": "key-name", "Values": [name]}],
                                   IncludePublicKey=True).get("KeyPairs", [])
    return parse_key_pair(pairs[0]) if pairs else None


def resolve_image(ec2: Any, ssm: Any, image: str, instance_type: str) -> AmiFact:
    if image.startswith("ami-"):
        ami = image
    else:
        name = image_parameter(image, instance_type)
        try:
            ami = ssm.get_parameter(Name=name)["Parameter"]["Value"]
        except ssm.exceptions.ParameterNotFound:
            raise StepFailed(f"image {image}: SSM parameter {name} not found in this region") from None
    images = ec2.describe_images(ImageIds=[ami]).get("Images", [])
    if not images:
        raise StepFailed(f"image {ami} ({image}) not found or not available in this region")
    return parse_ami(images[0])


def gather_host_facts(ec2: Any, ssm: Any, *, region: str, project: str, environment: str,
                      subnet_id: str | None, image: str, instance_type: str) -> HostFacts:
    name = resource_name(project, environment)
    vpc_id = find_vpc(ec2, subnet_id)
    all_instances = find_instances(ec2, project, environment)
    groups = find_security_groups(ec2, name, vpc_id)
    return HostFacts(
        region=region,
        vpc_id=vpc_id,
        instances=tuple(i for i in all_instances if i.state in LIVE_STATES),
        gone=tuple(i for i in all_instances if i.state in GONE_STATES),
        security_group=groups[0] if groups else None,
        key_pair=find_key_pair(ec2, name),
        image=resolve_image(ec2, ssm, image, instance_type),
    )


def console_output(ec2: Any, instance_id: str) -> str:
    """The instance's console text (cloud-init prints the SSH host keys there); "" when there is none yet.

    `Latest` (the live buffer) exists on Nitro instances only; others answer UnsupportedOperation and give
    the buffered copy without it."""
    try:
        resp = ec2.get_console_output(InstanceId=instance_id, Latest=True)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("UnsupportedOperation", "InvalidParameterCombination",
                                                              "InvalidParameterValue"):
            raise
        resp = ec2.get_console_output(InstanceId=instance_id)
    return str(resp.get("Output") or "")


def gather_teardown_facts(ec2: Any, *, project: str, environment: str) -> TeardownFacts:
    name = resource_name(project, environment)
    instances = [i for i in find_instances(ec2, project, environment) if i.state != "terminated"]
    groups = [g for g in find_security_groups(ec2, name) if owned(g.tags, project, environment)]
    key = find_key_pair(ec2, name)
    return TeardownFacts(instances=tuple(instances), security_groups=tuple(groups),
                         key_pair=key if key and owned(key.tags, project, environment) else None)
