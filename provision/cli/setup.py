"""`invoke setup -e ENV [--check] [--diff] [--json] [-v]`: install and configure the Docker engine over SSH.

The core is provision.phases.setup's `setup_hosts` (one recap per host); here: options, the recaps, `--json`
and the exit code.
"""

from __future__ import annotations

from invoke.context import Context
from invoke.exceptions import Exit

from provision.cli.common import dockyard_task, emit_json, load, options
from provision.errors import EXIT_FAILED
from provision.phases.setup import setup_hosts

__all__ = ["setup"]

CHECK_HELP = "show what would change, change nothing"
DIFF_HELP = "show before/after of files (daemon.json)"


@dockyard_task(connects=True, help={"check": CHECK_HELP, "diff": DIFF_HELP})
def setup(ctx: Context, env: str | None = None, playbook: str | None = None, json: bool = False,
          verbose: bool = False, check: bool = False, diff: bool = False) -> None:
    """Install and configure the Docker engine on every host over SSH; in swarm mode, form the swarm (idempotent;
    --check changes nothing)."""
    # deferred: rich loads when a command runs, not for `dockyard --help`
    from provision.report import Reporter, to_json

    opts = options(ctx, env, playbook, json, verbose)
    pb = load(opts)
    reporter = Reporter(json_mode=opts.json, verbose=opts.verbose)
    recaps = setup_hosts(pb, check=check, diff=diff, reporter=reporter)
    reporter.recap(recaps)
    if opts.json:
        emit_json(to_json(recaps, {"command": "setup", "check": check, "environment": pb.environment}))
    if any(recap.failed for recap in recaps):
        raise Exit(code=EXIT_FAILED)
