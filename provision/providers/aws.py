"""The `aws` provider: boto3 effects (thin) and the provision/teardown flow around facts → plan → runner.

    ensure_host(playbook, *, check, resize, reporter) -> HostInfo    # see provision.providers
    find_host(playbook) -> HostInfo | None
    destroy_host(playbook, *, check, reporter) -> list[Change]

boto3 conventions: the normal credential chain (profiles, SSO, env, instance role), the region from
`host.region` or the environment, `AWS_ENDPOINT_URL` (botocore >= 1.34 reads it itself), standard retry
mode, waiters with explicit delays, paginators for reads. Every AWS error becomes `StepFailed` with one line.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, WaiterError

from provision.changes import Change, Status
from provision.errors import InputError, StepFailed
from provision.facts.aws import (
    GONE_STATES,
    InstanceFact,
    find_instances,
    gather_host_facts,
    gather_teardown_facts,
    parse_instance,
    read_local_key,
)
from provision.hostkeys import HostKeyRejected, HostKeyTrust, forget_host_keys, known_hosts_name
from provision.plan.host import desired_from_playbook, drift_warnings, plan_host, plan_teardown, tag_list
from provision.providers import HostInfo
from provision.runner import Runner
from provision.ssh_wait import jump_dial, tcp_dial, wait_for_ssh

BOTO_CONFIG = Config(retries={"mode": "standard", "max_attempts": 6}, user_agent_extra="dockyard")
HINTS = {
    "AuthFailure": "check the AWS credentials (profile, environment, SSO session)",
    "InvalidClientTokenId": "check the AWS credentials (profile, environment, SSO session)",
    "ExpiredToken": "the AWS session expired: log in again (aws sso login)",
    "UnauthorizedOperation": "the AWS identity lacks an IAM permission for this call",
    "InstanceLimitExceeded": "an EC2 quota is reached: request an increase or free capacity",
    "VcpuLimitExceeded": "the vCPU quota is reached: request an increase or use a smaller instance type",
    "InvalidSubnetID.NotFound": "check host.subnet_id (and host.region)",
    "InvalidParameterValue": "check the playbook's host settings",
    "InvalidAMIID.NotFound": "check host.image: AMI ids differ per region",
    "InvalidAMIID.Malformed": "check host.image",
}
WAIT_DELAY = 5.0  # seconds between waiter polls
WAIT_MAX = 600.0  # seconds a waiter may take


def _one_line(text: str, limit: int = 400) -> str:
    text = " ".join(text.split())
    if "Encoded authorization failure message" in text:  # a kilobyte of base64 nobody can read
        text = text.split("Encoded authorization failure message")[0].rstrip(" .") + " (details encoded)"
    return text if len(text) <= limit else text[:limit] + "…"


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = err.get("Code", "Error")
        message = f"AWS {code}: {_one_line(err.get('Message', '') or str(exc))}"
        return message + (f" ({HINTS[code]})" if code in HINTS else "")
    if isinstance(exc, WaiterError):
        return _one_line(f"{exc.name} gave up: {exc.kwargs.get('reason', exc)}")
    name = type(exc).__name__
    if name == "NoCredentialsError":
        return ("no AWS credentials found: set AWS_PROFILE (or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY), "
                "or log in with `aws sso login`")
    return _one_line(f"{name}: {exc}")


@contextlib.contextmanager
def aws_errors(doing: str = "") -> Iterator[None]:
    """botocore errors → StepFailed (exit 1) with one readable line."""
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        prefix = f"{doing}: " if doing else ""
        raise StepFailed(prefix + describe_error(exc)) from None


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def make_session(pb: Any) -> boto3.Session:
    with aws_errors("AWS session"):
        session = boto3.Session(region_name=pb.host.region or None)
    if not session.region_name:
        raise InputError.single("no AWS region: set host.region in the playbook, or AWS_REGION / "
                                "AWS_DEFAULT_REGION / a profile region", file=pb.source,
                                key_path="host.region")
    return session


# ---------------------------------------------------------------------------------------------- effects


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
    instance_id: str | None = None

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

    def authorize_ingress(self, group_id: str | None, perms: list[dict[str, Any]]) -> None:
        gid = group_id or self.security_group_id
        assert gid, "no security group id"
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
            self.created.append(("instance", inst.id))
            self.progress(f"launched {inst.id} ({inst.instance_type})")
            return inst.id
        raise StepFailed(f"RunInstances: every client token is used up ({last}); retry later")

    def wait_running(self, instance_id: str | None) -> None:
        self._wait("instance_running", [instance_id or str(self.instance_id)], "is running")

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


# ------------------------------------------------------------------------------------------------ flows


def _reporter(reporter: Any) -> Any:
    if reporter is not None:
        return reporter
    from provision.report import Reporter

    return Reporter()


def _clients(session: boto3.Session) -> tuple[Any, Any]:
    with aws_errors("AWS clients"):
        return session.client("ec2", config=BOTO_CONFIG), session.client("ssm", config=BOTO_CONFIG)


def _host_label(pb: Any) -> str:
    return f"{pb.project}-{pb.environment}"


def host_info(pb: Any, inst: InstanceFact | None, region: str, changes: Sequence[Change] = ()) -> HostInfo:
    address = (inst.public_ip or inst.private_ip) if inst else None
    data = {"region": region, "instance_type": inst.instance_type if inst else pb.host.instance_type,
            "public_dns": inst.public_dns if inst else None,
            "changes": [c.to_json() for c in changes]}
    return HostInfo(provider="aws", host_id=inst.id if inst else "", state=inst.state if inst else "absent",
                    ssh_address=pb.ssh.host or address or "", ssh_port=pb.ssh.port, ssh_user=pb.ssh_user,
                    public_address=inst.public_ip if inst else None,
                    private_address=inst.private_ip if inst else None, data=data)


TASKS = (("aws key pair", ("aws:key-pair",)),
         ("aws security group", ("aws:security-group", "aws:security-group:rules")),
         ("aws instance", ("aws:instance", "aws:instance:type", "aws:instance:security-groups",
                           "aws:instance:metadata")))


def ensure_host(pb: Any, *, check: bool = False, resize: bool = False, reporter: Any = None,
                session: boto3.Session | None = None, wait_ssh: bool = True, ssh_timeout: float = 300.0,
                delay: float = WAIT_DELAY) -> HostInfo:
    """Make exactly one tagged, running instance exist for (project, environment), reachable over SSH."""
    reporter = _reporter(reporter)
    if pb.provider != "aws":
        raise InputError.single(f"provider is {pb.provider!r}, not aws", file=pb.source, key_path="provider")
    desired = desired_from_playbook(pb, read_local_key(pb.key_file))
    session = session or make_session(pb)
    ec2, ssm = _clients(session)
    region = session.region_name
    with aws_errors("reading the current state"):
        facts = gather_host_facts(ec2, ssm, region=region, project=pb.project, environment=pb.environment,
                                  subnet_id=desired.subnet_id, image=desired.image,
                                  instance_type=desired.instance_type)
    changes = plan_host(desired, facts)
    for warning in drift_warnings(desired, facts):
        reporter.warn(warning)
    held = [c for c in changes if c.action == "resize" and not resize and not check]
    for c in held:
        reporter.warn(f"{c.reason}; not applied: re-run with --resize")
    todo = [c for c in changes if all(c is not h for h in held)]
    ctx = AwsContext(ec2, region, delay=delay, progress=reporter.log)
    runner = Runner(_host_label(pb), ctx, check=check, reporter=reporter)
    for name, targets in TASKS:
        result = runner.run_task(name, [c for c in todo if c.target in targets])
        if result.status is Status.FAILED:
            cleaned = ctx.cleanup()
            note = f" (cleaned up what this run created: {', '.join(cleaned)})" if cleaned else ""
            raise StepFailed(f"{name}: {result.message}{note}")
    instance_id = ctx.instance_id or (facts.instances[0].id if facts.instances else None)
    inst = _describe(ec2, instance_id) if instance_id else None
    if inst is not None and inst.state == "pending" and not check:
        ctx.wait_running(inst.id)
        inst = _describe(ec2, inst.id)
    info = host_info(pb, inst, region, changes)
    if held:
        info.data["held"] = [{"target": c.target, "reason": c.reason} for c in held]
    if check or inst is None:
        return info
    if wait_ssh and inst.state == "running":
        wait_until_ssh(pb, info, reporter, timeout=ssh_timeout)
    if inst.state == "running" and info.ssh_address:
        from provision.providers.aws_console import record_console_host_keys

        record_console_host_keys(ec2, pb, info, reporter, delay=delay)
    return info


def _describe(ec2: Any, instance_id: str) -> InstanceFact:
    with aws_errors("describing the instance"):
        resp = ec2.describe_instances(InstanceIds=[instance_id])
    return parse_instance(resp["Reservations"][0]["Instances"][0])


def wait_until_ssh(pb: Any, info: HostInfo, reporter: Any, *, timeout: float = 300.0) -> str:
    if not info.ssh_address:
        raise StepFailed(f"{info.host_id} has no public or private address to dial; set ssh.host")
    what = f"{info.host_id} " + ("via ssh.host" if pb.ssh.host else
                                 "public IP" if info.ssh_address == info.public_address else "private IP")
    with reporter.progress(f"waiting for SSH on {info.ssh_address}:{info.ssh_port}") as bar:
        def progress(line: str) -> None:
            bar.update(line)
            reporter.log(line)

        if not pb.ssh.jump:
            return wait_for_ssh(info.ssh_address, info.ssh_port, timeout=timeout, what=what,
                                progress=progress, dial=tcp_dial)
        from provision.remote import Remote, SshTarget
        from provision.sshconn import parse_jump

        user, host, port = parse_jump(pb.ssh.jump)
        bastion = Remote(SshTarget(host=host, port=port, user=user or pb.ssh_user,
                                   key_file=pb.key_file, known_hosts=pb.known_hosts_file,
                                   connect_timeout=pb.ssh.connect_timeout,
                                   trust=HostKeyTrust.from_playbook(pb).for_jump()))
        try:
            bastion.open()
        except HostKeyRejected as exc:  # say whose key it is: the bastion's, not the instance's
            raise HostKeyRejected(str(exc).replace("ssh ", "ssh jump host ", 1)) from None
        with bastion:
            return wait_for_ssh(info.ssh_address, info.ssh_port, timeout=timeout, what=f"{what} via {host}",
                                progress=progress, dial=jump_dial(bastion.transport))


def find_host(pb: Any, *, session: boto3.Session | None = None) -> HostInfo | None:
    session = session or make_session(pb)
    ec2, _ = _clients(session)
    with aws_errors("looking up the host"):
        live = [i for i in find_instances(ec2, pb.project, pb.environment) if i.state not in GONE_STATES]
    if not live:
        return None
    return host_info(pb, live[0], session.region_name)


def destroy_host(pb: Any, *, check: bool = False, reporter: Any = None, session: boto3.Session | None = None,
                 delay: float = WAIT_DELAY) -> list[Change]:
    """Terminate the tagged instance(s), then delete the tagged security group and key pair. Idempotent."""
    reporter = _reporter(reporter)
    session = session or make_session(pb)
    ec2, _ = _clients(session)
    with aws_errors("reading the current state"):
        facts = gather_teardown_facts(ec2, project=pb.project, environment=pb.environment)
    changes = plan_teardown(facts, pb.project, pb.environment)
    ctx = AwsContext(ec2, session.region_name, delay=delay, progress=reporter.log)
    runner = Runner(_host_label(pb), ctx, check=check, reporter=reporter)
    for name, targets in TASKS[::-1]:
        result = runner.run_task(f"{name} (teardown)", [c for c in changes if c.target in targets])
        if result.status is Status.FAILED:
            raise StepFailed(f"{name}: {result.message}")
    if not check and facts.instances:
        port = pb.ssh.port
        hosts = {n for i in facts.instances for n in (i.public_ip, i.private_ip) if n} | {pb.ssh.host or ""}
        forget_host_keys(pb.known_hosts_file, [known_hosts_name(h, port) for h in hosts if h])
    return changes
