"""The deploy lock and the audit log, applied: THE one place a command takes the lock, writes its audit entry and
releases the lock (`holding_lock`), plus the host work of the `lock.*` and `audit` commands.

`deploy`, `up` and `teardown` run their host work inside `holding_lock(pb, remote, request, reporter)`:
- it opens the SSH connection if needed and takes the lock (an atomic `mkdir` on the host). A held lock raises
  `LockHeld` (exit 1, one line naming holder, since when, command and message), or, with `request.wait` > 0,
  polls with back-off until the lock is free or the wait is over;
- at the end (also on failure or Ctrl-C) it appends the command's audit entry and releases the lock, but only
  if the lock still carries this run's token (a lock released by hand and taken by another run stays theirs).
`up` takes the lock once SSH is up, after provisioning (a host that does not exist yet has nowhere to hold it);
`teardown` takes it when the host answers and tears down without it (warning) when it does not.
Check mode (`--check`) takes no lock and writes no entry: it changes nothing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provision import audit, hostlock
from provision.errors import StepFailed
from provision.hostlock import LockRecord

FIRST_POLL = 1.0  # seconds before the first retry of a waiting run; doubled each time ...
MAX_POLL = 15.0  # ... up to this
GONE_TIMEOUT = 10.0  # seconds for the audit entry and release after a teardown removed the host


class LockHeld(StepFailed):
    """Another run (or a person) holds the host's deploy lock."""


@dataclass(frozen=True)
class LockRequest:
    command: str  # deploy, up, teardown, lock.acquire
    wait: float = 0.0  # seconds to wait for a held lock (`--lock-wait`); 0: refuse at once
    message: str = ""
    release: str = ""  # the release being deployed (empty until releases exist)
    by_hand: bool = False  # `lock.acquire`: no process holds it, so it is never stale (pid 0)


@dataclass
class HeldLock:
    """What `holding_lock` yields: the record it holds, and the outcome the command reports for the audit."""

    record: LockRecord
    apps: list[str] = field(default_factory=list)
    releases: list[str] = field(default_factory=list)  # the releases the command deployed or rolled back to
    result: str = "failed"  # until the command says otherwise (an exception leaves it failed)
    exit_code: int = 1
    host_gone: bool = False  # teardown removed the host: its entry and release are tried briefly, quietly

    def finish(self, *, failed: bool, changed: int = 0) -> None:
        self.result = audit.result_of(failed=failed, changed=changed)
        self.exit_code = 1 if failed else 0


@dataclass(frozen=True)
class Identity:
    """Who runs this dockyard, read once per command."""

    who: str
    machine: str
    pid: int
    ci: dict[str, str] | None

    @classmethod
    def here(cls, pb: Any) -> Identity:
        source = getattr(pb, "source", None)
        cwd = str(Path(source).parent) if source else None
        return cls(hostlock.local_actor(cwd), hostlock.machine_name(), os.getpid(), audit.ci_job(os.environ))


def _where(pb: Any, remote: Any) -> tuple[str, str, str]:
    return remote.user, pb.project, pb.environment


# --- the lock over a Remote ------------------------------------------------------------------------------


def try_acquire(pb: Any, remote: Any, record: LockRecord) -> LockRecord | None:
    """Take the lock: None when taken, else the current holder's record (untrusted, parsed)."""
    done = remote.run(hostlock.acquire_argv(*_where(pb, remote)), stdin=record.to_bytes(), check=False)
    if done.exit_code == 0:
        return None
    if done.exit_code == hostlock.EXIT_HELD:
        return hostlock.parse_record(done.stdout)
    raise StepFailed(f"cannot take the deploy lock in {hostlock.lock_dir(*_where(pb, remote))} on "
                     f"{remote.target.label}: exit {done.exit_code} {hostlock.one_line(done.stderr.strip())}")


