"""The host phases: `provision_host` makes the playbook's host exist, `teardown_host` removes every trace of it.

They dispatch on `playbook.provider` (aws: EC2 via boto3; local: the sandbox container; existing: nothing to
create), hand the provider a Runner factory that keeps the Runners it makes (`RunnerLog`), and return the
provider's HostInfo / Changes together with those Runners' recap. Also here: the read-only host lookup and the
SSH connection (not yet open) that setup, deploy and the app commands share.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from provision.changes import Change, HostRecap, TaskResult
from provision.errors import StepFailed
from provision.phases.lock import LockRequest, teardown_lock
from provision.providers import existing_host, find_host, provider_module
from provision.providers.hostinfo import HostInfo


def host_label(pb: Any) -> str:
    """The name a playbook's host goes by in every recap."""
    return f"{pb.project}-{pb.environment}"


def joined_recap(label: str, recaps: Iterable[HostRecap], started: float) -> HostRecap:
    """One recap for several Runners' work on one host (in order), timed from `started` (a monotonic clock)."""
    results: list[TaskResult] = [r for recap in recaps for r in recap.results]
    return HostRecap(label, results, time.monotonic() - started)


class RunnerLog:
    """A Runner factory (same arguments as `Runner`) that keeps every Runner it made, in order."""

    def __init__(self) -> None:
        self.runners: list[Any] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # deferred: paramiko (through provision.channels) loads when a command runs, not for `dockyard --help`
        from provision.runner import Runner

        runner = Runner(*args, **kwargs)
        self.runners.append(runner)
        return runner

    def recap(self, label: str, started: float) -> HostRecap:
        return joined_recap(label, (runner.recap for runner in self.runners), started)


@dataclass
class ProvisionResult:
    host: HostInfo
    recap: HostRecap

    @property
    def failed(self) -> bool:
        return self.recap.failed


@dataclass
class TeardownResult:
    recap: HostRecap
    changes: list[Change] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.recap.failed


def provision_host(pb: Any, *, check: bool = False, resize: bool = False, reporter: Any = None,
                   confirm_destroy: Callable[[list[Change]], None] | None = None) -> ProvisionResult:
    """`confirm_destroy`: asked before an aws provision terminates instances above host.count (without it,
    such a provision refuses)."""
    started = time.monotonic()
    runners = RunnerLog()
    module = provider_module(pb)
    if module is None:
        info = existing_host(pb)
    else:
        extra = {"confirm_destroy": confirm_destroy} if confirm_destroy is not None else {}
        info = module.ensure_host(pb, check=check, resize=resize, reporter=reporter, make_runner=runners, **extra)
    return ProvisionResult(info, runners.recap(host_label(pb), started))


def teardown_host(pb: Any, *, check: bool = False, reporter: Any = None,
                  lock: LockRequest | None = None) -> TeardownResult:
    """`lock`: hold the host's deploy lock while tearing down, when the host runs and answers SSH (else a
    warning and no lock: a host that cannot be reached cannot hold one). Check mode takes no lock."""
    started = time.monotonic()
    runners = RunnerLog()
    module = provider_module(pb)
    changes: list[Change] = []  # `existing`: dockyard did not create the host, so it never removes it
    if module is not None:
        wanted = lock if not check else None
        with teardown_lock(pb, wanted, reporter, find=find_host, remote_for=remote_for) as held:
            changes = list(module.destroy_host(pb, check=check, reporter=reporter, make_runner=runners))
            if held is not None:
                recap = runners.recap(host_label(pb), started)
                held.finish(failed=recap.failed, changed=len(changes))
                held.host_gone = not recap.failed  # its audit log and lock went with it
    return TeardownResult(runners.recap(host_label(pb), started), changes)


def say_where(pb: Any, info: HostInfo, reporter: Any, *, next_step: bool = True) -> None:
    """After the host is up: its address and how to reach it (one small function, easy to swap)."""
    if not info.host_id:
        return
    addr = info.public_address or info.private_address or info.ssh_address
    reporter.info(f"host {info.host_id} is {info.state} at {addr}")
    for other in info.data.get("hosts", ())[1:]:  # aws host.count > 1: the first one is `info`
        where = other["public_address"] or other["private_address"] or other["ssh"]["address"]
        reporter.info(f"host {other['id']} ({other['name']}) is {other['state']} at {where}")
    if info.ssh_address:
        port = f" -p {info.ssh_port}" if info.ssh_port != 22 else ""
        jump = f" -J {pb.ssh.jump}" if pb.ssh.jump else ""
        key = info.data.get("key_file") or pb.key_file
        reporter.info(f"reach it: ssh -i {key}{port}{jump} {info.ssh_user}@{info.ssh_address}")
        if next_step:
            reporter.info(f"next: invoke setup -e {pb.environment}")


def resolve_host(pb: Any) -> HostInfo:
    """The HostInfo of the playbook's host, from its provider (a read-only lookup)."""
    info = find_host(pb)
    if info is None:
        raise StepFailed(f"no {pb.provider} host for {pb.project}/{pb.environment} yet: "
                         f"run `invoke provision -e {pb.environment}` first")
    return info


def ssh_target(pb: Any, host: HostInfo) -> Any:
    # deferred: fabric, paramiko, requests load when a command runs, not for `dockyard --help`
    from provision.remote import SshTarget

    return SshTarget.from_host(pb, host)


def environment_hosts(pb: Any) -> list[tuple[str, HostInfo]]:
    """Every host of the environment with the label its recap goes by, in order (the first leads a swarm):
    `host.addresses` (provider existing) gives several, each "address[:ssh-port]" (ssh.port otherwise);
    anything else is the one host of the provider's lookup."""
    if pb.provider == "aws" and pb.host.count > 1:
        return _aws_hosts(pb)
    if pb.provider != "existing" or not pb.host.addresses:
        return [(host_label(pb), resolve_host(pb))]
    # deferred: pydantic (through provision.spec_host) loads when a command runs, not for `dockyard --help`
    from provision.spec_host import split_address

    hosts = []
    for i, item in enumerate(pb.host.addresses, start=1):
        address, port = split_address(item)
        hosts.append((f"{host_label(pb)}-{i}", HostInfo(
            provider="existing", host_id=item, state="running", ssh_address=address,
            ssh_port=port or pb.ssh.port, ssh_user=pb.ssh_user, public_address=address)))
    return hosts


def _aws_hosts(pb: Any) -> list[tuple[str, HostInfo]]:
    """aws host.count > 1: every live instance by its index tag, labelled like its Name (<project>-<env>-N)."""
    # deferred: boto3 loads when a command runs, not for `dockyard --help`
    from provision.providers.aws import find_hosts

    found = find_hosts(pb)
    if not found:
        raise StepFailed(f"no aws hosts for {pb.project}/{pb.environment} yet: "
                         f"run `invoke provision -e {pb.environment}` first")
    return [(f"{host_label(pb)}-{info.data.get('index') or i}", info) for i, info in enumerate(found, start=1)]


def remote_for(pb: Any, host: HostInfo | None = None) -> Any:
    """The Remote (not connected yet) of the playbook's host: `host`, or the provider's lookup; for several
    hosts (`host.addresses`), the first: it leads the swarm and holds the deploy lock and the audit log."""
    # deferred: fabric, paramiko, requests load when a command runs, not for `dockyard --help`
    from provision.remote import Remote

    return Remote(ssh_target(pb, host or environment_hosts(pb)[0][1]))
