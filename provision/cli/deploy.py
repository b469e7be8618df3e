"""`deploy`, `status`, `logs`, `exec`: the apps on the host, over its one SSH connection.

    invoke deploy -e ENV [--app NAME ...] [--check] [--diff] [--prune] [--prune-volumes] [--json] [-v]
    invoke status -e ENV [--json]
    invoke logs   -e ENV --app NAME [-f] [-n N]
    invoke exec   -e ENV --app NAME [-t] [--env KEY=VALUE ...] -- CMD [ARG ...]      (or --cmd "CMD ARG ...")
                  engine.mode swarm: [--task N | --node HOST-LABEL] picks the task (default: the first running)

The deploy core is provision.phases.deploy's `deploy_host`; here: options, the recap, tables, `--json`, exit codes.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import asdict
from functools import partial
from typing import Any

from invoke.context import Context
from invoke.exceptions import Exit

from provision.cli.aws import host_json
from provision.cli.common import dockyard_task, emit_json, load, options
from provision.cli.lock import LOCK_WAIT_HELP, lock_request
from provision.errors import EXIT_FAILED, InputError
from provision.phases.deploy import app_urls, deploy_host, deploy_swarm_env
from provision.phases.host import resolve_host
from provision.providers.hostinfo import host_entries

__all__ = ["deploy", "exec_", "logs", "status"]

APP_HELP = "only this app (repeatable); default: every app of the playbook"
CHECK_HELP = "show what would be built, created, replaced or removed; change nothing"
DIFF_HELP = "show before/after of each container's settings (secret-free)"
PRUNE_HELP = "remove apps that are on the host but no longer in the playbook (not their volumes)"
PRUNE_VOLUMES_HELP = "with --prune: also remove the removed apps' named volumes (their data!)"
STATUS_COLUMNS = ("app", "version", "state", "health", "ports", "domains", "started", "image")
NODE_COLUMNS = ("node", "hostname", "status", "availability", "manager")
SERVICE_COLUMNS = ("app", "release", "replicas", "nodes", "update")


@dockyard_task(
    connects=True,
    help={
        "app": APP_HELP,
        "check": CHECK_HELP,
        "diff": DIFF_HELP,
        "prune": PRUNE_HELP,
        "prune_volumes": PRUNE_VOLUMES_HELP,
        "lock_wait": LOCK_WAIT_HELP,
    },
    iterable=["app"],
)
def deploy(
    ctx: Context,
    env: str | None = None,
    playbook: str | None = None,
    json: bool = False,
    verbose: bool = False,
    app: list[str] | None = None,
    check: bool = False,
    diff: bool = False,
    prune: bool = False,
    prune_volumes: bool = False,
    lock_wait: str = "",
) -> None:
    """Build and run the playbook's apps on the host, each in its own network (idempotent)."""
    # deferred: rich loads when a command runs, not for `dockyard --help`
    from provision.report import Reporter, to_json

    opts = options(ctx, env, playbook, json, verbose)
    pb = load(opts)
    reporter = Reporter(json_mode=opts.json, verbose=opts.verbose)
    if pb.engine.mode == "swarm":  # the apps become services over every host
        swarm = deploy_swarm_env(pb, check=check, diff=diff, reporter=reporter, only=list(app or ()), prune=prune,
                                 verbose=opts.verbose, lock=lock_request(pb, "deploy", lock_wait))
        reporter.recap(swarm.recaps)
        if opts.json:
            emit_json(to_json(swarm.recaps, {"command": "deploy", "check": check, "environment": pb.environment,
                                             "built": swarm.built, "services": swarm.services,
                                             "endpoint_mode": swarm.endpoint_mode}))
        if swarm.failed:
            raise Exit(code=EXIT_FAILED)
        return
    host = resolve_host(pb)  # the lookup deploy_host would make; kept for the URLs
    result = deploy_host(
        pb,
        host=host,
        check=check,
        diff=diff,
        reporter=reporter,
        only=list(app or ()),
        prune=prune,
        prune_volumes=prune_volumes,
        verbose=opts.verbose,
        lock=lock_request(pb, "deploy", lock_wait),
    )
    reporter.recap([result.recap])
    urls = {} if check or result.failed else deployed_urls(pb, host, app)
    print_urls(urls, reporter)
    if opts.json:
        emit_json(
            to_json(
                [result.recap],
                {
                    "command": "deploy",
                    "check": check,
                    "environment": pb.environment,
                    "built": result.built,
                    "orphans": result.orphans,
                    "urls": urls,
                },
            )
        )
    if result.failed:
        raise Exit(code=EXIT_FAILED)


