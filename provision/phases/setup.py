"""The setup phase: install and configure the Docker engine over SSH.

`setup_host(playbook, *, check, diff, reporter, host=None, remote=None) -> HostRecap`, which `up` chains after
provision (pass the HostInfo it returned as `host`, and a Remote to share the connection with deploy). Steps:
validate daemon.json locally (exit 2, nothing touched) → one SSH connection → one batched facts command → pure
plan (provision.plan.engine) → runner → handlers → the runner's recap.
"""

from __future__ import annotations

from typing import Any

from provision.changes import HostRecap
from provision.phases.host import host_label, remote_for


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
               remote: Any = None) -> HostRecap:
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
    label = host_label(pb)
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
