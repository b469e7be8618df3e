"""The deploy lock by hand, and the audit log.

    dockyard lock.acquire -e ENV -m MESSAGE [--lock-wait DURATION]
    dockyard lock.status  -e ENV [--json]
    dockyard lock.release -e ENV
    dockyard audit        -e ENV [-n N] [--json]

The host work is provision.phases.lock's; here: options, `--lock-wait` parsing (shared with deploy, up and
teardown), printing, `--json`, exit codes.
"""

from __future__ import annotations

from typing import Any

from invoke import Collection
from invoke.context import Context

from provision.cli.common import dockyard_task, emit_json, load, options
from provision.errors import InputError

__all__ = ["audit"]  # the lock.* tasks are a collection: `collection` below

LOCK_WAIT_HELP = ("wait up to DURATION (e.g. 30s, 10m) for the host's deploy lock instead of refusing when "
                  "another run holds it")


def lock_request(pb: Any, command: str, lock_wait: str, message: str = "", *, by_hand: bool = False) -> Any:
    """The LockRequest of a command (InputError, exit 2, for a bad --lock-wait or message)."""
    # deferred: the phases load paramiko-adjacent modules only when a command runs
    from provision.hostlock import check_message
    from provision.phases.lock import LockRequest
    from provision.units import parse_duration

    wait = 0.0
    if lock_wait:
        try:
            wait = parse_duration(lock_wait)
        except ValueError as exc:
            raise InputError.single(f"--lock-wait: {exc}", pb.source) from None
    problem = check_message(message)
    if problem:
        raise InputError.single(f"-m/--message: {problem}", pb.source)
    return LockRequest(command, wait=wait, message=message, by_hand=by_hand)


def _reporter(opts: Any) -> Any:
    # deferred: rich loads when a command runs, not for `dockyard --help`
    from provision.report import Reporter

    return Reporter(json_mode=opts.json, verbose=opts.verbose)


@dockyard_task(connects=True, name="acquire", help={
    "message": "why the lock is held (shown to whoever is refused), e.g. 'database migration, back at 3pm'",
    "lock_wait": LOCK_WAIT_HELP})
def acquire(ctx: Context, env: str | None = None, playbook: str | None = None, json: bool = False,
            verbose: bool = False, message: str = "", lock_wait: str = "") -> None:
    """Take the host's deploy lock by hand: deploy, up and teardown refuse until `lock.release`."""
    # deferred: paramiko loads when a command runs, not for `dockyard --help`
    from provision.phases.host import remote_for
    from provision.phases.lock import Identity, acquire, audit_entry, new_record, write_audit

    opts = options(ctx, env, playbook, json, verbose)
    pb = load(opts)
    if not message.strip():
        raise InputError.single("lock.acquire needs -m MESSAGE: say why deploys must wait", pb.source)
    request = lock_request(pb, "lock.acquire", lock_wait, message, by_hand=True)
    me = Identity.here(pb)
    record = new_record(request, me)
    with remote_for(pb) as remote:
        acquire(pb, remote, record, wait=request.wait, reporter=_reporter(opts))
        write_audit(pb, remote, audit_entry(request, me, result="changed", exit_code=0))
    if opts.json:
        emit_json({"command": "lock.acquire", "environment": pb.environment, "held": True, "holder": record.to_json()})
    else:
        print(f"the deploy lock of {pb.environment} is {record.describe()}")


@dockyard_task(connects=True, name="status")
def status(ctx: Context, env: str | None = None, playbook: str | None = None, json: bool = False,
           verbose: bool = False) -> None:
    """Who holds the host's deploy lock, since when, for what; a stale lock says how to release it."""
    # deferred: paramiko loads when a command runs, not for `dockyard --help`
    from provision import hostlock
    from provision.phases.host import remote_for
    from provision.phases.lock import read_lock

    opts = options(ctx, env, playbook, json, verbose)
    pb = load(opts)
    with remote_for(pb) as remote:
        holder = read_lock(pb, remote)
    stale = holder is not None and hostlock.is_stale(holder, machine=hostlock.machine_name())
    if opts.json:
        emit_json({"command": "lock.status", "environment": pb.environment, "held": holder is not None,
                   "holder": holder.to_json() if holder else None, "stale": stale,
                   "release_with": hostlock.release_hint(pb.environment) if holder else None})
    elif holder is None:
        print(f"the deploy lock of {pb.environment} is free")
    else:
        print(f"the deploy lock of {pb.environment} is {holder.describe()}")
        if stale:
            print(f"stale: that process is gone from this machine; release it with "
                  f"`{hostlock.release_hint(pb.environment)}`")


@dockyard_task(connects=True, name="release")
def release(ctx: Context, env: str | None = None, playbook: str | None = None, json: bool = False,
            verbose: bool = False) -> None:
    """Release the host's deploy lock, whoever holds it (a running deploy keeps running, unlocked)."""
    # deferred: paramiko loads when a command runs, not for `dockyard --help`
    from provision.phases.host import remote_for
    from provision.phases.lock import Identity, LockRequest, audit_entry, read_lock, write_audit
    from provision.phases.lock import release as release_lock

    opts = options(ctx, env, playbook, json, verbose)
    pb = load(opts)
    me = Identity.here(pb)
    with remote_for(pb) as remote:
        holder = read_lock(pb, remote)
        outcome = release_lock(pb, remote)
        if outcome == "released":
            was = holder.describe() if holder is not None else "held"
            write_audit(pb, remote, audit_entry(LockRequest("lock.release"), me, result="changed", exit_code=0,
                                                message=f"released: {was}"))
    if opts.json:
        emit_json({"command": "lock.release", "environment": pb.environment, "released": outcome == "released",
                   "holder": holder.to_json() if holder else None})
    elif outcome == "released":
        print(f"released the deploy lock of {pb.environment} ({holder.describe() if holder else 'held'})")
    else:
        print(f"the deploy lock of {pb.environment} was not held")


@dockyard_task(connects=True, help={"n": "how many entries from the end (default 20, at most 1000)"})
def audit(ctx: Context, env: str | None = None, playbook: str | None = None, json: bool = False,
          verbose: bool = False, n: int = 20) -> None:
    """The host's audit log: who deployed, tore down or locked what, when, with what result (newest last)."""
    # deferred: paramiko loads when a command runs, not for `dockyard --help`
    from provision.audit import MAX_ENTRIES, entry_text
    from provision.phases.host import remote_for
    from provision.phases.lock import read_audit

    opts = options(ctx, env, playbook, json, verbose)
    pb = load(opts)
    if not 1 <= n <= MAX_ENTRIES:
        raise InputError.single(f"-n must be between 1 and {MAX_ENTRIES}", pb.source)
    with remote_for(pb) as remote:
        entries = read_audit(pb, remote, n)
    if opts.json:
        emit_json({"command": "audit", "environment": pb.environment, "entries": entries})
        return
    if not entries:
        print(f"the audit log of {pb.environment} is empty")
    for doc in entries:
        print(entry_text(doc))


collection = Collection("lock", acquire, status, release)
