"""The execution model of every dockyard command (Ansible's, minus the round trips).

A task is a name plus the list of Changes a pure plan produced for it:
- no changes → `ok`;
- changes → each Step's op (provision.ops) is applied in order by the executor for its type
  (`provision.exec_ssh.execute(op, ctx)`: `ctx.execute(op)`, or the SSH executor on a bare Remote) → `changed`;
  in check mode the steps are only reported (the ONE check branch);
- an exception → `failed`: the host stops, later tasks on it are reported `skipped`.

Contract:
- `Runner(host, ctx, *, check, diff, reporter)`; `ctx` is what steps run against (usually
  `provision.remote.Remote`); `reporter` is a `provision.report.Reporter` (or anything with `.task(...)`).
- `run_task(name, changes, *, data=None) -> TaskResult`.
- `fail(name, error) -> TaskResult`: record a failure that happened outside a step (e.g. gathering facts).
- `guard(name)`: a context manager turning any exception raised inside into `fail(name, ...)`.
- Handlers: `add_handler(name, factory)` where `factory() -> list[Change]` is called only when the handler
  runs (so it plans from fresh facts); a Change's `notify` names are collected when it is applied (or would
  be, in check mode); `flush_handlers()` runs each notified handler once, in registration order.
- `failed` (bool), `recap -> HostRecap`.
- Transient SSH faults: a step that fails because the connection was lost (`provision.channels.
  is_connection_loss`: a dropped connection, a channel the server kept refusing) is retried ONCE, after
  `Remote.recover()` reconnected (once for all the threads that saw the same loss; bounded by the connect
  timeouts); it says so through the reporter. Every step dockyard plans converges when applied again (builds,
  uploads, `docker load`, a roll-out removes the half-made container of an interrupted one first), so any
  step may be retried. A second loss fails the step with one line naming the step and the host.
Thread-safe: deploy may call `run_task` from several threads for one host.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from provision.changes import Change, HostRecap, Status, Step, TaskResult
from provision.channels import ConnectionLost, is_connection_loss
from provision.errors import DockyardError
from provision.exec_ssh import execute

MESSAGE_LIMIT = 1200


def _message(step: Step | None, exc: BaseException) -> str:
    """One readable line: which step, and the error (StepFailed already carries the stderr tail)."""
    detail = str(exc).strip() if isinstance(exc, DockyardError) else f"{type(exc).__name__}: {exc}".strip()
    text = f"{step.description}: {detail}" if step is not None else detail
    return text if len(text) <= MESSAGE_LIMIT else text[:MESSAGE_LIMIT] + "…"


def _one_line(exc: BaseException) -> str:
    text = str(exc) if isinstance(exc, DockyardError) else f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())


def apply_step(step: Step, ctx: Any) -> None:
    execute(step.op, ctx)


class Runner:
    def __init__(self, host: str, ctx: Any, *, check: bool = False, diff: bool = False,
                 reporter: Any = None) -> None:
        self.host = host
        self.ctx = ctx
        self.check = check
        self.diff = diff
        self.reporter = reporter
        self.results: list[TaskResult] = []
        self._handlers: dict[str, Callable[[], list[Change]]] = {}
        self._notified: set[str] = set()
        self._failed = False
        self._lock = threading.RLock()
        self._started = time.monotonic()
        remote = getattr(ctx, "remote", ctx)  # deploy's DeployContext carries the Remote; setup's ctx is one
        self._remote = remote if hasattr(remote, "recover") else None
        if self._remote is not None and hasattr(reporter, "warn"):
            self._remote.warn = reporter.warn  # e.g. "the server refused a 9th session" (once)

    @property
    def failed(self) -> bool:
        return self._failed

    # tasks
    def run_task(self, name: str, changes: list[Change], *, data: dict[str, Any] | None = None) -> TaskResult:
        started = time.monotonic()
        changes = [c for c in changes if c.steps]
        merged: dict[str, Any] = {}
        for c in changes:
            merged.update(c.data)
        merged.update(data or {})
        if self._failed:
            return self._record(TaskResult(self.host, name, Status.SKIPPED, changes, "an earlier task failed",
                                           0.0, merged))
        if not changes:
            return self._record(TaskResult(self.host, name, Status.OK, [], "", time.monotonic() - started,
                                           merged))
        if self.check:
            self._notify(changes)
            return self._record(TaskResult(self.host, name, Status.CHANGED, changes, "",
                                           time.monotonic() - started, merged))
        step: Step | None = None
        try:
            for change in changes:
                for step in change.steps:
                    with self._showing(name, step):
                        self._apply(step)
                self._notify([change])
        except Exception as exc:  # any failure stops this host; the message names the step
            with self._lock:
                self._failed = True
            return self._record(TaskResult(self.host, name, Status.FAILED, changes, _message(step, exc),
                                           time.monotonic() - started, merged))
        return self._record(TaskResult(self.host, name, Status.CHANGED, changes, "",
                                       time.monotonic() - started, merged))

    @contextmanager
    def _showing(self, task: str, step: Step) -> Iterator[None]:
        """A live line (heartbeats when piped) for a remote command step, e.g. the engine install's apt run.
        Effect steps (builds, health waits, shipping) show their own, finer progress."""
        progress = getattr(self.reporter, "progress", None)
        if step.argv is None or progress is None:
            yield
            return
        with progress(f"[{self.host}] {task}: {step.description}"):
            yield

    def _apply(self, step: Step) -> None:
        """apply_step, retried once after a reconnect when the connection was lost (see the docstring)."""
        remote = self._remote
        generation = getattr(remote, "generation", 0)
        try:
            apply_step(step, self.ctx)
            return
        except Exception as exc:
            if remote is None or not is_connection_loss(exc):
                raise
            first = _one_line(exc)
        where = f"ssh {remote.target.label}"
        try:
            reconnected = remote.recover(generation)
        except Exception as exc:
            raise ConnectionLost(f"the connection to the host was lost ({first}) and reconnecting failed: "
                                 f"{_one_line(exc)}") from None
        if reconnected:
            self._say(f"{where}: the connection was lost during {step.description!r}; reconnected, "
                      "retrying the step once")
        try:
            apply_step(step, self.ctx)
        except Exception as exc:
            if is_connection_loss(exc):
                raise ConnectionLost(f"the connection to the host was lost again after a reconnect ({where}): "
                                     f"{_one_line(exc)}") from None
            raise

    def _say(self, message: str) -> None:
        if self.reporter is not None and hasattr(self.reporter, "warn"):
            self.reporter.warn(message)

    def fail(self, name: str, error: BaseException | str) -> TaskResult:
        with self._lock:
            self._failed = True
        message = error if isinstance(error, str) else _message(None, error)
        return self._record(TaskResult(self.host, name, Status.FAILED, [], message))

    @contextmanager
    def guard(self, name: str) -> Iterator[None]:
        """`with runner.guard("gather facts"): facts = ...` — an exception fails the host instead of raising.

        The caller checks `runner.failed` afterwards (a failed guard leaves its variables unset)."""
        try:
            yield
        except Exception as exc:
            self.fail(name, exc)

    # handlers
    def add_handler(self, name: str, factory: Callable[[], list[Change]]) -> None:
        self._handlers[name] = factory

    def _notify(self, changes: list[Change]) -> None:
        with self._lock:
            for change in changes:
                for name in change.notify:
                    if name not in self._handlers:
                        raise KeyError(f"no handler named {name!r} (add_handler before running tasks)")
                    self._notified.add(name)

    @property
    def notified(self) -> set[str]:
        return set(self._notified)

    def flush_handlers(self) -> list[TaskResult]:
        out = []
        for name, factory in self._handlers.items():
            with self._lock:
                if name not in self._notified:
                    continue
                self._notified.discard(name)
            if self._failed:
                out.append(self.run_task(f"handler: {name}", []))
                continue
            try:
                changes = factory()
            except Exception as exc:
                out.append(self.fail(f"handler: {name}", exc))
                continue
            out.append(self.run_task(f"handler: {name}", changes))
        return out

    # results
    def _record(self, result: TaskResult) -> TaskResult:
        with self._lock:
            self.results.append(result)
        if self.reporter is not None:
            self.reporter.task(result, diff=self.diff, check=self.check)
        return result

    @property
    def recap(self) -> HostRecap:
        with self._lock:
            return HostRecap(self.host, list(self.results), time.monotonic() - self._started)
