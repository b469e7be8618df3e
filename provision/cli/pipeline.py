"""`up`: provision → setup → deploy, over one SSH connection, with one recap; `recreate`: teardown, then `up`.

The control flow of the whole product lives here, in one place: each phase's core is a plain function of
its own module (provision_host, setup_host, deploy_host), and `recreate` reuses `run_up` after teardown.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from invoke.context import Context
from invoke.exceptions import Exit

from provision.changes import HostRecap, Status
from provision.cli.aws import (
    CHECK_HELP,
    YES_HELP,
    confirmed_teardown,
    finish_provider,
    host_json,
    provision_host,
    say_where,
)
from provision.cli.common import dockyard_task, emit_json, load, options
from provision.cli.deploy import app_urls, deploy_host
from provision.cli.setup import setup_host
from provision.errors import EXIT_FAILED

__all__ = ["recreate", "up"]


@dataclass
class UpResult:
    recap: HostRecap
    host: Any = None  # HostInfo
    urls: dict[str, str] = field(default_factory=dict)
    built: list[str] = field(default_factory=list)
    stopped_after: str | None = None  # the phase after which the run stopped (failure or check mode)

    @property
    def failed(self) -> bool:
        return self.recap.failed


def run_up(pb: Any, *, reporter: Any, check: bool = False, diff: bool = False, resize: bool = False,
           prune: bool = False, verbose: bool = False, started: float | None = None) -> UpResult:
    # deferred: fabric, paramiko, requests load when a command runs, not for `dockyard --help`
    from provision.remote import Remote, SshTarget  # deferred: fabric/paramiko are not needed for --help

    started = time.monotonic() if started is None else started
    label = f"{pb.project}-{pb.environment}"

    def recap() -> HostRecap:
        return HostRecap(label, list(reporter.results), time.monotonic() - started)

    info = provision_host(pb, check=check, resize=resize, reporter=reporter)
    if check and (not info.host_id or info.state != "running"):
        reporter.info(f"[{label}] the host does not run yet: setup and deploy are planned once it does")
        return UpResult(recap(), info, stopped_after="provision")
    if not check:
        say_where(pb, info, reporter, next_step=False)

    remote = Remote(SshTarget.from_host(pb, info))
    try:
        setup_recap = setup_host(pb, check=check, diff=diff, reporter=reporter, host=info, remote=remote)
        if setup_recap.failed:
            return UpResult(recap(), info, stopped_after="setup")
        if check and setup_recap.count(Status.CHANGED):
            reporter.info(f"[{label}] the engine has pending changes: deploy is planned once setup applies them")
            return UpResult(recap(), info, stopped_after="setup")
        result = deploy_host(pb, check=check, diff=diff, reporter=reporter, host=info, remote=remote,
                             prune=prune, verbose=verbose)
    finally:
        remote.close()
    urls = {} if result.failed else app_urls(pb, info)
    return UpResult(recap(), info, urls, list(result.built), "deploy" if result.failed else None)


def finish(command: str, pb: Any, result: UpResult, reporter: Any, opts: Any, check: bool,
           extra: dict[str, Any] | None = None) -> None:
    # deferred: rich loads when a command runs, not for `dockyard --help`
    from provision.report import to_json

    reporter.recap([result.recap])
    if result.urls and not check:
        reporter.info("apps:")
        for name, url in result.urls.items():
            reporter.info(f"  {name:<12} {url}")
    if opts.json:
        emit_json(to_json([result.recap], {
            "command": command, "check": check, "environment": pb.environment,
            "host": host_json(result.host) if result.host is not None else None,
            "urls": result.urls, "built": result.built, **(extra or {})}))
    if result.failed:
        raise Exit(code=EXIT_FAILED)


@dockyard_task(connects=True, help={
    "check": "show what each phase would change; change nothing",
    "diff": "show before/after of files and container settings",
    "resize": "apply an instance type change (stops and starts the host)",
    "prune": "remove apps that are on the host but no longer in the playbook (not their volumes)",
})
def up(ctx: Context, env: str | None = None, playbook: str | None = None, json: bool = False,
       verbose: bool = False, check: bool = False, diff: bool = False, resize: bool = False,
       prune: bool = False) -> None:
    """Provision the host, set up its engine and deploy every app: the whole job, idempotent."""
    # deferred: rich loads when a command runs, not for `dockyard --help`
    from provision.report import Reporter

    opts = options(ctx, env, playbook, json, verbose)
    pb = load(opts)
    reporter = Reporter(json_mode=opts.json, verbose=opts.verbose)
    result = run_up(pb, reporter=reporter, check=check, diff=diff, resize=resize, prune=prune,
                    verbose=opts.verbose)
    finish("up", pb, result, reporter, opts, check)


@dockyard_task(connects=True, help={"check": CHECK_HELP, "yes": YES_HELP})
def recreate(ctx: Context, env: str | None = None, playbook: str | None = None, json: bool = False,
             verbose: bool = False, check: bool = False, yes: bool = False) -> None:
    """Tear the host down, then `up` a fresh one from nothing: provision, setup, deploy."""
    # deferred: rich loads when a command runs, not for `dockyard --help`
    from provision.report import Reporter

    opts = options(ctx, env, playbook, json, verbose)
    pb = load(opts)
    reporter = Reporter(json_mode=opts.json, verbose=opts.verbose)
    started = time.monotonic()
    removed = confirmed_teardown(pb, check=check, yes=yes, reporter=reporter)
    if check:
        reporter.info("then: provision a fresh host from nothing, set up its engine and deploy every app")
        finish_provider("recreate", pb, reporter, started, opts, check, {"changes": [c.to_json() for c in removed]})
        return
    result = run_up(pb, reporter=reporter, verbose=opts.verbose, started=started)
    finish("recreate", pb, result, reporter, opts, check, {"removed": [c.to_json() for c in removed]})