def deployed_urls(pb: Any, host: Any, only: list[str] | None) -> dict[str, str]:
    """Where the apps this run deployed answer (all of them, or the `--app` ones)."""
    urls = app_urls(pb, host)
    return {name: url for name, url in urls.items() if not only or name in only}


def print_urls(urls: dict[str, str], reporter: Any) -> None:
    """After the recap: the apps are deployed by then, so the URLs answer (also `up`'s)."""
    if urls:
        reporter.info("apps:")
        for name, url in urls.items():
            reporter.info(f"  {name:<12} {url}")


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1000  # type: ignore[assignment]
    return str(n)


@dockyard_task(connects=True)
def status(
    ctx: Context,
    env: str | None = None,
    playbook: str | None = None,
    json: bool = False,
    verbose: bool = False,
) -> None:
    """A table per app: version (build hash), state, health, ports, domains, started, image size; and the
    proxy's state. engine.mode swarm: the nodes, then each app's service: release, replicas, per node, update."""
    # deferred: paramiko, pydantic, rich load when a command runs, not for `dockyard --help`
    from rich.console import Console

    from provision.phases.inspect import status_rows
    from provision.report import print_table

    opts = options(ctx, env, playbook, json, verbose)
    pb = load(opts)
    if pb.engine.mode == "swarm":
        _swarm_status(pb, opts.json)
        return
    host = resolve_host(pb)
    rows = status_rows(pb, host)
    if opts.json:  # host: as provision --json says it; its "hosts" lists each instance of an aws host.count
        emit_json({"command": "status", "environment": pb.environment, "apps": [asdict(r) for r in rows],
                   "host": {**host_json(host), "hosts": host_entries(host)}})
        return
    print_table(Console(highlight=False), f"{pb.project}/{pb.environment}", STATUS_COLUMNS,
                [[r.app, r.version, r.state, r.health, r.ports, r.domains, r.started, _size(r.image_size)]
                 for r in rows])


def _swarm_status(pb: Any, json: bool) -> None:
    """Swarm mode: the nodes, then each app's service (replicas per node), as the first host (a manager) sees
    them. --json: "nodes" (as `docker node ls` spells them), "services" and "apps" (the same rows)."""
    # deferred: paramiko, pydantic, rich load when a command runs, not for `dockyard --help`
    from rich.console import Console

    from provision.phases.swarm import swarm_status
    from provision.report import print_table

    nodes, rows = swarm_status(pb)
    if json:
        emit_json(swarm_status_json(pb.environment, nodes, rows))
        return
    console = Console(highlight=False)
    print_table(console, f"{pb.project}/{pb.environment} nodes", NODE_COLUMNS,
                [[n.id[:12], n.hostname, n.status.lower(), n.availability.lower(), n.manager_status.lower() or "-"]
                 for n in nodes])
    print_table(console, f"{pb.project}/{pb.environment} services", SERVICE_COLUMNS, service_table(rows))
    notes = Console(stderr=True, highlight=False)  # beside the tables: piped stdout stays header + rows
    for row in rows:
        if row.note and row.service:
            notes.print(f"app {row.app}: {row.note}")


def swarm_status_json(environment: str, nodes: list[Any], rows: list[Any]) -> dict[str, Any]:
    # deferred: provision.swarm (and what it imports) loads when a command runs, not for `dockyard --help`
    from provision.swarm_status import row_json

    services = [row_json(r) for r in rows]
    return {"command": "status", "environment": environment, "apps": services, "services": services,
            "nodes": [asdict(n) for n in nodes]}


def service_table(rows: list[Any]) -> list[list[str]]:
    # deferred: provision.swarm (and what it imports) loads when a command runs, not for `dockyard --help`
    from provision.swarm_status import nodes_text, replicas_text

    return [[r.app, r.release, replicas_text(r), nodes_text(r), r.update if r.service else r.note] for r in rows]


