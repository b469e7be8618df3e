"""The setup phase: install and configure the Docker engine over SSH.

`setup_host(playbook, *, check, diff, reporter, host=None, remote=None) -> HostRecap`, which `up` chains after
provision (pass the HostInfo it returned as `host`, and a Remote to share the connection with deploy). Steps:
validate daemon.json locally (exit 2, nothing touched) → one SSH connection → one batched facts command → pure
plan (provision.plan.engine) → runner → handlers → the runner's recap.

`setup_hosts(playbook, ...) -> list[HostRecap]` is the `setup` command: every host of the environment
(`host.addresses`) set up in parallel, one SSH connection each; with `engine.mode: swarm` then one swarm formed
over them (provision.phases.swarm). One recap per host.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from provision.changes import HostRecap
from provision.phases.host import environment_hosts, host_label, joined_recap, remote_for
from provision.phases.swarm import form_swarm, parallel


def desired_engine(pb: Any) -> Any:
    """Render + validate daemon.json (InputError before anything is touched)."""
    # deferred: pydantic loads when a command runs, not for `dockyard --help`
    from provision.plan.engine import EngineDesired, check_daemon_json
    from provision.render_daemon import render_daemon_json

    text = render_daemon_json(pb.engine, pb)
    check_daemon_json(text, pb.source)
    return EngineDesired(source=pb.engine.source, daemon_json=text, ssh_user=pb.ssh_user,
                         users=pb.engine.users)


def setup_host(pb: Any, *, check: bool = False, diff: bool = False, reporter: Any = None, host: Any = None,
               remote: Any = None, label: str | None = None) -> HostRecap:
    # deferred: fabric, paramiko, pydantic, requests, rich load when a command runs, not for `dockyard --help`
    from provision.facts.engine import gather_engine_facts
    from provision.plan.engine import RESTART, plan_engine, plan_restart
    from provision.report import Reporter
    from provision.runner import Runner

    reporter = reporter or Reporter()
    desired = desired_engine(pb)
    own = remote is None
    if remote is None:
        remote = remote_for(pb, host)
    label = label or host_label(pb)
    runner = Runner(label, remote, check=check, diff=diff, reporter=reporter)
    try:
        with runner.guard("connect"), reporter.progress(f"[{label}] connecting to {remote.target.label}"):
            remote.open()
        if runner.failed:
            return runner.recap
        facts = None
        with runner.guard("gather facts"):
            facts = gather_engine_facts(remote, desired.group_members)
            tasks = plan_engine(desired, facts)
        if facts is None or runner.failed:
            return runner.recap
        runner.run_task("gather facts", [], data=facts.summary())
        runner.add_handler(RESTART, lambda: plan_restart(facts, desired.wait))
        for task in tasks:
            if task.error:
                runner.fail(task.name, task.error)
                continue
            with reporter.progress(f"[{label}] {task.name}"):
                runner.run_task(task.name, task.changes, data=task.data)
        with reporter.progress(f"[{label}] handlers"):
            runner.flush_handlers()
        return runner.recap
    finally:
        if own:
            remote.close()


def setup_hosts(pb: Any, *, check: bool = False, diff: bool = False, reporter: Any = None,
                hosts: Sequence[tuple[str, Any]] | None = None,
                remotes: Sequence[Any] | None = None) -> list[HostRecap]:
    """Every host's engine in parallel (each on its own connection, within its own channel budget), then the
    swarm when engine.mode is swarm. One recap per host, in the playbook's order. `hosts` ((label, HostInfo)
    pairs, default: the environment's) with `remotes` (one each, kept open for the caller, e.g. `up`'s deploy)
    share connections with the phase after this one."""
    # deferred: rich loads when a command runs, not for `dockyard --help`
    from provision.report import Reporter

    reporter = reporter or Reporter()
    desired_engine(pb)  # an invalid daemon.json is refused (exit 2) before any host is touched
    hosts = list(hosts) if hosts is not None else environment_hosts(pb)
    if len(hosts) == 1 and pb.engine.mode != "swarm" and remotes is None:
        return [setup_host(pb, check=check, diff=diff, reporter=reporter, host=hosts[0][1], label=hosts[0][0])]
    started = time.monotonic()
    own = remotes is None
    shared = [remote_for(pb, info) for _, info in hosts] if remotes is None else list(remotes)
    try:
        engines = parallel(range(len(hosts)), lambda i: setup_host(
            pb, check=check, diff=diff, reporter=reporter, host=hosts[i][1], remote=shared[i], label=hosts[i][0]))
        swarm = form_swarm(pb, [(label, remote) for (label, _), remote in zip(hosts, shared, strict=True)],
                           engines, check=check, diff=diff, reporter=reporter) if pb.engine.mode == "swarm" else []
        return [joined_recap(engine.host, [engine, *swarm[i:i + 1]], started) for i, engine in enumerate(engines)]
    finally:
        if own:
            for remote in shared:
                remote.close()
