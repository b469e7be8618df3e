"""`up`: provision → setup → deploy over one SSH connection, with one recap; `recreate`: teardown, then `up`.

The control flow of the whole product lives here, in one place. The three phase functions (and the SSH
connection they share) are a `Phases` value, so the flow can be exercised with fakes. The recap is the
phases' Runners' recaps joined in order, never what a console saw.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from provision.changes import Change, HostRecap, Status
from provision.phases.deploy import app_urls, deploy_host
from provision.phases.host import (
    ProvisionResult,
    host_label,
    joined_recap,
    provision_host,
    remote_for,
    say_where,
    teardown_host,
)
from provision.phases.lock import LockRequest, holding_lock
from provision.phases.setup import setup_host
from provision.providers import find_host


@dataclass(frozen=True)
class Phases:
    """What `up` chains; each takes the same arguments as the function it defaults to."""

    provision: Callable[..., ProvisionResult] = provision_host
    setup: Callable[..., HostRecap] = setup_host
    deploy: Callable[..., Any] = deploy_host  # -> provision.deploy.DeployResult
    remote: Callable[[Any, Any], Any] = remote_for  # (pb, HostInfo) -> a Remote, not connected yet


@dataclass
class UpResult:
    recap: HostRecap
    host: Any = None  # HostInfo
    urls: dict[str, str] = field(default_factory=dict)
    built: list[str] = field(default_factory=list)
    stopped_after: str | None = None  # the phase after which the run stopped (failure or check mode)

    @property
    def failed(self) -> bool:
        return self.recap.failed


@dataclass
class RecreateResult:
    removed: list[Change]
    recap: HostRecap  # teardown's, then up's
    up: UpResult | None = None  # None in check mode: nothing after teardown is planned

    @property
    def failed(self) -> bool:
        return self.recap.failed


def new_host_named_by_file(pb: Any, *, find: Callable[[Any], Any] = find_host) -> str | None:
    """What `up` would create, in one line, when the host does not exist yet and the playbook's environment is
    only its file name (no `environment:`): a copied playbook would otherwise silently provision a second host.
    None when nothing needs confirming (the host exists, `environment:` is set, or provider `existing`)."""
    # deferred: pydantic (through provision.playbook) loads when a command runs, not for `dockyard --help`
    from provision.playbook import environment_from_file_name

    if pb.provider == "existing" or not environment_from_file_name(pb) or find(pb) is not None:
        return None
    if pb.provider == "aws":
        where = f"an EC2 {pb.host.instance_type} instance {host_label(pb)} in {pb.host.region or 'the default region'}"
    else:
        where = f"a sandbox container dockyard-{host_label(pb)} on this machine's Docker engine"
    return f"{where} for environment {pb.environment!r} (project {pb.project!r})"


def run_up(pb: Any, *, reporter: Any, check: bool = False, diff: bool = False, resize: bool = False,
           prune: bool = False, verbose: bool = False, phases: Phases = Phases(),
           lock: LockRequest | None = None) -> UpResult:
    """`lock`: the host's deploy lock is held (and the audit entry written) around setup and deploy, taken once
    SSH is up: provisioning comes first, as a host that does not exist yet has nowhere to hold a lock."""
    started = time.monotonic()
    label = host_label(pb)
    recaps: list[HostRecap] = []

    def stop(info: Any, after: str) -> UpResult:
        return UpResult(joined_recap(label, recaps, started), info, stopped_after=after)

    provisioned = phases.provision(pb, check=check, resize=resize, reporter=reporter)
    info = provisioned.host
    recaps.append(provisioned.recap)
    if provisioned.failed:
        return stop(info, "provision")
    if check and (not info.host_id or info.state != "running"):
        reporter.info(f"[{label}] the host does not run yet: setup and deploy are planned once it does")
        return stop(info, "provision")
    if not check:
        say_where(pb, info, reporter, next_step=False)

    remote = phases.remote(pb, info)
    try:
        locked = holding_lock(pb, remote, lock, reporter) if lock is not None and not check else nullcontext()
        with locked as held:
            setup_recap = phases.setup(pb, check=check, diff=diff, reporter=reporter, host=info, remote=remote)
            recaps.append(setup_recap)
            if setup_recap.failed:
                return stop(info, "setup")  # the lock's audit entry says failed unless told otherwise
            if check and setup_recap.count(Status.CHANGED):
                reporter.info(f"[{label}] the engine has pending changes: deploy is planned once setup applies "
                              "them")
                return stop(info, "setup")
            deployed = phases.deploy(pb, check=check, diff=diff, reporter=reporter, host=info, remote=remote,
                                     prune=prune, verbose=verbose)
            recaps.append(deployed.recap)
            if held is not None:
                held.finish(failed=deployed.failed,
                            changed=setup_recap.count(Status.CHANGED) + deployed.recap.count(Status.CHANGED))
    finally:
        remote.close()
    urls = {} if deployed.failed else app_urls(pb, info)
    return UpResult(joined_recap(label, recaps, started), info, urls, list(deployed.built),
                    "deploy" if deployed.failed else None)


def run_recreate(pb: Any, *, reporter: Any, check: bool = False, verbose: bool = False,
                 teardown: Callable[..., Any] = teardown_host, phases: Phases = Phases(),
                 lock: LockRequest | None = None) -> RecreateResult:
    """Tear the host down, then `up` a fresh one (in check mode: only the teardown is planned). `lock`: the
    teardown holds the old host's lock, `up` takes the new host's (each writes its audit entry)."""
    started = time.monotonic()
    removed = teardown(pb, check=check, reporter=reporter, **({"lock": lock} if lock is not None else {}))
    if check or removed.failed:
        if check:
            reporter.info("then: provision a fresh host from nothing, set up its engine and deploy every app")
        return RecreateResult(removed.changes, joined_recap(host_label(pb), [removed.recap], started))
    up = run_up(pb, reporter=reporter, verbose=verbose, phases=phases, lock=lock)
    recap = joined_recap(host_label(pb), [removed.recap, up.recap], started)
    return RecreateResult(removed.changes, recap, up)
