"""`provision`, `teardown`: make the playbook's host exist, or remove every trace of it (`recreate`, both, is in
provision.cli.pipeline).

They dispatch on `playbook.provider` (aws: EC2 via boto3; local: the sandbox container; existing: nothing to
create). The cores are plain functions so `up` and later pipelines can chain them:

    provision_host(pb, *, check, resize, reporter) -> HostInfo
    teardown_host(pb, *, check, reporter) -> list[Change]
"""

from __future__ import annotations

import io
import sys
import time
from typing import Any

from invoke.context import Context

from provision.changes import Change, HostRecap
from provision.cli.common import dockyard_task, emit_json, load, options
from provision.errors import InputError, StepFailed
from provision.providers import existing_host, provider_module

__all__ = ["provision", "teardown"]

CHECK_HELP = "show what would be created, changed or deleted; change nothing"
RESIZE_HELP = "apply an instance type change (stops and starts the host)"
YES_HELP = "do not ask for confirmation (required when stdin is not a terminal, e.g. in CI)"


def provision_host(pb: Any, *, check: bool = False, resize: bool = False, reporter: Any = None) -> Any:
    module = provider_module(pb)
    if module is None:
        return existing_host(pb)
    return module.ensure_host(pb, check=check, resize=resize, reporter=reporter)


def teardown_host(pb: Any, *, check: bool = False, reporter: Any = None) -> list[Change]:
    module = provider_module(pb)
    if module is None:
        return []  # `existing`: dockyard did not create the host, so it never removes it
    return list(module.destroy_host(pb, check=check, reporter=reporter))


def host_json(info: Any) -> dict[str, Any]:
    return {"provider": info.provider, "id": info.host_id, "state": info.state,
            "ssh": {"address": info.ssh_address, "port": info.ssh_port, "user": info.ssh_user},
            "public_address": info.public_address, "private_address": info.private_address,
            **({"published": info.published} if info.published else {}), **info.data}


def say_where(pb: Any, info: Any, reporter: Any, *, next_step: bool = True) -> None:
    """After the host is up: its address and how to reach it (one small function, easy to swap)."""
    if not info.host_id:
        return
    addr = info.public_address or info.private_address or info.ssh_address
    reporter.info(f"host {info.host_id} is {info.state} at {addr}")
    if info.ssh_address:
        port = f" -p {info.ssh_port}" if info.ssh_port != 22 else ""
        jump = f" -J {pb.ssh.jump}" if pb.ssh.jump else ""
        key = info.data.get("key_file") or pb.key_file
        reporter.info(f"reach it: ssh -i {key}{port}{jump} {info.ssh_user}@{info.ssh_address}")
        if next_step:
            reporter.info(f"next: invoke setup -e {pb.environment}")


def confirm(pb: Any, changes: list[Change], *, yes: bool, reporter: Any) -> None:
    """Ask before destroying; refuse without --yes when nobody can answer."""
    if yes or not changes:
        return
    for c in changes:
        reporter.info(f"will {c.action} {c.target}: {c.reason}")
    if not sys.stdin or not sys.stdin.isatty():
        raise InputError.single(f"teardown of {pb.project}/{pb.environment} needs confirmation and stdin is "
                                "not a terminal: pass --yes", file=pb.source)
    sys.stderr.write(f"Destroy the {pb.provider} host of {pb.project}/{pb.environment}? "
                     f"Type the environment name ({pb.environment}) to confirm: ")
    sys.stderr.flush()
    if sys.stdin.readline().strip() != pb.environment:
        raise StepFailed("teardown cancelled: nothing was touched")


def _quiet_reporter() -> Any:
    # deferred: rich loads when a command runs, not for `dockyard --help`
    from rich.console import Console

    from provision.report import Reporter
    return Reporter(console=Console(file=io.StringIO()))


def confirmed_teardown(pb: Any, *, check: bool, yes: bool, reporter: Any) -> list[Change]:
    if not check and not yes:
        confirm(pb, teardown_host(pb, check=True, reporter=_quiet_reporter()), yes=yes, reporter=reporter)
    return teardown_host(pb, check=check, reporter=reporter)


def finish_provider(command: str, pb: Any, reporter: Any, started: float, opts: Any, check: bool,
            extra: dict[str, Any]) -> None:
    # deferred: rich loads when a command runs, not for `dockyard --help`
    from provision.report import to_json

    recap = HostRecap(f"{pb.project}-{pb.environment}", list(reporter.results), time.monotonic() - started)
    reporter.recap([recap])
    if opts.json:
        emit_json(to_json([recap], {"command": command, "check": check, "environment": pb.environment,
                                    **extra}))


@dockyard_task(connects=True, help={"check": CHECK_HELP, "resize": RESIZE_HELP})
def provision(ctx: Context, env: str | None = None, playbook: str | None = None, json: bool = False,
              verbose: bool = False, check: bool = False, resize: bool = False) -> None:
    """Make exactly one host exist for the project and environment, ready for SSH (idempotent)."""
    # deferred: rich loads when a command runs, not for `dockyard --help`
    from provision.report import Reporter

    opts = options(ctx, env, playbook, json, verbose)
    pb = load(opts)
    reporter = Reporter(json_mode=opts.json, verbose=opts.verbose)
    started = time.monotonic()
    info = provision_host(pb, check=check, resize=resize, reporter=reporter)
    if not check:
        say_where(pb, info, reporter)
    finish_provider("provision", pb, reporter, started, opts, check, {"host": host_json(info)})


@dockyard_task(help={"check": CHECK_HELP, "yes": YES_HELP})
def teardown(ctx: Context, env: str | None = None, playbook: str | None = None, json: bool = False,
             verbose: bool = False, check: bool = False, yes: bool = False) -> None:
    """Terminate the host and delete what dockyard created for it (only resources carrying its tags)."""
    # deferred: rich loads when a command runs, not for `dockyard --help`
    from provision.report import Reporter

    opts = options(ctx, env, playbook, json, verbose)
    pb = load(opts)
    reporter = Reporter(json_mode=opts.json, verbose=opts.verbose)
    started = time.monotonic()
    changes = confirmed_teardown(pb, check=check, yes=yes, reporter=reporter)
    finish_provider("teardown", pb, reporter, started, opts, check, {"changes": [c.to_json() for c in changes]})