@dockyard_task(
    connects=True,
    help={
        "app": "the app whose logs to show",
        "follow": "keep streaming new lines (Ctrl-C stops)",
        "n": "how many lines from the end (default 100; 0 = all)",
    }
)
def logs(
    ctx: Context,
    env: str | None = None,
    playbook: str | None = None,
    json: bool = False,
    verbose: bool = False,
    app: str = "",
    follow: bool = False,
    n: int = 100,
) -> None:
    """Print an app's container logs (stdout and stderr)."""
    # deferred: paramiko, pydantic, rich load when a command runs, not for `dockyard --help`
    from provision.phases.inspect import log_chunks
    from provision.phases.swarm_apps import swarm_log_chunks

    opts = options(ctx, env, playbook, json, verbose)
    pb = load(opts)
    if not app:
        raise InputError.single("--app NAME is required", pb.source)
    chunks = log_chunks if pb.engine.mode != "swarm" else swarm_log_chunks  # swarm: every task on every node
    try:
        for chunk in chunks(pb, app, lines=n, follow=follow):
            sys.stdout.write(chunk.decode("utf-8", "replace"))
            sys.stdout.flush()
    except KeyboardInterrupt:
        return


def _exec_argv(ctx: Context, cmd: str) -> list[str]:
    """`--cmd "a b"`, or the words after `--`: from the dockyard program's config (any argv it was run with);
    under the `invoke` program, which keeps no such list, from this process's own command line."""
    if cmd:
        return shlex.split(cmd)
    kept = ctx.config.get("dockyard_command_argv")
    if kept is not None:
        return list(kept)
    if "--" in sys.argv:
        return sys.argv[sys.argv.index("--") + 1 :]
    return []


def split_env_words(words: list[str] | None) -> tuple[str | None, list[str]]:
    """`exec`'s `-e/--env` is repeatable: a word with `=` is a variable for the command (`--env KEY=VALUE`, as
    docker exec's), one without is the environment NAME as everywhere else (names never hold `=`)."""
    names = [w for w in words or () if "=" not in w]
    assignments = [w for w in words or () if "=" in w]
    if len(names) > 1:
        raise InputError.single(f"-e/--env: one environment NAME, got {len(names)} ({', '.join(names)}); "
                                "variables for the command are KEY=VALUE")
    return (names[0] if names else None), assignments


@dockyard_task(
    connects=True,
    name="exec",
    help={
        "app": "the app to run the command in",
        "cmd": "the command as one string (or give it after --)",
        "env": "environment NAME (playbooks/NAME.yml); repeat as KEY=VALUE to set a variable for the command",
        "tty": "a terminal for the command (interactive: createsuperuser, a shell); keys are forwarded",
        "task": "engine.mode swarm: the task (replica slot) N to run in (default: the first running one)",
        "node": "engine.mode swarm: a task on this host (its label, e.g. PROJECT-ENV-2)",
    },
    iterable=["env"],
)
def exec_(
    ctx: Context,
    env: list[str] | None = None,
    playbook: str | None = None,
    json: bool = False,
    verbose: bool = False,
    app: str = "",
    cmd: str = "",
    tty: bool = False,
    task: int = 0,
    node: str = "",
) -> None:
    """Run a command in an app's running container (swarm: one of its tasks, on the node that runs it); exits
    with the command's exit code."""
    # deferred: paramiko, pydantic, rich load when a command runs, not for `dockyard --help`
    from provision.exec_tty import parse_env
    from provision.phases.inspect import exec_in_app, exec_tty_in_app
    from provision.phases.swarm_apps import swarm_exec, swarm_exec_tty

    env_name, assignments = split_env_words(env)
    opts = options(ctx, env_name, playbook, json, verbose)
    pb = load(opts)
    try:
        variables = parse_env(assignments)
    except ValueError as exc:
        raise InputError.single(str(exc), pb.source) from None
    argv = _exec_argv(ctx, cmd)
    if not app or not argv:
        raise InputError.single("usage: exec --app NAME [-t] [--env KEY=VALUE ...] -- CMD [ARG ...]", pb.source)
    if pb.engine.mode == "swarm":
        if task and node:
            raise InputError.single("exec: --task N or --node HOST, not both", pb.source)
        run, run_tty = partial(swarm_exec, slot=task, node=node), partial(swarm_exec_tty, slot=task, node=node)
    elif task or node:
        raise InputError.single("exec: --task/--node pick a swarm task (engine.mode: swarm)", pb.source,
                                "engine.mode")
    else:
        run, run_tty = exec_in_app, exec_tty_in_app
    if tty:
        stdin_fd = sys.stdin.fileno() if sys.stdin is not None and not sys.stdin.closed else None
        code = run_tty(pb, app, argv, env=variables, stdin_fd=stdin_fd, stdout=sys.stdout.buffer)
    else:
        code = run(pb, app, argv, env=variables, stdout=sys.stdout.buffer, stderr=sys.stderr.buffer)
    if code:
        raise Exit(code=code)
