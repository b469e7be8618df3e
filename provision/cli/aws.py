"""`provision`, `teardown`: make the playbook's host exist, or remove every trace of it (`recreate`, both, is in
provision.cli.pipeline).

The cores are provision.phases.host's `provision_host` and `teardown_host`; here: options, the confirmation
before a teardown, the recap, `--json` and the exit code.
"""

from __future__ import annotations

import io
import sys
from typing import Any

from invoke.context import Context
from invoke.exceptions import Exit

from provision.changes import Change, HostRecap
from provision.cli.common import dockyard_task, emit_json, load, options
from provision.cli.lock import LOCK_WAIT_HELP, lock_request
from provision.errors import EXIT_FAILED, InputError, StepFailed
from provision.phases.host import TeardownResult, provision_host, say_where, teardown_host

__all__ = ["provision", "teardown"]

CHECK_HELP = "show what would be created, changed or deleted; change nothing"
RESIZE_HELP = "apply an instance type change (stops and starts the host)"
YES_HELP = "do not ask for confirmation (required when stdin is not a terminal, e.g. in CI)"


def host_json(info: Any) -> dict[str, Any]:
    return {"provider": info.provider, "id": info.host_id, "state": info.state,
            "ssh": {"address": info.ssh_address, "port": info.ssh_port, "user": info.ssh_user},
            "public_address": info.public_address, "private_address": info.private_address,
            **({"published": info.published} if info.published else {}), **info.data}


def confirm(pb: Any, changes: list[Change], *, yes: bool, reporter: Any, command: str = "teardown") -> None:
    """Ask before destroying; refuse without --yes when nobody can answer."""
    if yes or not changes:
        return
    for c in changes:
        reporter.info(f"will {c.action} {c.target}: {c.reason}")
    if not sys.stdin or not sys.stdin.isatty():
        raise InputError.single(f"{command} of {pb.project}/{pb.environment} needs confirmation and stdin is "
                                "not a terminal: pass --yes", file=pb.source)
    what = f"the {pb.provider} host" if command == "teardown" else f"{len(changes)} {pb.provider} instance(s)"
    sys.stderr.write(f"Destroy {what} of {pb.project}/{pb.environment}? "
                     f"Type the environment name ({pb.environment}) to confirm: ")
    sys.stderr.flush()
    if sys.stdin.readline().strip() != pb.environment:
        raise StepFailed(f"{command} cancelled: nothing was touched")


def _quiet_reporter() -> Any:
    # deferred: rich loads when a command runs, not for `dockyard --help`
    from rich.console import Console

    from provision.report import Reporter
    return Reporter(console=Console(file=io.StringIO()))


def confirm_teardown(pb: Any, *, check: bool, yes: bool, reporter: Any) -> None:
    """Unless --check or --yes: show what a teardown would remove (planned quietly) and ask."""
    if not check and not yes:
        planned = teardown_host(pb, check=True, reporter=_quiet_reporter())
        confirm(pb, planned.changes, yes=yes, reporter=reporter)


def confirmed_teardown(pb: Any, *, check: bool, yes: bool, reporter: Any, lock: Any = None) -> TeardownResult:
    confirm_teardown(pb, check=check, yes=yes, reporter=reporter)
    return teardown_host(pb, check=check, reporter=reporter, lock=lock)


def finish_provider(command: str, pb: Any, recap: HostRecap, reporter: Any, opts: Any, check: bool,
                    extra: dict[str, Any]) -> None:
    # deferred: rich loads when a command runs, not for `dockyard --help`
    from provision.report import to_json

    reporter.recap([recap])
    if opts.json:
        emit_json(to_json([recap], {"command": command, "check": check, "environment": pb.environment,
                                    **extra}))
    if recap.failed:
        raise Exit(code=EXIT_FAILED)


@dockyard_task(connects=True, help={"check": CHECK_HELP, "resize": RESIZE_HELP,
                                    "yes": "terminate instances above host.count without asking"})
def provision(ctx: Context, env: str | None = None, playbook: str | None = None, json: bool = False,
              verbose: bool = False, check: bool = False, resize: bool = False, yes: bool = False) -> None:
    """Make exactly one host exist for the project and environment, ready for SSH (idempotent)."""
    # deferred: rich loads when a command runs, not for `dockyard --help`
    from provision.report import Reporter

    opts = options(ctx, env, playbook, json, verbose)
    pb = load(opts)
    reporter = Reporter(json_mode=opts.json, verbose=opts.verbose)

    def confirm_destroy(changes: list[Change]) -> None:  # lowering host.count: teardown's confirmation rules
        confirm(pb, changes, yes=yes, reporter=reporter, command="provision")

    result = provision_host(pb, check=check, resize=resize, reporter=reporter, confirm_destroy=confirm_destroy)
    if not check:
        say_where(pb, result.host, reporter)
    finish_provider("provision", pb, result.recap, reporter, opts, check, {"host": host_json(result.host)})


@dockyard_task(help={"check": CHECK_HELP, "yes": YES_HELP, "lock_wait": LOCK_WAIT_HELP})
def teardown(ctx: Context, env: str | None = None, playbook: str | None = None, json: bool = False,
             verbose: bool = False, check: bool = False, yes: bool = False, lock_wait: str = "") -> None:
    """Terminate the host and delete what dockyard created for it (only resources carrying its tags)."""
    # deferred: rich loads when a command runs, not for `dockyard --help`
    from provision.report import Reporter

    opts = options(ctx, env, playbook, json, verbose)
    pb = load(opts)
    reporter = Reporter(json_mode=opts.json, verbose=opts.verbose)
    result = confirmed_teardown(pb, check=check, yes=yes, reporter=reporter,
                                lock=lock_request(pb, "teardown", lock_wait))
    finish_provider("teardown", pb, result.recap, reporter, opts, check,
                    {"changes": [c.to_json() for c in result.changes]})
