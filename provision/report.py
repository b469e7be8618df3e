"""What the user sees: one line per finished task, --diff, progress spinners, the recap, and --json.

Contract:
- `Reporter(*, json_mode=False, verbose=False, console=None)`:
  - `task(result, *, diff=False, check=False)`: `ok: [host] name`, coloured by status; with `diff` the unified
    diff of each Change's before/after; in check mode (or -v) the steps that would run / ran.
  - `progress(message, *, limit=None)`: a context manager for something running now (provision.progress): its
    own line in one live region on a terminal, heartbeat lines past `heartbeat` seconds otherwise (and with
    --json, on stderr); any number at once, from any thread. The object it yields has `.update(text)`.
  - `close()`: end what still runs (also done by `recap`).
  - `info(message)`, `warn(message)`, `log(line)` (the latter only with -v: build logs and the like).
  - `recap(recaps)`: the PLAY RECAP table per host (ok / changed / failed / skipped, elapsed).
- `print_table(console, title, columns, rows)`: `status` and the like: a rich table on a terminal, tab-separated
  columns when piped (never cut to the console's width).
- `to_json(recaps, extra=None) -> dict`: the document `--json` prints (see `provision.cli.common.emit_json`).
- With --json every human line goes to stderr so stdout holds exactly one JSON document.
Nothing here prints Step.stdin (ops render it as a digest); descriptions, before/after and messages are
secret-free by contract.
"""

from __future__ import annotations

import difflib
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from provision.changes import Change, HostRecap, Status, TaskResult
from provision.ops import render as render_op
from provision.progress import HEARTBEAT, Board, Item

STYLE = {Status.OK: "green", Status.CHANGED: "yellow", Status.FAILED: "bold red", Status.SKIPPED: "cyan"}


def unified_diff(name: str, before: str | None, after: str | None) -> str:
    a = (before or "").splitlines(keepends=True)
    b = (after or "").splitlines(keepends=True)
    lines = difflib.unified_diff(a, b, fromfile=f"{name} (before)" if before is not None else "/dev/null",
                                 tofile=f"{name} (after)" if after is not None else "/dev/null")
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


class _Progress:
    def __init__(self, item: Item) -> None:
        self._item = item

    def update(self, text: str) -> None:
        self._item.update(text)


class Reporter:
    def __init__(self, *, json_mode: bool = False, verbose: bool = False, console: Console | None = None,
                 heartbeat: float = HEARTBEAT, clock: Callable[[], float] = time.monotonic) -> None:
        self.json_mode = json_mode
        self.verbose = verbose
        self.console = console or Console(stderr=json_mode, highlight=False, soft_wrap=True)
        self._lock = threading.RLock()
        self.results: list[TaskResult] = []
        live = not json_mode and self.console.is_terminal and not self.console.is_dumb_terminal
        self.board = Board(self.console, live=live, heartbeat=heartbeat, clock=clock, say=self._heartbeat)

    # lines
    def _print(self, text: str, style: str | None = None) -> None:
        with self._lock:
            self.console.print(text, style=style, highlight=False)

    def _heartbeat(self, line: str) -> None:
        self._print(f"[dim]{escape(line)}[/]")

    def info(self, message: str) -> None:
        self._print(escape(message))

    def warn(self, message: str) -> None:
        self._print(f"[yellow]warning:[/] {escape(message)}")

    def log(self, line: str) -> None:
        if self.verbose:
            self._print(f"  [dim]{escape(line.rstrip())}[/]")

    def task(self, result: TaskResult, *, diff: bool = False, check: bool = False) -> None:
        with self._lock:
            self.results.append(result)
            status = result.status
            label = status.value
            if check and status is Status.CHANGED:
                label = "changed (check)"
            line = f"[{STYLE[status]}]{label}: {escape('[' + result.host + ']')}[/] {escape(result.task)}"
            why = "; ".join(f"{c.action}: {c.reason}" for c in result.changes if c.steps)
            if status is Status.CHANGED and why:
                line += f" [dim]({escape(why)})[/]"
            if status is Status.FAILED and result.message:
                line += f"\n  [red]{escape(result.message)}[/]"
            if self.verbose and result.elapsed >= 0.05:
                line += f" [dim]{result.elapsed:.2f}s[/]"
            self._print(line)
            if status is Status.CHANGED and (check or self.verbose):
                for change in result.changes:
                    for step in change.steps:
                        self._print(f"  [dim]{'would ' if check else ''}{escape(step.description)}[/]")
                        if self.verbose:  # exactly what runs (secret-free)
                            self._print(f"    [dim]$ {escape(render_op(step.op))}[/]")
            if diff and status in (Status.CHANGED, Status.FAILED):
                for change in result.changes:
                    self._diff(change)

    def _diff(self, change: Change) -> None:
        if change.before is None and change.after is None:
            return
        text = unified_diff(change.target, change.before, change.after)
        if not text:
            return
        for line in text.splitlines():
            style = "green" if line.startswith("+") else "red" if line.startswith("-") else \
                "cyan" if line.startswith("@@") else None
            self._print(escape(line), style=style)

    @contextmanager
    def progress(self, message: str, *, limit: float | None = None) -> Iterator[_Progress]:
        item = self.board.start(message, limit=limit)
        try:
            yield _Progress(item)
        finally:
            item.finish()

    def close(self) -> None:
        self.board.close()

    # the end
    def recap(self, recaps: list[HostRecap]) -> None:
        self.close()
        table = Table(title="RECAP", title_justify="left", box=None, pad_edge=False, show_edge=False)
        table.add_column("host")
        for status in Status:
            table.add_column(status.value, justify="right")
        table.add_column("elapsed", justify="right")
        for r in recaps:
            cells = []
            for status in Status:
                n = r.count(status)
                cells.append(f"[{STYLE[status]}]{n}[/]" if n else "0")
            table.add_row(escape(r.host), *cells, f"{r.elapsed:.1f}s")
        with self._lock:
            self.console.print(table)


def print_table(console: Console, title: str, columns: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """On a terminal: a rich table whose long cells fold onto a second line rather than lose their end. Piped
    (or to a file): a header and tab-separated rows, every cell whole, for `cut -f` and `grep` (a rich table
    is cut to the console's width, 80 columns when not a terminal: `0.0.0.0:8082-…`)."""
    if not console.is_terminal:  # straight to the file: rich would expand the tabs
        console.file.writelines("\t".join(cell.replace("\t", " ") for cell in cells) + "\n"
                                for cells in (columns, *rows))
        console.file.flush()
        return
    table = Table(title=title, title_justify="left", box=None, pad_edge=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for cells in rows:
        table.add_row(*(escape(c) for c in cells))
    console.print(table, highlight=False)


def to_json(recaps: list[HostRecap], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    hosts = []
    for r in recaps:
        hosts.append({
            "host": r.host,
            "elapsed": round(r.elapsed, 3),
            **{status.value: r.count(status) for status in Status},
            "tasks": [{"task": t.task, "status": t.status.value, "elapsed": round(t.elapsed, 3),
                       **({"message": t.message} if t.message else {}),
                       **({"data": t.data} if t.data else {}),
                       "changes": [c.to_json() for c in t.changes]} for t in r.results],
        })
    doc: dict[str, Any] = {
        "ok": not any(r.failed for r in recaps),
        "changed": sum(r.count(Status.CHANGED) for r in recaps),
        "failed": sum(r.count(Status.FAILED) for r in recaps),
        "hosts": hosts,
    }
    if extra:
        doc.update(extra)
    return doc
