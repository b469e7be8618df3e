"""What is running NOW: one line per item (engine install, an app's build step, image shipping, a health wait).

On a terminal the items share ONE rich `Live` region on the reporter's console: each item has its own line
(spinner, text, elapsed), parallel apps included; finished lines printed with `console.print` appear above
the region (rich moves them there). Without a terminal (CI, piped) or with --json nothing is redrawn:
`… still running: <text> 20s` is printed for an item running past `heartbeat` seconds, at most every
`heartbeat` seconds per item, on the reporter's console (stderr with --json, so stdout keeps one JSON
document).

One background thread per board does the redrawing (terminal) or the heartbeats (otherwise). It and the
Live region exist only while at least one item runs: the last `finish()` stops them and joins the thread,
so a run leaves no thread behind whether or not it ends with a recap.

Item texts are shown as given: callers pass secret-free text (build lines go through the app's redactor).

    board = Board(console, live=True, heartbeat=10.0, clock=time.monotonic)
    item = board.start("web: building …", limit=None)   # limit: shows "4s / 60s" instead of "4s"
    item.update("web: Step 3/9 : RUN pip install …")
    item.finish()
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

HEARTBEAT = 10.0  # seconds an item runs before its first heartbeat line, and between two of them
REFRESH_PER_SECOND = 4
TEXT_LIMIT = 200  # characters of an item's text kept (one screen line is plenty)


def human_bytes(n: float) -> str:
    if n < 1000:
        return f"{n:.0f} B"
    for unit in ("KB", "MB"):
        n /= 1000
        if n < 1000:
            return f"{n:.1f} {unit}"
    return f"{n / 1000:.1f} GB"


class Item:
    """One running thing. `update` and `finish` may be called from any thread; `finish` twice is harmless."""

    def __init__(self, board: Board, key: int, text: str, limit: float | None, started: float) -> None:
        self._board = board
        self.key = key
        self.text = text[:TEXT_LIMIT]
        self.limit = limit
        self.started = started
        self.last_beat = started
        self.spinner = Spinner("dots", style="cyan")

    def update(self, text: str) -> None:
        self.text = text[:TEXT_LIMIT]  # one str assignment: atomic; the next refresh shows it

    def elapsed_text(self, now: float) -> str:
        elapsed = f"{int(max(0.0, now - self.started))}s"
        return f"{elapsed} / {self.limit:g}s" if self.limit is not None else elapsed

    def finish(self) -> None:
        self._board.finish(self)


class Board:
    def __init__(self, console: Console, *, live: bool, heartbeat: float = HEARTBEAT,
                 clock: Callable[[], float] = time.monotonic, say: Callable[[str], None] | None = None) -> None:
        self.console = console
        self.say = say or self._say  # the reporter's, so a heartbeat never splits its multi-line output
        self.live = live
        self.heartbeat = heartbeat
        self.clock = clock
        self._items: dict[int, Item] = {}
        self._keys = itertools.count()
        self._lock = threading.Lock()
        self._live_lock = threading.Lock()
        self._live: Live | None = None
        self._thread: threading.Thread | None = None
        self._stop: threading.Event | None = None

    # items
    def start(self, text: str, *, limit: float | None = None) -> Item:
        # Lock order: _live_lock → (rich's Live lock) → _lock. Rendering takes only _lock, so neither Live's
        # refresh thread nor a refresh here can deadlock; _live_lock keeps one Live started at a time.
        with self._live_lock:
            with self._lock:
                item = Item(self, next(self._keys), text, limit, self.clock())
                self._items[item.key] = item
                if self._thread is None:
                    self._stop = threading.Event()
                    self._thread = threading.Thread(target=self._tick_until, args=(self._stop,),
                                                    name="dockyard-progress", daemon=True)
                    self._thread.start()
            if self.live:
                if self._live is None:  # our thread refreshes it: rich's own refresh thread is not joined on stop
                    self._live = Live(_Region(self), console=self.console, auto_refresh=False, transient=True,
                                      redirect_stdout=False, redirect_stderr=False)
                    self._live.start(refresh=True)
                else:
                    self._live.refresh()
        return item

    def finish(self, item: Item) -> None:
        thread = None
        with self._live_lock:
            with self._lock:
                if self._items.pop(item.key, None) is None:
                    return
                idle = not self._items
                if idle and self._thread is not None:
                    assert self._stop is not None
                    self._stop.set()
                    thread, self._thread, self._stop = self._thread, None, None
            if self._live is not None:  # (the thread is stopped above; it refreshes only under _live_lock)
                if idle:
                    self._live.stop()  # transient: the region is erased; the lines printed above it stay
                    self._live = None
                else:
                    self._live.refresh()
        if thread is not None:
            thread.join(5.0)  # it wakes at once (its Event is set); bounded anyway

    def running(self) -> list[Item]:
        with self._lock:
            return list(self._items.values())

    def close(self) -> None:
        """Finish whatever still runs (an interrupted run): stops the Live region and the heartbeat thread."""
        for item in self.running():
            item.finish()

    # the terminal's region
    def render(self) -> RenderableType:
        now = self.clock()
        items = self.running()
        if not items:
            return Group()
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True)
        grid.add_column(no_wrap=True, overflow="ellipsis", ratio=1)
        grid.add_column(no_wrap=True, justify="right", style="dim")
        for item in items:
            grid.add_row(item.spinner, Text(item.text, no_wrap=True, overflow="ellipsis"), item.elapsed_text(now))
        return grid

    # without a terminal
    def beat(self) -> list[str]:
        """Print (and return) a heartbeat for every item past the threshold whose last one is that old."""
        now = self.clock()
        lines = []
        for item in self.running():
            if now - item.started >= self.heartbeat and now - item.last_beat >= self.heartbeat:
                item.last_beat = now
                lines.append(f"… still running: {item.text} {item.elapsed_text(now)}")
        for line in lines:
            self.say(line)
        return lines

    def _say(self, line: str) -> None:
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    # the one background thread (while items run): redraws the live region, or prints heartbeats
    def _tick_until(self, stop: threading.Event) -> None:
        tick = 1 / REFRESH_PER_SECOND if self.live else max(0.01, min(1.0, self.heartbeat / 4))
        while not stop.wait(tick):
            if self.live:
                with self._live_lock:
                    if self._live is not None:
                        self._live.refresh()
            else:
                self.beat()


class _Region:
    """What the Live region draws: the board as it is at each refresh (so elapsed times tick)."""

    def __init__(self, board: Board) -> None:
        self.board = board

    def __rich__(self) -> RenderableType:
        return self.board.render()