def acquire(pb: Any, remote: Any, record: LockRecord, *, wait: float = 0.0, reporter: Any = None,
            sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> None:
    """Take the lock, or wait for it up to `wait` seconds (polling with back-off), or raise LockHeld."""
    deadline = clock() + max(0.0, wait)
    pause = FIRST_POLL
    told = False
    while True:
        holder = try_acquire(pb, remote, record)
        if holder is None:
            return
        stale = hostlock.is_stale(holder, machine=hostlock.machine_name())
        left = deadline - clock()
        if left <= 0 or stale:  # a stale lock never frees itself: waiting for it is pointless
            raise LockHeld(hostlock.refusal(holder, pb.environment, stale=stale))
        if not told and reporter is not None:
            reporter.info(f"waiting up to {wait:g}s: the deploy lock of {pb.environment} is {holder.describe()}")
            told = True
        sleep(min(pause, left))
        pause = min(pause * 2, MAX_POLL)


def read_lock(pb: Any, remote: Any) -> LockRecord | None:
    """The holder's record, or None when the lock is free."""
    done = remote.run(hostlock.read_argv(*_where(pb, remote)), check=False)
    if done.exit_code == hostlock.EXIT_ABSENT:
        return None
    if done.exit_code != 0:
        raise StepFailed(f"cannot read the deploy lock on {remote.target.label}: exit {done.exit_code}")
    return hostlock.parse_record(done.stdout)


def release(pb: Any, remote: Any, token: str | None = None, *, timeout: float | None = None) -> str:
    """Remove the lock: "released", "absent" (nobody held it) or, with `token`, "not ours"."""
    done = remote.run(hostlock.release_argv(*_where(pb, remote), token), check=False, timeout=timeout)
    if done.exit_code == 0:
        return "released"
    if done.exit_code == hostlock.EXIT_ABSENT:
        return "absent"
    if done.exit_code == hostlock.EXIT_NOT_OURS:
        return "not ours"
    raise StepFailed(f"cannot release the deploy lock on {remote.target.label}: exit {done.exit_code} "
                     f"{hostlock.one_line(done.stderr.strip())}")


def write_audit(pb: Any, remote: Any, doc: dict[str, Any], *, timeout: float | None = None) -> None:
    remote.run(audit.append_argv(*_where(pb, remote)), stdin=audit.entry_line(doc), timeout=timeout)


def read_audit(pb: Any, remote: Any, count: int) -> list[dict[str, Any]]:
    done = remote.run(audit.tail_argv(*_where(pb, remote), count))
    return audit.parse_entries(done.stdout, count)


def audit_entry(request: LockRequest, me: Identity, *, result: str, exit_code: int, apps: Sequence[str] = (),
                message: str = "", releases: Sequence[str] = ()) -> dict[str, Any]:
    return audit.entry(request.command, who=me.who, machine=me.machine, result=result, exit_code=exit_code,
                       apps=apps, releases=list(releases) or ([request.release] if request.release else []),
                       message=message or request.message, ci=me.ci)


def new_record(request: LockRequest, me: Identity) -> LockRecord:
    return hostlock.new_record(request.command, who=me.who, machine=me.machine,
                               pid=0 if request.by_hand else me.pid, release=request.release,
                               message=request.message)


@contextmanager
def holding_lock(pb: Any, remote: Any, request: LockRequest, reporter: Any, *,
                 identity: Identity | None = None) -> Iterator[HeldLock]:
    """Hold the host's deploy lock for the `with` block; its audit entry and the release happen on the way out."""
    me = identity or Identity.here(pb)
    record = new_record(request, me)
    remote.open()
    acquire(pb, remote, record, wait=request.wait, reporter=reporter)
    held = HeldLock(record, apps=list(getattr(pb, "apps", {}) or ()))
    try:
        yield held
    finally:
        _close(pb, remote, request, me, held, reporter)


def _close(pb: Any, remote: Any, request: LockRequest, me: Identity, held: HeldLock, reporter: Any) -> None:
    """Audit entry, then release: each best-effort (a failure here must not hide the command's own outcome).
    After a teardown that removed the host both are tried briefly and quietly: they usually went with it."""
    gone = held.host_gone
    timeout = GONE_TIMEOUT if gone else None
    try:
        write_audit(pb, remote, audit_entry(request, me, result=held.result, exit_code=held.exit_code,
                                            apps=held.apps, releases=held.releases), timeout=timeout)
    except Exception as exc:  # the connection may be what failed the command
        if not gone:
            reporter.warn(f"could not append to the audit log: {hostlock.one_line(str(exc))}")
    try:
        outcome = release(pb, remote, held.record.token, timeout=timeout)
    except Exception as exc:
        if not gone:
            reporter.warn(f"could not release the deploy lock ({hostlock.one_line(str(exc))}): release it with "
                          f"`{hostlock.release_hint(pb.environment)}`")
        return
    if outcome == "not ours":
        reporter.warn("the deploy lock was released by hand during this run and is now held by another: left alone")


@contextmanager
def teardown_lock(pb: Any, request: LockRequest | None, reporter: Any, *, find: Callable[[Any], Any],
                  remote_for: Callable[[Any, Any], Any]) -> Iterator[HeldLock | None]:
    """The lock for a teardown: taken when the host runs and answers SSH; otherwise None, with a warning."""
    if request is None:
        yield None
        return
    info = find(pb)
    if info is None or info.state != "running" or not info.ssh_address:
        yield None
        return
    remote = remote_for(pb, info)
    try:
        if not _answers(remote, reporter):
            yield None
            return
        with holding_lock(pb, remote, request, reporter) as held:
            yield held
    finally:
        remote.close()


def _answers(remote: Any, reporter: Any) -> bool:
    try:
        remote.open()
    except StepFailed as exc:
        reporter.warn(f"the host does not answer ({hostlock.one_line(str(exc))}): tearing down without the "
                      "deploy lock")
        return False
    return True
