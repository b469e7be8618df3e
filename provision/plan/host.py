"""The EC2 host plan: pure functions (desired HostDesired, observed facts) -> list[Change].

Nothing here touches the network. Steps carry `Ec2Call`/`Wait` ops (provision.ops) that the EC2 executor
(`provision.providers.aws_context.AwsContext.execute`) carries out; an id created earlier in the same run (the
security group of step 2, used by step 4; the instance a launch returns) is named in the op's `refs`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from provision.changes import Change, Step
from provision.errors import StepFailed
from provision.facts.aws import (
    TAG_ENVIRONMENT,
    TAG_INDEX,
    TAG_PROJECT,
    AmiFact,
    HostFacts,
    InstanceFact,
    LocalKey,
    Rule,
    instance_index,
    key_matches,
    owned,
    resource_name,
)
from provision.ops import Ec2Call, Wait, params

ANYWHERE = ("0.0.0.0/0", "::/0")
TOKEN_ATTEMPTS = 3
INSTANCE_WAIT = 600.0  # the EC2 executor bounds its waiters by its own max_wait too
SECURITY_GROUP_ID, INSTANCE_ID = "security_group_id", "instance_id"  # outputs a later op may reference
LAUNCHED_IDS = "launched_ids"  # every instance this run launched, in order (one wait for several launches)
# Docker Swarm between the members: cluster management, node gossip (tcp+udp), the VXLAN overlay data path
SWARM_PORTS = (("tcp", 2377), ("tcp", 7946), ("udp", 7946), ("udp", 4789))


def instance_wait(probe: str, *ids: str) -> Wait:
    return Wait(probe, params(ids=ids), timeout=INSTANCE_WAIT)


@dataclass(frozen=True)
class HostDesired:
    project: str
    environment: str
    instance_type: str
    image: str  # alias or ami-…
    volume_gb: int
    ssh_from: tuple[str, ...]
    open_ports: tuple[int, ...]
    key: LocalKey
    ssh_port: int = 22  # the security group's SSH rule follows it
    imds_hop_limit: int = 1  # 1: only the host itself reaches IMDS, not its containers
    subnet_id: str | None = None
    instance_profile: str | None = None
    extra_tags: dict[str, str] = field(default_factory=dict)
    count: int = 1  # instances 1..count; 1 keeps the single host's name and tags (no index tag)
    swarm: bool = False  # engine.mode swarm: the group lets its members reach each other on the swarm ports

    @property
    def name(self) -> str:  # key pair and security group
        return resource_name(self.project, self.environment)

    @property
    def host_name(self) -> str:  # the instance's Name tag (count 1)
        return f"{self.project}-{self.environment}"

    def host_name_for(self, index: int) -> str:
        return self.host_name if self.count == 1 else f"{self.host_name}-{index}"

    @property
    def tags(self) -> dict[str, str]:  # the key pair's and security group's; an instance's: tags_for
        return {**self.extra_tags, "Name": self.host_name, TAG_PROJECT: self.project,
                TAG_ENVIRONMENT: self.environment}

    def tags_for(self, index: int) -> dict[str, str]:
        if self.count == 1:
            return self.tags
        return {**self.tags, "Name": self.host_name_for(index), TAG_INDEX: str(index)}

    @property
    def rules(self) -> frozenset[Rule]:
        rules = {Rule.tcp(self.ssh_port, cidr) for cidr in self.ssh_from}
        rules |= {Rule.tcp(port, cidr) for port in self.open_ports for cidr in ANYWHERE}
        if self.swarm:  # from the group itself, never from a CIDR
            rules |= {Rule.from_own_group(proto, port) for proto, port in SWARM_PORTS}
        return frozenset(rules)


def desired_from_playbook(pb: Any, key: LocalKey) -> HostDesired:
    """The playbook already refused the SSH port in open_ports and ssh_from anywhere (provision.spec)."""
    h = pb.host
    return HostDesired(project=pb.project, environment=pb.environment, instance_type=h.instance_type,
                       image=h.image, volume_gb=h.volume_gb, ssh_from=tuple(str(n) for n in h.ssh_from or ()),
                       open_ports=tuple(h.open_ports), key=key, ssh_port=pb.ssh.port,
                       imds_hop_limit=h.imds_hop_limit, subnet_id=h.subnet_id,
                       instance_profile=h.instance_profile, extra_tags=dict(h.tags), count=h.count,
                       swarm=pb.engine.mode == "swarm")


def tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in sorted(tags.items())]


def client_tokens(project: str, environment: str, group_id: str, gone: tuple[str, ...],
                  attempts: int = TOKEN_ATTEMPTS, index: int = 1) -> list[str]:
    """ClientTokens for RunInstances, first choice first.

    A token makes a *retried* RunInstances return the instance it already launched (botocore retries, or a
    re-run after a crash while AWS had not yet indexed the tags). It must not pin a *fresh* create after a
    teardown: EC2 remembers a token for hours after the instance terminated and would answer with the dead
    instance. So the token covers the security group id (teardown deletes it; the next provision makes a
    new one) and the terminated instances still visible; and if EC2 still answers with a terminated instance
    or IdempotentParameterMismatch, the runner moves on to the next generation. Each index of host.count has
    its own tokens (index 1 keeps the single host's).
    """
    seed = "\0".join((project, environment, group_id, ",".join(sorted(gone))))
    if index != 1:
        seed += f"\0index {index}"
    digests = (hashlib.sha256(f"{seed}\0{n}".encode()).hexdigest() for n in range(attempts))
    return [f"dockyard-{h[:40]}" for h in digests]


def run_instance_params(d: HostDesired, image: AmiFact, group_id: str, index: int = 1) -> dict[str, Any]:
    """RunInstances arguments, except ClientToken (added per attempt by the runner)."""
    params: dict[str, Any] = {
        "ImageId": image.id,
        "InstanceType": d.instance_type,
        "MinCount": 1,
        "MaxCount": 1,
        "KeyName": d.name,
        "SecurityGroupIds": [group_id],
        "MetadataOptions": {"HttpTokens": "required", "HttpPutResponseHopLimit": d.imds_hop_limit,
                            "HttpEndpoint": "enabled"},
        "BlockDeviceMappings": [{"DeviceName": image.root_device_name,
                                 "Ebs": {"VolumeSize": d.volume_gb, "VolumeType": "gp3", "Encrypted": True,
                                         "DeleteOnTermination": True}}],
        "TagSpecifications": [{"ResourceType": "instance", "Tags": tag_list(d.tags_for(index))},
                              {"ResourceType": "volume", "Tags": tag_list(d.tags_for(index))}],
    }
    if d.subnet_id:
        params["SubnetId"] = d.subnet_id
    if d.instance_profile:
        key = "Arn" if d.instance_profile.startswith("arn:") else "Name"
        params["IamInstanceProfile"] = {key: d.instance_profile}
    return params


def _rules_text(rules: frozenset[Rule]) -> str:
    return "".join(f"{r}\n" for r in sorted(rules))


# ------------------------------------------------------------------------------------------ provision


def _key_pair(d: HostDesired, facts: HostFacts) -> list[Change]:
    kp = facts.key_pair
    if kp is not None:
        if key_matches(kp, d.key):
            return []
        raise StepFailed(
            f"key pair {d.name} in {facts.region} has fingerprint {kp.fingerprint}, which is not "
            f"{d.key.path}; dockyard never overwrites a key pair: point ssh.key_file at the matching key, "
            f"or delete it (aws ec2 delete-key-pair --region {facts.region} --key-name {d.name}) to import "
            "this one")
    material, tags = d.key.material, d.tags
    return [Change("aws:key-pair", "create", "absent", (
        Step(f"import key pair {d.name} from {d.key.path}",
             Ec2Call("key_pair.import", params(name=d.name, material=material, tags=tags))),),
        after=f"{d.key.key_type} {sorted(d.key.fingerprints)[0]}\n", data={"name": d.name})]


def _security_group(d: HostDesired, facts: HostFacts) -> list[Change]:
    sg = facts.security_group
    changes: list[Change] = []
    if sg is not None and not owned(sg.tags, d.project, d.environment):
        raise StepFailed(f"security group {d.name} ({sg.id}) in {facts.vpc_id} exists but does not carry "
                         f"the tags {TAG_PROJECT}={d.project}, {TAG_ENVIRONMENT}={d.environment}; dockyard "
                         "does not touch what it did not create: rename or delete it")
    group_id = sg.id if sg else None
    if sg is None:
        desc = f"dockyard host {d.project}/{d.environment}"
        name, vpc, tags = d.name, facts.vpc_id, d.tags
        changes.append(Change("aws:security-group", "create", "absent", (
            Step(f"create security group {name} in {vpc}",
                 Ec2Call("security_group.create", params(name=name, description=desc, vpc_id=vpc, tags=tags))),),
            data={"name": name, "vpc_id": vpc}))
    have = sg.rules if sg else frozenset()
    missing, stale = d.rules - have, have - d.rules
    steps: list[Step] = []
    group = params(group_id=group_id) if group_id else ()
    refs = () if group_id else (("group_id", SECURITY_GROUP_ID),)
    if missing:
        # a rule from the group itself names its id; a group made in this run has none yet: the executor adds it
        perms = [r.permission(group_id) for r in sorted(missing) if group_id or r.kind != "self"]
        own = [r.permission() for r in sorted(missing) if not group_id and r.kind == "self"]
        steps.append(Step("allow " + ", ".join(map(str, sorted(missing))),
                          Ec2Call("security_group.authorize",
                                  group + params(perms=perms) + (params(self_perms=own) if own else ()), refs)))
    if stale:
        old = [r.permission(group_id) for r in sorted(stale)]
        steps.append(Step("remove " + ", ".join(map(str, sorted(stale))),
                          Ec2Call("security_group.revoke", group + params(perms=old), refs)))
    if steps:
        counts = (f"{len(missing)} missing" if missing else "", f"{len(stale)} stale" if stale else "")
        reason = "new group" if sg is None else ", ".join(p for p in counts if p)
        changes.append(Change("aws:security-group:rules", "update", reason, tuple(steps),
                              before=_rules_text(have), after=_rules_text(d.rules),
                              data={"added": [str(r) for r in sorted(missing)],
                                    "removed": [str(r) for r in sorted(stale)]}))
    return changes


def _create_instances(d: HostDesired, facts: HostFacts, indexes: list[int]) -> list[Change]:
    """One launch per missing index; the last launch's change also waits until every one launched runs."""
    image = facts.image
    if image is None:
        raise StepFailed(f"image {d.image} could not be resolved")
    known_group = facts.security_group.id if facts.security_group else None
    gone = tuple(i.id for i in facts.gone)
    source = image.id if image.id == d.image else f"{image.id} ({d.image})"
    what = f"{d.instance_type} from {source}, {d.volume_gb} GB gp3 encrypted root"
    changes = []
    for n, index in enumerate(indexes, 1):
        # the group id completes SecurityGroupIds and seeds the client tokens (see client_tokens)
        launch = params(params=run_instance_params(d, image, known_group or "", index), project=d.project,
                        environment=d.environment, gone=gone) + (params(index=index) if index != 1 else ()) + \
            (params(group_id=known_group) if known_group else ())
        steps = [Step(f"launch {d.host_name_for(index)}: {what}",
                      Ec2Call("instance.run", launch, () if known_group else (("group_id", SECURITY_GROUP_ID),)))]
        if n == len(indexes):
            ids = (("ids", INSTANCE_ID),) if len(indexes) == 1 else (("ids", LAUNCHED_IDS),)
            wait = "wait until the instance is running" if len(indexes) == 1 else \
                f"wait until the {len(indexes)} instances are running"
            steps.append(Step(wait, Wait("instance.running", timeout=INSTANCE_WAIT, refs=ids)))
        data: dict[str, Any] = {"instance_type": d.instance_type, "image_id": image.id}
        changes.append(Change("aws:instance", "create", "absent", tuple(steps), after=f"{what}\n",
                              data=data if d.count == 1 else {**data, "index": index,
                                                              "name": d.host_name_for(index)}))
    return changes


def _surplus_instances(d: HostDesired, surplus: list[tuple[int, InstanceFact]]) -> list[Change]:
    """Terminate the instances above host.count, highest index first; the last change waits for them all."""
    changes = []
    ordered = sorted(surplus, key=lambda pair: pair[0], reverse=True)
    for n, (index, inst) in enumerate(ordered, 1):
        name = inst.tags.get("Name") or f"index {index}"
        steps = [Step(f"terminate {inst.id} ({name})", Ec2Call("instance.terminate", params(ids=[inst.id])))]
        if n == len(ordered):
            steps.append(Step("wait until terminated",
                              instance_wait("instance.terminated", *(i.id for _, i in ordered))))
        changes.append(Change("aws:instance", "delete", f"index {index} is above host.count {d.count}",
                              tuple(steps), before=f"{inst.id} {inst.state}\n",
                              data={"instances": [inst.id], "index": index}))
    return changes


def _retag(d: HostDesired, index: int, inst: InstanceFact) -> list[Change]:
    """With count > 1 every instance carries its index and name (a single host that grew becomes index 1)."""
    want = {"Name": d.host_name_for(index), TAG_INDEX: str(index)}
    if d.count == 1 or all(inst.tags.get(k) == v for k, v in want.items()):
        return []
    have = f"Name={inst.tags.get('Name', '')} {TAG_INDEX}={inst.tags.get(TAG_INDEX, '')}"
    return [Change("aws:instance:tags", "update", f"{inst.id} is index {index}", (
        Step(f"tag {inst.id} as {want['Name']} (index {index})",
             Ec2Call("instance.tags", params(instance_id=inst.id, tags=want))),),
        before=f"{have}\n", after=f"Name={want['Name']} {TAG_INDEX}={index}\n")]


def _existing_instance(d: HostDesired, facts: HostFacts, inst: InstanceFact) -> list[Change]:
    changes: list[Change] = []
    iid, state = inst.id, inst.state
    sg = facts.security_group
    if sg is not None and sg.id not in inst.security_group_ids and inst.vpc_id == facts.vpc_id:
        groups = [*inst.security_group_ids, sg.id]
        changes.append(Change("aws:instance:security-groups", "update", f"{sg.id} not attached", (
            Step(f"attach security group {sg.id} to {iid}",
                 Ec2Call("instance.groups", params(instance_id=iid, groups=groups))),)))
    if inst.imds_hop_limit is not None and inst.imds_hop_limit != d.imds_hop_limit:
        limit = d.imds_hop_limit
        changes.append(Change("aws:instance:metadata", "update",
                              f"IMDS hop limit {inst.imds_hop_limit}, playbook says {limit}", (
            Step(f"set the IMDS hop limit of {iid} to {limit} (tokens required)",
                 Ec2Call("instance.metadata_options", params(instance_id=iid, hop_limit=limit))),),
            before=f"hop limit {inst.imds_hop_limit}\n", after=f"hop limit {limit}\n"))
    if inst.instance_type != d.instance_type:
        steps: list[Step] = []
        if state in ("pending", "running"):
            steps.append(Step(f"stop {iid}", Ec2Call("instance.stop", params(instance_id=iid))))
        if state in ("pending", "running", "stopping"):
            steps.append(Step(f"wait until {iid} is stopped", instance_wait("instance.stopped", iid)))
        new_type = d.instance_type
        steps.append(Step(f"change the instance type of {iid} to {new_type}",
                          Ec2Call("instance.modify_type", params(instance_id=iid, instance_type=new_type))))
        if state in ("pending", "running"):
            steps.append(Step(f"start {iid}", Ec2Call("instance.start", params(instance_id=iid))))
            steps.append(Step(f"wait until {iid} is running", instance_wait("instance.running", iid)))
        changes.append(Change("aws:instance:type", "resize",
                              f"instance type {inst.instance_type}, playbook says {new_type} (needs "
                              "--resize: stop, resize, start)", tuple(steps),
                              before=f"{inst.instance_type}\n", after=f"{new_type}\n",
                              data={"flag": "--resize"}))
    if state in ("stopped", "stopping"):
        steps = []
        if state == "stopping":
            steps.append(Step(f"wait until {iid} is stopped", instance_wait("instance.stopped", iid)))
        steps.append(Step(f"start {iid}", Ec2Call("instance.start", params(instance_id=iid))))
        steps.append(Step(f"wait until {iid} is running", instance_wait("instance.running", iid)))
        changes.append(Change("aws:instance", "start", f"instance is {state}", tuple(steps),
                              before=f"{state}\n", after="running\n"))
    return changes


def instances_by_index(d: HostDesired, facts: HostFacts) -> dict[int, InstanceFact]:
    """The live tagged instances by index; an unreadable index tag or two instances on one index is an error."""
    found: dict[int, list[InstanceFact]] = {}
    for inst in facts.instances:
        index = instance_index(inst)
        if index is None:
            raise StepFailed(f"{inst.id} carries the tag {TAG_INDEX}={inst.tags.get(TAG_INDEX)!r}, not an index "
                             f"from 1 to 99: fix or remove the tag, or terminate the instance")
        found.setdefault(index, []).append(inst)
    for index, same in sorted(found.items()):
        if len(same) > 1:
            ids = ", ".join(f"{i.id} ({i.state})" for i in same)
            where = "" if d.count == 1 and len(found) == 1 else f" and index {index}"
            raise StepFailed(f"{len(same)} instances carry the tags {TAG_PROJECT}={d.project}, "
                             f"{TAG_ENVIRONMENT}={d.environment}{where}: {ids}; expected at most one: terminate "
                             "the extra ones or run teardown")
    return {index: same[0] for index, same in found.items()}


def plan_host(d: HostDesired, facts: HostFacts) -> list[Change]:
    """Key pair, security group (+ rules), instances 1..count, surplus instances: in the order they must be
    applied."""
    by_index = instances_by_index(d, facts)
    changes = _key_pair(d, facts) + _security_group(d, facts)
    missing = []
    for index in range(1, d.count + 1):
        inst = by_index.get(index)
        if inst is None:
            missing.append(index)
        else:
            changes += _retag(d, index, inst) + _existing_instance(d, facts, inst)
    if missing:
        changes += _create_instances(d, facts, missing)
    changes += _surplus_instances(d, [(i, inst) for i, inst in by_index.items() if i > d.count])
    return changes


def drift_warnings(d: HostDesired, facts: HostFacts) -> list[str]:
    """Differences provision reports but never repairs in place (they need `recreate`)."""
    out = []
    for inst in facts.instances:
        if inst.vpc_id and inst.vpc_id != facts.vpc_id:
            out.append(f"{inst.id} is in {inst.vpc_id}, the playbook's network is {facts.vpc_id}: run recreate")
        elif d.subnet_id and inst.subnet_id and inst.subnet_id != d.subnet_id:
            out.append(f"{inst.id} is in subnet {inst.subnet_id}, the playbook says {d.subnet_id}: run recreate")
        if d.image.startswith("ami-") and inst.image_id and inst.image_id != d.image:
            out.append(f"{inst.id} runs {inst.image_id}, the playbook says {d.image}: run recreate")
        if inst.key_name and inst.key_name != d.name:
            out.append(f"{inst.id} was launched with key pair {inst.key_name}, not {d.name}")
    return out
