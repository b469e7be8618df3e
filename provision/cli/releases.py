"""`releases` and `rollback`.

    dockyard releases -e ENV [--app NAME] [--json]
    dockyard rollback -e ENV --app NAME [--to RELEASE] [--check] [--lock-wait DURATION] [--json]

A rollback starts a kept release again (its stopped container: no build, no pull) through the same
health-gated switch as a deploy, behind the proxy when the app has `domains`.

engine.mode swarm: an app's releases are its service's current spec and the previous one Swarm keeps; a
rollback is the service's rollback to that previous spec (no `--to`), then the wait for its replicas.
"""

from __future__ import annotations

import datetime

from invoke.context import Context
from invoke.exceptions import Exit

from provision.cli.common import dockyard_task, emit_json, load, options
from provision.cli.lock import LOCK_WAIT_HELP, lock_request
from provision.errors import EXIT_FAILED, InputError

__all__ = ["releases", "rollback"]

COLUMNS = ("app", "release", "current", "state", "created", "image", "container")


def _when(created: int) -> str:
    return datetime.datetime.fromtimestamp(created, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S") if created else "-"


@dockyard_task(connects=True, help={"app": "only this app's releases"})
def releases(ctx: Context, env: str | None = None, playbook: str | None = None, json: bool = False,
             verbose: bool = False, app: str | None = None) -> None:
    """The releases kept on the host per app (newest first), and which one is current."""
    # deferred: rich and the phases load when a command runs, not for `dockyard --help`
    from rich.console import Console

    from provision.phases.releases import list_releases
    from provision.phases.swarm_apps import swarm_releases
    from provision.report import print_table

    opts = options(ctx, env, playbook, json, verbose)
    pb = load(opts)
    found = (swarm_releases if pb.engine.mode == "swarm" else list_releases)(pb, app)
    if opts.json:
        emit_json([r.to_json() for r in found])
        return
    print_table(Console(highlight=False), f"{pb.project}/{pb.environment} releases", COLUMNS,
                [[r.app, r.release, "yes" if r.current else "", r.state, _when(r.created), r.image, r.container]
                 for r in found])


@dockyard_task(connects=True, help={
    "app": "the app to roll back (required)",
    "to": "the release to start (default: the newest one before the current)",
    "check": "show what would be started and stopped; change nothing",
    "lock_wait": LOCK_WAIT_HELP,
})
def rollback(ctx: Context, env: str | None = None, playbook: str | None = None, json: bool = False,
             verbose: bool = False, app: str | None = None, to: str | None = None, check: bool = False,
             lock_wait: str = "") -> None:
    """Serve an earlier release of an app again: no build, the same health-gated switch as a deploy."""
    # deferred: rich and the phases load when a command runs, not for `dockyard --help`
    from provision.phases.releases import rollback as run_rollback
    from provision.phases.swarm_apps import swarm_rollback
    from provision.report import Reporter, to_json

    opts = options(ctx, env, playbook, json, verbose)
    pb = load(opts)
    if pb.engine.mode == "swarm":
        run_rollback = swarm_rollback  # the service's rollback to its previous spec
    if not app:
        raise InputError.single("rollback needs --app NAME", pb.source, "apps")
    reporter = Reporter(json_mode=opts.json, verbose=opts.verbose)
    result = run_rollback(pb, app, to=to, reporter=reporter, check=check,
                          lock=lock_request(pb, "rollback", lock_wait))
    reporter.recap([result.recap])
    if opts.json:
        emit_json(to_json([result.recap], {"command": "rollback", "environment": pb.environment, "app": app,
                                           "release": result.release, "check": check}))
    if result.failed:
        raise Exit(code=EXIT_FAILED)
