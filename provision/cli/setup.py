"""`invoke setup -e ENV [--check] [--diff] [--json] [-v]`: install and configure the Docker engine over SSH.

The core is `setup_host(playbook, *, check, diff, reporter, host=None, remote=None) -> HostRecap`, which `up`
chains after `provision` (pass the HostInfo it returned as `host`, and an open Remote to share the
connection with deploy). Phases: validate daemon.json locally (exit 2, nothing touched) → one SSH
connection → one batched facts command → pure plan (provision.plan.engine) → runner → handlers → recap.
"""

from __future__ import annotations

from typing import Any

from invoke.context import Context
from invoke.exceptions import Exit

from provision.changes import HostRecap
from provision.cli.common import dockyard_task, emit_json, load, options
from provision.errors import EXIT_FAILED, StepFailed
from provision.providers import find_host

__all__ = ["setup"]

CHECK_HELP = "show what would change, change nothing"
DIFF_HELP = "show before/after of files (daemon.json)"


def resolve_host(pb: Any) -> Any:
    """The HostInfo of the playbook's host, from its provider (a read-only lookup)."""
    info = find_host(pb)
    if info is None:
        raise StepFailed(f"no {pb.provider} host for {pb.project}/{pb.environment} yet: "
                         f"run `invoke provision -e {pb.environment}` first")
    return info


def ssh_target(pb: Any, host: Any) -> Any:
    # deferred: fabric, paramiko, requests load when a command runs, not for `dockyard --help`
    from provision.remote import SshTarget

    return SshTarget.from_host(pb, host)


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
    from provision.remote import Remote
    from provision.report import Reporter
    from provision.runner import Runner

    reporter = reporter or Reporter()
    desired = desired_engine(pb)
    own = remote is None
    if remote is None:
        host = host or resolve_host(pb)
        remote = Remote(ssh_target(pb, host))
    label = f"{pb.project}-{pb.environment}"
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


@dockyard_task(connects=True, help={"check": CHECK_HELP, "diff": DIFF_HELP})
def setup(ctx: Context, env: str | None = None, playbook: str | None = None, json: bool = False,
          verbose: bool = False, check: bool = False, diff: bool = False) -> None:
    """Install and configure the Docker engine on the host over SSH (idempotent; --check changes nothing)."""
    # deferred: rich loads when a command runs, not for `dockyard --help`
    from provision.report import Reporter, to_json

    opts = options(ctx, env, playbook, json, verbose)
    pb = load(opts)
    reporter = Reporter(json_mode=opts.json, verbose=opts.verbose)
    recap = setup_host(pb, check=check, diff=diff, reporter=reporter)
    reporter.recap([recap])
    if opts.json:
        emit_json(to_json([recap], {"command": "setup", "check": check, "environment": pb.environment}))
    if recap.failed:
        raise Exit(code=EXIT_FAILED)
