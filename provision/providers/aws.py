"""The `aws` provider: boto3 effects (thin) and the provision/teardown flow around facts → plan → runner.

    ensure_host(playbook, *, check, resize, reporter) -> HostInfo    # see provision.providers
    find_host(playbook) -> HostInfo | None
    destroy_host(playbook, *, check, reporter) -> list[Change]

boto3 conventions: the normal credential chain (profiles, SSO, env, instance role), the region from
`host.region` or the environment, `AWS_ENDPOINT_URL` (botocore >= 1.34 reads it itself), standard retry
mode, waiters with explicit delays, paginators for reads. Every AWS error becomes `StepFailed` with one line.

The effects the plan's steps call live in `aws_context` (key pair, security group, instance), sessions and error
wording in `aws_session`, the console's host keys in `aws_console`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import boto3

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
from provision.plan.host import desired_from_playbook, drift_warnings, plan_host, plan_teardown
from provision.providers.aws_console import record_console_host_keys
from provision.providers.aws_context import AwsContext
from provision.providers.aws_session import BOTO_CONFIG, WAIT_DELAY, aws_errors, make_session
from provision.providers.hostinfo import HostInfo
from provision.remote import Remote, SshTarget
from provision.report import Reporter
from provision.runner import Runner
from provision.ssh_wait import jump_dial, tcp_dial, wait_for_ssh
from provision.sshconn import parse_jump

# ------------------------------------------------------------------------------------------------ flows


def _reporter(reporter: Any) -> Any:
    if reporter is not None:
        return reporter
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
                session: boto3.Session | None = None, make_runner: Callable[..., Runner] = Runner,
                wait_ssh: bool = True, ssh_timeout: float = 300.0,
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
    runner = make_runner(_host_label(pb), ctx, check=check, reporter=reporter)
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
                 make_runner: Callable[..., Runner] = Runner, delay: float = WAIT_DELAY) -> list[Change]:
    """Terminate the tagged instance(s), then delete the tagged security group and key pair. Idempotent."""
    reporter = _reporter(reporter)
    session = session or make_session(pb)
    ec2, _ = _clients(session)
    with aws_errors("reading the current state"):
        facts = gather_teardown_facts(ec2, project=pb.project, environment=pb.environment)
    changes = plan_teardown(facts, pb.project, pb.environment)
    ctx = AwsContext(ec2, session.region_name, delay=delay, progress=reporter.log)
    runner = make_runner(_host_label(pb), ctx, check=check, reporter=reporter)
    for name, targets in TASKS[::-1]:
        result = runner.run_task(f"{name} (teardown)", [c for c in changes if c.target in targets])
        if result.status is Status.FAILED:
            raise StepFailed(f"{name}: {result.message}")
    if not check and facts.instances:
        port = pb.ssh.port
        hosts = {n for i in facts.instances for n in (i.public_ip, i.private_ip) if n} | {pb.ssh.host or ""}
        forget_host_keys(pb.known_hosts_file, [known_hosts_name(h, port) for h in hosts if h])
    return changes
