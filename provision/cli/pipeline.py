"""`up`: provision → setup → deploy, over one SSH connection, with one recap; `recreate`: teardown, then `up`.

The control flow is provision.phases.up's (`run_up`, `run_recreate`); here: options, the confirmation before
`recreate` tears down and before `up` creates a host whose environment is only the playbook's file name, the
recap, the apps' URLs (after the deploy), `--json` and the exit code.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from invoke.context import Context
from invoke.exceptions import Exit

from provision.cli.aws import CHECK_HELP, YES_HELP, confirm_teardown, finish_provider, host_json
from provision.cli.common import dockyard_task, emit_json, load, options
from provision.cli.deploy import print_urls
from provision.cli.lock import LOCK_WAIT_HELP, lock_request
from provision.errors import EXIT_FAILED, InputError, StepFailed
from provision.phases.up import UpResult, new_host_named_by_file, run_recreate, run_up
from provision.phases.up_swarm import run_recreate_swarm, run_up_swarm
from provision.providers import find_host

__all__ = ["recreate", "up"]


def finish(command: str, pb: Any, result: UpResult, reporter: Any, opts: Any, check: bool,
           extra: dict[str, Any] | None = None) -> None:
    # deferred: rich loads when a command runs, not for `dockyard --help`
    from provision.report import to_json

    reporter.recap([result.recap])
    if not check:
        print_urls(result.urls, reporter)
    if opts.json:
        emit_json(to_json([result.recap], {
            "command": command, "check": check, "environment": pb.environment,
            "host": host_json(result.host) if result.host is not None else None,
            "urls": result.urls, "built": result.built, **(extra or {})}))
    if result.failed:
        raise Exit(code=EXIT_FAILED)


def finish_swarm(command: str, pb: Any, result: Any, reporter: Any, opts: Any, check: bool,
                 extra: dict[str, Any] | None = None) -> None:
    """Swarm mode (a provision.phases.up_swarm.SwarmUpResult): one recap per host, the services."""
    # deferred: rich loads when a command runs, not for `dockyard --help`
    from provision.report import to_json

    reporter.recap(result.recaps)
    if not check:
        print_urls(result.urls, reporter)
    if opts.json:
        emit_json(to_json(result.recaps, {
            "command": command, "check": check, "environment": pb.environment,
            "host": host_json(result.host) if result.host is not None else None, "urls": result.urls,
            "built": result.built, "services": result.services, "endpoint_mode": result.endpoint_mode,
            **(extra or {})}))
    if result.failed:
        raise Exit(code=EXIT_FAILED)


def confirm_new_host(pb: Any, *, yes: bool, json: bool, reporter: Any,
                     find: Callable[[Any], Any] = find_host) -> None:
    """Before `up` creates a host for an environment named only by the playbook's file name: say what it is and
    ask; refuse (exit 2) under --json or without a terminal, unless --yes."""
    if yes:
        return
    what = new_host_named_by_file(pb, find=find)
    if what is None:
        return
    name = pb.source.name if pb.source is not None else "the playbook"
    reporter.info(f"up will create {what}: the environment name comes from the file name {name}")
    if json or not sys.stdin or not sys.stdin.isatty():
        raise InputError.single(f"`up` would create a new host, {what}, named only by the file name {name}: "
                                "set `environment:` in the file or pass --yes", file=pb.source)
    sys.stderr.write(f"Create a new {pb.provider} host for environment {pb.environment!r}? [y/N] ")
    sys.stderr.flush()
    if sys.stdin.readline().strip().lower() not in ("y", "yes"):
        raise StepFailed("up cancelled: nothing was created (set `environment:` in the file to skip this question)")


@dockyard_task(connects=True, help={
    "check": "show what each phase would change; change nothing",
    "diff": "show before/after of files and container settings",
    "resize": "apply an instance type change (stops and starts the host)",
    "prune": "remove apps that are on the host but no longer in the playbook (not their volumes)",
    "lock_wait": LOCK_WAIT_HELP,
    "yes": "create a new host without asking even when the environment is only the playbook's file name",
})
def up(ctx: Context, env: str | None = None, playbook: str | None = None, json: bool = False,
       verbose: bool = False, check: bool = False, diff: bool = False, resize: bool = False,
       prune: bool = False, lock_wait: str = "", yes: bool = False) -> None:
    """Provision the host, set up its engine and deploy every app: the whole job, idempotent."""
    # deferred: rich loads when a command runs, not for `dockyard --help`
    from provision.report import Reporter

    opts = options(ctx, env, playbook, json, verbose)
    pb = load(opts)
    reporter = Reporter(json_mode=opts.json, verbose=opts.verbose)
    if not check:  # --check creates nothing (its plan shows the launch)
        confirm_new_host(pb, yes=yes, json=opts.json, reporter=reporter)
    if pb.engine.mode == "swarm":  # every host, the swarm, the apps as services
        finish_swarm("up", pb, run_up_swarm(pb, reporter=reporter, check=check, diff=diff, resize=resize,
                                            prune=prune, verbose=opts.verbose,
                                            lock=lock_request(pb, "up", lock_wait)), reporter, opts, check)
        return
    result = run_up(pb, reporter=reporter, check=check, diff=diff, resize=resize, prune=prune,
                    verbose=opts.verbose, lock=lock_request(pb, "up", lock_wait))
    finish("up", pb, result, reporter, opts, check)


@dockyard_task(connects=True, help={"check": CHECK_HELP, "yes": YES_HELP, "lock_wait": LOCK_WAIT_HELP})
def recreate(ctx: Context, env: str | None = None, playbook: str | None = None, json: bool = False,
             verbose: bool = False, check: bool = False, yes: bool = False, lock_wait: str = "") -> None:
    """Tear the host down, then `up` a fresh one from nothing: provision, setup, deploy."""
    # deferred: rich loads when a command runs, not for `dockyard --help`
    from provision.report import Reporter

    opts = options(ctx, env, playbook, json, verbose)
    pb = load(opts)
    reporter = Reporter(json_mode=opts.json, verbose=opts.verbose)
    confirm_teardown(pb, check=check, yes=yes, reporter=reporter)
    if pb.engine.mode == "swarm":
        swarm = run_recreate_swarm(pb, reporter=reporter, check=check, verbose=opts.verbose,
                                   lock=lock_request(pb, "recreate", lock_wait))
        finish_swarm("recreate", pb, swarm, reporter, opts, check,
                     {"removed": [c.to_json() for c in swarm.removed]})
        return
    result = run_recreate(pb, reporter=reporter, check=check, verbose=opts.verbose,
                          lock=lock_request(pb, "recreate", lock_wait))
    removed = [c.to_json() for c in result.removed]
    if result.up is None:  # check mode (or a failed teardown): only the teardown was planned or run
        finish_provider("recreate", pb, result.recap, reporter, opts, check, {"changes": removed})
        return
    finish("recreate", pb, replace(result.up, recap=result.recap), reporter, opts, check, {"removed": removed})
