"""`up` and `recreate` with engine.mode: swarm: the same chain as provision.phases.up, over every host.

    provision (aws: exactly host.count instances; existing: the `host.addresses`) ──►
    the environment's hosts, each with ONE Remote that setup and deploy share ──►
    the deploy lock on the first host (around setup and deploy, as `up` holds it) ──►
    setup: every engine in parallel, then the swarm formed (provision.phases.setup.setup_hosts) ──►
    deploy: the apps as services (provision.phases.deploy.deploy_swarm_env)

One recap per host (`<project>-<env>-1..N`; provisioning's tasks count on the first). Check mode stops where
single-host `up` stops: after provisioning when hosts are still to be made, after setup when an engine has
pending changes (the swarm and the services are planned once they run).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from provision.changes import HostRecap, Status
from provision.phases.deploy import app_urls, deploy_swarm_env
from provision.phases.host import (
    environment_hosts,
    host_label,
    joined_recap,
    provision_host,
    remote_for,
    say_where,
    teardown_host,
)
from provision.phases.lock import LockRequest, holding_lock
from provision.phases.setup import setup_hosts


@dataclass
class SwarmUpResult:
    recaps: list[HostRecap]
    host: Any = None  # the first host's HostInfo (it leads the swarm)
    urls: dict[str, str] = field(default_factory=dict)
    built: list[str] = field(default_factory=list)
    services: list[str] = field(default_factory=list)
    endpoint_mode: str = ""  # as provision.deploy_swarm.SwarmDeployResult says ("": no deploy ran)
    stopped_after: str | None = None
    removed: list[Any] = field(default_factory=list)  # recreate: what its teardown removed (Changes)

    @property
    def failed(self) -> bool:
        return any(r.failed for r in self.recaps)


def _per_host(labels: list[str], phases: list[list[HostRecap]], started: float) -> list[HostRecap]:
    """Each host's recaps from every phase joined in order, one recap per host label."""
    return [joined_recap(label, [r for recaps in phases for r in recaps if r.host == label], started)
            for label in labels]


def run_up_swarm(pb: Any, *, reporter: Any, check: bool = False, diff: bool = False, resize: bool = False,
                 prune: bool = False, verbose: bool = False, lock: LockRequest | None = None,
                 provision: Callable[..., Any] = provision_host,
                 hosts_of: Callable[[Any], list[tuple[str, Any]]] = environment_hosts,
                 remote: Callable[[Any, Any], Any] = remote_for) -> SwarmUpResult:
    """`provision`, `hosts_of`, `remote`: the phase functions (fakes in tests)."""
    # deferred: paramiko (through provision.deploy_swarm) loads when a command runs, not for `dockyard --help`
    from provision.deploy_swarm import refuse_unsupported

    refuse_unsupported(pb, list(pb.apps), prune=prune)  # before anything is made or touched
    started = time.monotonic()
    provisioned = provision(pb, check=check, resize=resize, reporter=reporter)
    info = provisioned.host
    first_label = host_label(pb)
    if provisioned.failed:
        return SwarmUpResult([provisioned.recap], info, stopped_after="provision")
    if check and provisioned.recap.count(Status.CHANGED):
        reporter.info(f"[{first_label}] the hosts do not all run yet: setup and deploy are planned once they do")
        return SwarmUpResult([provisioned.recap], info, stopped_after="provision")
    if not check:
        say_where(pb, info, reporter, next_step=False)

    hosts = hosts_of(pb)
    labels = [label for label, _ in hosts]
    # provisioning's tasks (one provider Runner, labelled by the environment) count on the first host
    provision_recap = HostRecap(labels[0], provisioned.recap.results, provisioned.recap.elapsed)
    remotes = [remote(pb, each) for _, each in hosts]
    phase_recaps: list[list[HostRecap]] = [[provision_recap]]

    def stop(after: str) -> SwarmUpResult:
        return SwarmUpResult(_per_host(labels, phase_recaps, started), hosts[0][1], stopped_after=after)

    try:
        locked = holding_lock(pb, remotes[0], lock, reporter) if lock is not None and not check else nullcontext()
        with locked as held:
            setup = setup_hosts(pb, check=check, diff=diff, reporter=reporter, hosts=hosts, remotes=remotes)
            phase_recaps.append(setup)
            if any(r.failed for r in setup):
                return stop("setup")  # the lock's audit entry says failed unless told otherwise
            if check and any(r.count(Status.CHANGED) for r in setup):
                reporter.info(f"[{labels[0]}] the engines have pending changes: the services are planned once "
                              "setup applies them")
                return stop("setup")
            deployed = deploy_swarm_env(pb, check=check, diff=diff, reporter=reporter, prune=prune,
                                        verbose=verbose, remotes=list(zip(labels, remotes, strict=True)))
            phase_recaps.append(deployed.recaps)
            if held is not None:
                held.apps = list(pb.apps)
                held.finish(failed=deployed.failed,
                            changed=sum(r.count(Status.CHANGED) for recaps in phase_recaps[1:] for r in recaps))
    finally:
        for each in remotes:
            each.close()
    urls = {} if deployed.failed or check else app_urls(pb, hosts[0][1])
    return SwarmUpResult(_per_host(labels, phase_recaps, started), hosts[0][1], urls, list(deployed.built),
                         list(deployed.services), deployed.endpoint_mode, "deploy" if deployed.failed else None)


def run_recreate_swarm(pb: Any, *, reporter: Any, check: bool = False, verbose: bool = False,
                       lock: LockRequest | None = None, teardown: Callable[..., Any] = teardown_host,
                       up: Callable[..., SwarmUpResult] = run_up_swarm) -> SwarmUpResult:
    """Tear every host down (aws: all host.count instances; existing hosts are never removed), then `up`."""
    # deferred: paramiko (through provision.deploy_swarm) loads when a command runs, not for `dockyard --help`
    from provision.deploy_swarm import refuse_unsupported

    refuse_unsupported(pb, list(pb.apps), prune=False)  # before the teardown: a refused `up` would follow it
    started = time.monotonic()
    removed = teardown(pb, check=check, reporter=reporter, **({"lock": lock} if lock is not None else {}))
    if check or removed.failed:
        if check:
            reporter.info("then: provision fresh hosts from nothing, set up their engines, form the swarm and "
                          "deploy every app as a service")
        return SwarmUpResult([joined_recap(host_label(pb), [removed.recap], started)], removed=removed.changes,
                             stopped_after="teardown")
    result = up(pb, reporter=reporter, verbose=verbose, lock=lock)
    first = result.recaps[0]
    result.recaps[0] = joined_recap(first.host, [removed.recap, first], started)
    result.removed = list(removed.changes)
    return result
