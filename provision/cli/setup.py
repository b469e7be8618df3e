"""`invoke setup -e ENV [--check] [--diff] [--json] [-v]`: install and configure the Docker engine over SSH.

The core is provision.phases.setup's `setup_host`; here: options, the recap, `--json` and the exit code.
"""

from __future__ import annotations

from invoke.context import Context
from invoke.exceptions import Exit

from provision.cli.common import dockyard_task, emit_json, load, options
from provision.errors import EXIT_FAILED
from provision.phases.setup import setup_host

__all__ = ["setup"]

CHECK_HELP = "show what would change, change nothing"
DIFF_HELP = "show before/after of files (daemon.json)"


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
