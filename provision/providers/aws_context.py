"""The EC2 executor: `AwsContext.execute(op)` carries out the host plan's `Ec2Call` and `Wait("instance.*")` ops
(provision.plan.host), one thin boto3 call each, for the key pair, the security group and the instance; it
resolves an op's `refs` from what this run created (the group id, the instance id) and remembers what the run
created so a failure can undo it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from provision.errors import StepFailed
from provision.facts.aws import GONE_STATES, parse_instance
from provision.ops import EC2_OPS, Ec2Call, Op, Wait, thaw
from provision.plan.host import INSTANCE_ID, LAUNCHED_IDS, SECURITY_GROUP_ID, client_tokens, tag_list
from provision.providers.aws_session import WAIT_DELAY, WAIT_MAX, _code, aws_errors


@dataclass
class AwsContext:
    """What the plan's effect steps run against. Remembers what this run created (for cleanup on failure)."""

    ec2: Any
    region: str
    delay: float = WAIT_DELAY
    max_wait: float = WAIT_MAX
    progress: Callable[[str], None] = lambda _msg: None
    created: list[tuple[str, str]] = field(default_factory=list)  # (kind, id) in creation order
    security_group_id: str | None = None
    instance_id: str | None = None  # the last one this run launched
    launched: list[str] = field(default_factory=list)  # every one this run launched, in order

    # the executor
    def execute(self, op: Op) -> Any:
        if not isinstance(op, Ec2Call | Wait):
            raise TypeError(f"the EC2 executor does not run {type(op).__name__} ops")
        kwargs = {k: thaw(v) for k, v in op.params}
        for name, output in op.refs:
            value = {SECURITY_GROUP_ID: self.security_group_id, INSTANCE_ID: self.instance_id,
                     LAUNCHED_IDS: list(self.launched) or None}[output]
            if value is None:
                raise StepFailed(f"{name}: no {output.replace('_', ' ')} was created earlier in this run")
            kwargs[name] = [value] if name == "ids" and isinstance(value, str) else value
        if isinstance(op, Wait):
            ids = list(kwargs["ids"])
            if op.probe == "instance.terminated":
                return self.wait_terminated(ids)
            if op.probe == "instance.running":
                return self.wait_running(ids)
            [instance_id] = ids
            return self.wait_stopped(instance_id)
        return getattr(self, _EC2_HANDLERS[op.op])(**kwargs)

    def launch(self, params: dict[str, Any], project: str, environment: str, gone: list[str],
               group_id: str, index: int = 1) -> str:
        """`instance.run`: the group id (known, or made earlier in this run) completes the parameters and
        seeds the client tokens (with the index of host.count)."""
        return self.run_instance({**params, "SecurityGroupIds": [group_id]},
                                 client_tokens(project, environment, group_id, tuple(gone), index=index))

    def _wait(self, waiter: str, ids: list[str], what: str) -> None:
        self.progress(f"waiting until {', '.join(ids)} {what} (up to {self.max_wait:.0f}s)")
        attempts = max(1, int(self.max_wait / max(self.delay, 0.01)))
        with aws_errors(f"waiting until {', '.join(ids)} {what}"):
            self.ec2.get_waiter(waiter).wait(InstanceIds=ids,
                                             WaiterConfig={"Delay": self.delay, "MaxAttempts": attempts})

    # key pair
    def import_key_pair(self, name: str, material: str, tags: dict[str, str]) -> None:
        with aws_errors():
            self.ec2.import_key_pair(KeyName=name, PublicKeyMaterial=material.encode(),
                                     TagSpecifications=[{"ResourceType": "key-pair", "Tags": tag_list(tags)}])
        self.created.append(("key-pair", name))

    def delete_key_pair(self, name: str) -> None:
        with aws_errors():
            self.ec2.delete_key_pair(KeyName=name)

    # security group
    def create_security_group(self, name: str, description: str, vpc_id: str, tags: dict[str, str]) -> None:
        with aws_errors():
            resp = self.ec2.create_security_group(
                GroupName=name, Description=description, VpcId=vpc_id,
                TagSpecifications=[{"ResourceType": "security-group", "Tags": tag_list(tags)}])
        self.security_group_id = resp["GroupId"]
        self.created.append(("security-group", resp["GroupId"]))

    def _rules(self, call: Callable[..., Any], group_id: str, perms: list[dict[str, Any]],
               benign: str) -> None:
        """All at once; if AWS rejects the batch for a benign reason, one by one, ignoring that reason."""
        with aws_errors():
            try:
                call(GroupId=group_id, IpPermissions=perms)
                return
            except ClientError as exc:
                if _code(exc) != benign:
                    raise
            for perm in perms:
                try:
                    call(GroupId=group_id, IpPermissions=[perm])
                except ClientError as exc:
                    if _code(exc) != benign:
                        raise

    def authorize_ingress(self, group_id: str | None, perms: list[dict[str, Any]],
                          self_perms: list[dict[str, Any]] | None = None) -> None:
        """`self_perms`: rules from the group itself, planned before the group (and so its id) existed."""
        gid = group_id or self.security_group_id
        assert gid, "no security group id"
        perms = [*perms, *({**p, "UserIdGroupPairs": [{"GroupId": gid}]} for p in self_perms or ())]
        self._rules(self.ec2.authorize_security_group_ingress, gid, perms, "InvalidPermission.Duplicate")

    def revoke_ingress(self, group_id: str | None, perms: list[dict[str, Any]]) -> None:
        gid = group_id or self.security_group_id
        assert gid, "no security group id"
        self._rules(self.ec2.revoke_security_group_ingress, gid, perms, "InvalidPermission.NotFound")

    def delete_security_group(self, group_id: str) -> None:
        """Bounded retries: a just-terminated instance's network interface holds the group for a while."""
        deadline = time.monotonic() + self.max_wait
        with aws_errors():
            for _ in range(max(1, int(self.max_wait / max(self.delay, 0.01)))):
                try:
                    self.ec2.delete_security_group(GroupId=group_id)
                    return
                except ClientError as exc:
                    if _code(exc) == "InvalidGroup.NotFound":
                        return
                    if _code(exc) != "DependencyViolation" or time.monotonic() + self.delay > deadline:
                        raise
                self.progress(f"security group {group_id} still in use; retrying in {self.delay:.0f}s")
                time.sleep(self.delay)

    # instance
    def run_instance(self, params: dict[str, Any], tokens: list[str]) -> str:
        """RunInstances with the first ClientToken that is not pinned to a terminated instance."""
        last = ""
        for token in tokens:
            resp = None
            with aws_errors():
                try:
                    resp = self.ec2.run_instances(**params, ClientToken=token)
                except ClientError as exc:
                    if _code(exc) != "IdempotentParameterMismatch":
                        raise
            if resp is None:
                last = "IdempotentParameterMismatch"
                continue
            inst = parse_instance(resp["Instances"][0])
            if inst.state in GONE_STATES:
                last = f"token returned {inst.id} ({inst.state})"
                continue
            self.instance_id = inst.id
            self.launched.append(inst.id)
            self.created.append(("instance", inst.id))
            self.progress(f"launched {inst.id} ({inst.instance_type})")
            return inst.id
        raise StepFailed(f"RunInstances: every client token is used up ({last}); retry later")

    def wait_running(self, ids: str | list[str] | None) -> None:
        """One instance, several, or (None) the last one this run launched."""
        wanted = [ids] if isinstance(ids, str) else list(ids or [str(self.instance_id)])
        self._wait("instance_running", wanted, "is running")

    def wait_stopped(self, instance_id: str) -> None:
        self._wait("instance_stopped", [instance_id], "is stopped")

    def wait_terminated(self, ids: list[str]) -> None:
        self._wait("instance_terminated", ids, "is terminated")

    def start_instance(self, instance_id: str) -> None:
        with aws_errors():
            self.ec2.start_instances(InstanceIds=[instance_id])

    def stop_instance(self, instance_id: str) -> None:
        with aws_errors():
            self.ec2.stop_instances(InstanceIds=[instance_id])

    def modify_instance_type(self, instance_id: str, instance_type: str) -> None:
        with aws_errors():
            self.ec2.modify_instance_attribute(InstanceId=instance_id, InstanceType={"Value": instance_type})

    def set_metadata_options(self, instance_id: str, hop_limit: int) -> None:
        with aws_errors():
            self.ec2.modify_instance_metadata_options(InstanceId=instance_id, HttpTokens="required",
                                                      HttpPutResponseHopLimit=hop_limit, HttpEndpoint="enabled")

    def set_instance_groups(self, instance_id: str, groups: list[str]) -> None:
        with aws_errors():
            self.ec2.modify_instance_attribute(InstanceId=instance_id, Groups=groups)

    def tag_instance(self, instance_id: str, tags: dict[str, str]) -> None:
        with aws_errors():
            self.ec2.create_tags(Resources=[instance_id], Tags=tag_list(tags))

    def terminate_instances(self, ids: list[str]) -> None:
        with aws_errors():
            self.ec2.terminate_instances(InstanceIds=ids)

    def cleanup(self) -> list[str]:
        """Undo what this run created, newest first; says what was removed (errors reported, not raised)."""
        done: list[str] = []
        for kind, ident in reversed(self.created):
            try:
                if kind == "instance":
                    self.terminate_instances([ident])
                    self.wait_terminated([ident])
                elif kind == "security-group":
                    self.delete_security_group(ident)
                else:
                    self.delete_key_pair(ident)
                done.append(f"{kind} {ident}")
            except StepFailed as exc:
                done.append(f"{kind} {ident} NOT removed ({exc})")
        self.created.clear()
        return done


_EC2_HANDLERS = {  # op → AwsContext method (keyword arguments = the op's params)
    "key_pair.import": "import_key_pair", "key_pair.delete": "delete_key_pair",
    "security_group.create": "create_security_group", "security_group.delete": "delete_security_group",
    "security_group.authorize": "authorize_ingress", "security_group.revoke": "revoke_ingress",
    "instance.run": "launch", "instance.start": "start_instance", "instance.stop": "stop_instance",
    "instance.terminate": "terminate_instances", "instance.modify_type": "modify_instance_type",
    "instance.metadata_options": "set_metadata_options", "instance.groups": "set_instance_groups",
    "instance.tags": "tag_instance",
}
assert set(_EC2_HANDLERS) == EC2_OPS
