"""The `aws` provider: boto3 effects (thin) and the provision/teardown flow around facts → plan → runner.

    ensure_host(playbook, *, check, resize, reporter) -> HostInfo    # see provision.providers
    find_host(playbook) -> HostInfo | None      # index 1; data["hosts"] lists every one of host.count
    find_hosts(playbook) -> list[HostInfo]      # every instance, by index
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
    instance_index,
    read_local_key,
)
from provision.hostkeys import HostKeyRejected, HostKeyTrust, forget_host_keys, known_hosts_name
from provision.plan.host import desired_from_playbook, drift_warnings, plan_host
from provision.plan.teardown import plan_teardown
from provision.providers.aws_console import record_console_host_keys
from provision.providers.aws_context import AwsContext
from provision.providers.aws_session import BOTO_CONFIG, WAIT_DELAY, aws_errors, make_session
from provision.providers.hostinfo import HostInfo, host_entry
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


def host_info(pb: Any, inst: InstanceFact | None, region: str, changes: Sequence[Change] = (),
              hosts: Sequence[HostInfo] = ()) -> HostInfo:
    """`hosts`: every instance of host.count (data["hosts"], for --json), when this is the first of them."""
    address = (inst.public_ip or inst.private_ip) if inst else None
    data: dict[str, Any] = {"region": region, "instance_type": inst.instance_type if inst else pb.host.instance_type,
                            "public_dns": inst.public_dns if inst else None}
    if inst is not None:
        data |= {"index": instance_index(inst), "name": inst.tags.get("Name", "")}
    data["changes"] = [c.to_json() for c in changes]
    if hosts:
        data["hosts"] = [host_entry(h) for h in hosts]
    return HostInfo(provider="aws", host_id=inst.id if inst else "", state=inst.state if inst else "absent",
                    ssh_address=pb.ssh.host or address or "", ssh_port=pb.ssh.port, ssh_user=pb.ssh_user,
                    public_address=inst.public_ip if inst else None,
                    private_address=inst.private_ip if inst else None, data=data)


def _by_index(instances: Sequence[InstanceFact]) -> list[InstanceFact]:
    return sorted(instances, key=lambda i: (instance_index(i) or 100, i.id))


def _hosts(pb: Any, instances: Sequence[InstanceFact], region: str, changes: Sequence[Change] = ()) -> HostInfo:
    """The first instance's HostInfo, listing every one in data["hosts"]; an `absent` one when there is none."""
    ordered = _by_index(instances)
    if not ordered:
        return host_info(pb, None, region, changes)
    each = [host_info(pb, inst, region) for inst in ordered]
    return host_info(pb, ordered[0], region, changes, hosts=each)


def _surplus_confirmed(pb: Any, changes: list[Change], confirm_destroy: Callable[[list[Change]], None] | None,
                       check: bool) -> None:
    """Lowering host.count terminates instances: the same confirmation a teardown asks for (--yes or a typed
    environment name); a caller without a way to ask refuses."""
    doomed = [c for c in changes if c.target == "aws:instance" and c.action == "delete"]
    if check or not doomed:
        return
    if confirm_destroy is None:
        ids = ", ".join(i for c in doomed for i in c.data.get("instances", ()))
        raise StepFailed(f"host.count {pb.host.count} would terminate {ids}: run `provision -e "
                         f"{pb.environment}` to confirm (or with --yes)")
    confirm_destroy(doomed)


TASKS = (("aws key pair", ("aws:key-pair",)),
         ("aws security group", ("aws:security-group", "aws:security-group:rules")),
         ("aws instance", ("aws:instance", "aws:instance:type", "aws:instance:security-groups",
                           "aws:instance:metadata", "aws:instance:tags")))


def ensure_host(pb: Any, *, check: bool = False, resize: bool = False, reporter: Any = None,
                session: boto3.Session | None = None, make_runner: Callable[..., Runner] = Runner,
                wait_ssh: bool = True, ssh_timeout: float = 300.0, delay: float = WAIT_DELAY,
                confirm_destroy: Callable[[list[Change]], None] | None = None) -> HostInfo:
    """Make exactly host.count tagged, running instances exist for (project, environment), reachable over SSH.
    The HostInfo is the first one's; data["hosts"] lists them all. `confirm_destroy` is asked (and may raise)
    before instances above host.count are terminated; without it, provision refuses to terminate them."""
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
    _surplus_confirmed(pb, todo, confirm_destroy, check)
    ctx = AwsContext(ec2, region, delay=delay, progress=reporter.log)
    runner = make_runner(_host_label(pb), ctx, check=check, reporter=reporter)
    for name, targets in TASKS:
        result = runner.run_task(name, [c for c in todo if c.target in targets])
        if result.status is Status.FAILED:
            cleaned = ctx.cleanup()
            note = f" (cleaned up what this run created: {', '.join(cleaned)})" if cleaned else ""
            raise StepFailed(f"{name}: {result.message}{note}")
    instances = list(facts.instances)
    if not check:
        with aws_errors("describing the instances"):
            instances = [i for i in find_instances(ec2, pb.project, pb.environment) if i.state not in GONE_STATES]
        pending = [i.id for i in instances if i.state == "pending"]
        if pending:
            ctx.wait_running(pending)
            with aws_errors("describing the instances"):
                instances = [i for i in find_instances(ec2, pb.project, pb.environment)
                             if i.state not in GONE_STATES]
    info = _hosts(pb, instances, region, changes)
    if held:
        info.data["held"] = [{"target": c.target, "reason": c.reason} for c in held]
    if check or not instances:
        return info
    for each in [host_info(pb, inst, region) for inst in _by_index(instances)]:
        if wait_ssh and each.state == "running":
            wait_until_ssh(pb, each, reporter, timeout=ssh_timeout)
        if each.state == "running" and each.ssh_address:
            record_console_host_keys(ec2, pb, each, reporter, delay=delay)
    return info


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
    return _hosts(pb, live, session.region_name)


def find_hosts(pb: Any, *, session: boto3.Session | None = None) -> list[HostInfo]:
    """Every live instance of (project, environment), by index (a read-only lookup)."""
    session = session or make_session(pb)
    ec2, _ = _clients(session)
    with aws_errors("looking up the hosts"):
        live = [i for i in find_instances(ec2, pb.project, pb.environment) if i.state not in GONE_STATES]
    return [host_info(pb, inst, session.region_name) for inst in _by_index(live)]


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
