"""How many SSH session channels dockyard keeps open at once on ONE connection.

OpenSSH's sshd allows `MaxSessions` (10 by default) session channels per connection; one more is refused
("open failed: Connect failed"). Everything dockyard does on a host opens such a channel: each `run`, an SFTP
upload, a `docker system dial-stdio` (Engine API reads, the Docker SDK's HTTP connections), a `docker load`.
So every channel is opened through `Remote.open_channel()`, which first takes a slot of this budget.

- `ChannelBudget(limit)`: `acquire(timeout)` WAITS for a free slot (bounded: `StepFailed` only after
  `timeout`); before waiting it asks the reclaimers (`add_reclaimer`, e.g. the Docker SDK's pool of idle
  dial-stdio connections) to give back what they hold idle, so idle channels never starve a waiter.
- `Slot.release()` is idempotent. `reset()` (a new SSH connection) forgets every slot of the old one: a
  late release of an old slot does not free a slot of the new connection.
- `Slot.opened()` marks its channel open; `refused()`: the server refused a channel while `open` channels were
  open (not counting ones still being opened); the limit drops to that (min 1).
- `ChannelLease`: an open channel plus its slot; closing it closes the channel and releases the slot, once.
- `ConnectionLost`: the SSH connection dropped (or refused a channel for good) in the middle of an operation;
  the runner reconnects once and retries the step (`is_connection_loss` also recognises the Docker SDK's /
  requests' / paramiko's ways of saying so).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

import paramiko

from provision.errors import StepFailed

DEFAULT_MAX_SESSIONS = 8  # below OpenSSH's default MaxSessions 10: room for the user's own sessions
DEFAULT_WAIT = 900.0  # seconds a channel request may wait for a free slot (a long build holds one meanwhile)
POLL = 0.5  # seconds between reclaim attempts while waiting


class ConnectionLost(StepFailed):
    """The SSH connection (or a channel the server would not open) failed mid-operation: worth a reconnect."""


_LOSS_NAMES = {"ConnectionLost", "ProtocolError", "ConnectionError", "ChunkedEncodingError", "SSHException",
               "EOFError", "ConnectionResetError", "BrokenPipeError"}


def is_connection_loss(exc: BaseException) -> bool:
    """Whether `exc` says the connection to the host went away (not: the host answered with an error)."""
    if isinstance(exc, ConnectionLost):
        return True
    if isinstance(exc, StepFailed):
        return False
    return bool({cls.__name__ for cls in type(exc).__mro__} & _LOSS_NAMES)


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


class Slot:
    """One counted channel; `release()` gives it back exactly once."""

    def __init__(self, budget: ChannelBudget, generation: int) -> None:
        self._budget = budget
        self._generation = generation
        self._released = False
        self._opened = False
        self._lock = threading.Lock()

    @property
    def released(self) -> bool:
        return self._released

    def opened(self) -> None:
        """Its channel is open now (until then the slot is only reserved)."""
        with self._lock:
            if not self._released and not self._opened:
                self._opened = True
                self._budget._count_open(self._generation, +1)

    def release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
            opened = self._opened
        if opened:
            self._budget._count_open(self._generation, -1)
        self._budget._give_back(self._generation)


class ChannelBudget:
    def __init__(self, limit: int = DEFAULT_MAX_SESSIONS, *, name: str = "ssh",
                 clock: Callable[[], float] = time.monotonic) -> None:
        if limit < 1:
            raise ValueError("a channel budget is at least 1")
        self.name = name
        self.limit = limit
        self.in_use = 0  # slots taken (channels open or being opened)
        self.open = 0  # of which the channel is open
        self.peak = 0  # the most slots held at once (tests and bench read it)
        self.generation = 0
        self._clock = clock
        self._cond = threading.Condition(threading.Lock())
        self._reclaimers: list[Callable[[], int]] = []
        self._told = False

    def add_reclaimer(self, reclaim: Callable[[], int]) -> None:
        """`reclaim()` closes channels held idle (releasing their slots) and returns how many it closed."""
        with self._cond:
            self._reclaimers.append(reclaim)

    def remove_reclaimer(self, reclaim: Callable[[], int]) -> None:
        with self._cond, contextlib.suppress(ValueError):
            self._reclaimers.remove(reclaim)

    def acquire(self, timeout: float = DEFAULT_WAIT, what: str = "a session") -> Slot:
        deadline = self._clock() + timeout
        while True:
            with self._cond:
                if self.in_use < self.limit:
                    self.in_use += 1
                    self.peak = max(self.peak, self.in_use)
                    return Slot(self, self.generation)
                reclaimers = list(self._reclaimers)
                remaining = deadline - self._clock()
            if remaining <= 0:
                raise StepFailed(f"{self.name}: no free SSH channel for {what} within {timeout:g}s "
                                 f"({self.limit} in use)")
            freed = 0
            for reclaim in reclaimers:  # outside the lock: reclaiming releases slots
                freed += reclaim()
            if freed:
                continue
            with self._cond:
                if self.in_use >= self.limit:
                    self._cond.wait(min(POLL, max(0.0, remaining)))

    def _give_back(self, generation: int) -> None:
        with self._cond:
            if generation != self.generation:  # a slot of a connection that is gone
                return
            self.in_use -= 1
            self._cond.notify()

    def _count_open(self, generation: int, delta: int) -> None:
        with self._cond:
            if generation == self.generation:
                self.open += delta

    def reset(self) -> None:
        """A new connection: no channel of the old one counts any more (the limit, learnt, stays)."""
        with self._cond:
            self.generation += 1
            self.in_use = 0
            self.open = 0
            self._cond.notify_all()

    def refused(self, others: int | None = None) -> str | None:
        """The server refused a channel while `others` (default: the ones open now) were open: use at most
        that many (min 1) from now on. Returns the warning to show, the first time only."""
        with self._cond:
            others = self.open if others is None else others
            lowered = max(1, others)
            if lowered >= self.limit:
                return None
            self.limit = lowered
            if self._told:
                return None
            self._told = True
            return (f"{self.name}: the server refused a {ordinal(others + 1)} session; "
                    f"using at most {self.limit} at once")


class ChannelLease:
    """An open channel and the slot it holds; `close()` (or leaving the `with`) closes both, once."""

    def __init__(self, channel: Any, slot: Slot) -> None:
        self.channel = channel
        self.slot = slot

    def __enter__(self) -> ChannelLease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self.slot.released

    def close(self) -> None:
        if self.slot.released:
            return
        try:
            with contextlib.suppress(Exception):
                self.channel.close()
        finally:
            self.slot.release()


def drain(read: Any, sink: list[bytes], quiet: bool = False) -> None:
    """Read a channel stream to its end into `sink` (`quiet`: a reader thread, whose caller reports errors)."""
    while True:
        try:
            chunk = read(65536)
        except (TimeoutError, OSError, paramiko.SSHException):
            if quiet:  # a reader thread: the main thread reports the timeout / lost connection
                return
            raise
        if not chunk:
            return
        sink.append(chunk)


def feed(chan: Any, data: bytes) -> None:
    """Write `data` to a channel's stdin, then close it."""
    try:
        view = memoryview(data)
        for start in range(0, len(view), 32768):
            chan.sendall(view[start:start + 32768])
    except (OSError, paramiko.SSHException):
        pass  # the command exited without reading everything; its exit code says what happened
    finally:
        with contextlib.suppress(OSError, paramiko.SSHException):
            chan.shutdown_write()
