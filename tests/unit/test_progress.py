"""Live progress on a terminal, heartbeats without one, and tables that survive a pipe (no engine, no SSH)."""

from __future__ import annotations

import contextlib
import io
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from provision.appops import DeployContext, _build
from provision.changes import Change, Status, Step, TaskResult
from provision.progress import Board, human_bytes
from provision.report import Reporter, print_table
from provision.ship import stream_load

pytestmark = pytest.mark.unit

WAIT = 3.0  # upper bound of every wait below (they end as soon as the awaited thing happens)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def shown(renderable: Any, width: int = 100) -> str:
    """What a renderable looks like as plain text."""
    buf = io.StringIO()
    Console(file=buf, width=width, color_system=None, force_terminal=False).print(renderable)
    return buf.getvalue()


def changed(task: str) -> TaskResult:
    return TaskResult("h", task, Status.CHANGED, [Change("app:x", "create", "absent", (Step("x", argv=("x",)),))])


def until(predicate: Any) -> bool:
    """Poll `predicate` every 20 ms for at most WAIT seconds."""
    for _ in range(int(WAIT / 0.02)):
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def progress_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "dockyard-progress"]


# --- on a terminal -----------------------------------------------------------------------------------------


def test_parallel_items_each_have_a_live_line_and_a_finished_one_leaves_it_for_its_result_line() -> None:
    buf = io.StringIO()
    clock = FakeClock()
    rep = Reporter(console=Console(file=buf, force_terminal=True, width=100, color_system=None), clock=clock)
    assert rep.board.live
    started = {name: threading.Event() for name in ("web", "api")}
    release = {name: threading.Event() for name in ("web", "api")}

    def app(name: str, text: str) -> None:
        with DeployContext(remote=None, reporter=rep).progress(f"{name}: building") as p:
            p.update(text)
            started[name].set()
            assert release[name].wait(WAIT)
        rep.task(changed(f"app {name}: image"))

    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(app, "web", "web: Step 3/9 : RUN pip install -r requirements.txt"),
                   pool.submit(app, "api", "api: Step 1/4 : FROM python:3.12-slim")]
        assert all(e.wait(WAIT) for e in started.values())
        clock.now += 7
        region = shown(rep.board.render())
        assert "web: Step 3/9 : RUN pip install -r requirements.txt" in region
        assert "api: Step 1/4 : FROM python:3.12-slim" in region
        assert len(region.strip().splitlines()) == 2 and region.count("7s") == 2

        release["web"].set()
        futures[0].result(WAIT)
        region = shown(rep.board.render())
        assert "web:" not in region and "api: Step 1/4" in region
        assert "changed: [h] app web: image (create: absent)" in buf.getvalue()
        assert "\x1b[" in buf.getvalue()  # redrawn in place: cursor movements, not plain lines

        release["api"].set()
        futures[1].result(WAIT)
    assert "changed: [h] app api: image" in buf.getvalue()
    assert rep.board.running() == [] and rep.board._live is None
    assert until(lambda: not progress_threads())


def test_live_line_shows_elapsed_against_the_limit() -> None:
    clock = FakeClock()
    rep = Reporter(console=Console(file=io.StringIO(), force_terminal=True, width=100), clock=clock)
    with rep.progress("web: waiting for the health check", limit=60):
        clock.now += 4.7
        assert "web: waiting for the health check 4s / 60s" in " ".join(shown(rep.board.render()).split())


def test_a_long_item_text_stays_on_one_line() -> None:
    rep = Reporter(console=Console(file=io.StringIO(), force_terminal=True, width=60))
    with rep.progress("web: Step 2/9 : RUN " + "x" * 300):
        assert len(shown(rep.board.render(), width=60).strip().splitlines()) == 1


# --- without a terminal ------------------------------------------------------------------------------------


def test_heartbeats_repeat_at_most_every_threshold_and_stop_with_the_item() -> None:
    clock = FakeClock()
    board = Board(Console(file=io.StringIO(), width=100, force_terminal=False), live=False, heartbeat=10,
                  clock=clock)
    item = board.start("app web: build")
    item.update("web: Step 4/9 : RUN make")
    try:
        clock.now += 9.9
        assert board.beat() == []
        clock.now += 10.1
        assert board.beat() == ["… still running: web: Step 4/9 : RUN make 20s"]
        clock.now += 5
        assert board.beat() == []  # the last one was 5 s ago
        clock.now += 5
        assert board.beat() == ["… still running: web: Step 4/9 : RUN make 30s"]
    finally:
        item.finish()
    clock.now += 60
    assert board.beat() == []


def test_piped_output_has_heartbeats_for_a_long_item_only_and_no_redrawing() -> None:
    buf = io.StringIO()
    rep = Reporter(console=Console(file=buf, width=100, force_terminal=False), heartbeat=0.05)
    assert not rep.board.live
    with rep.progress("quick: building"):
        pass
    with rep.progress("slow: building") as p:
        p.update("slow: Step 2/3 : RUN sleep 5")
        assert until(lambda: "still running: slow: Step 2/3 : RUN sleep 5" in buf.getvalue())
    rep.task(changed("app slow: image"))
    time.sleep(0.2)  # four heartbeat periods: a finished item must not get one
    out = buf.getvalue()
    assert "quick" not in out
    assert out.rstrip().endswith("changed: [h] app slow: image (create: absent)")
    assert "\x1b" not in out
    assert until(lambda: not progress_threads())


def test_json_mode_keeps_stdout_for_the_document(capsys: pytest.CaptureFixture[str]) -> None:
    rep = Reporter(json_mode=True, heartbeat=0.05)
    with rep.progress("web: building") as p:
        p.update("web: Step 1/2 : FROM scratch")
        assert until(lambda: "still running: web: Step 1/2" in capsys.readouterr().err)
    rep.task(changed("app web: image"))
    rep.recap([])
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "changed: [h] app web: image" in captured.err


def test_close_ends_items_left_running() -> None:
    rep = Reporter(console=Console(file=io.StringIO(), force_terminal=False), heartbeat=0.05)
    rep.board.start("interrupted: building")
    assert progress_threads()
    rep.close()
    assert rep.board.running() == []
    assert until(lambda: not progress_threads())


# --- what feeds the items ----------------------------------------------------------------------------------


class RecordingReporter:
    def __init__(self) -> None:
        self.texts: list[str] = []

    @contextlib.contextmanager
    def progress(self, message: str, *, limit: float | None = None) -> Iterator[Any]:
        self.texts.append(message)
        texts = self.texts

        class P:
            def update(self, text: str) -> None:
                texts.append(text)

        yield P()

    def log(self, line: str) -> None:
        self.texts.append(line)


class FakeContext:
    content_hash = "abc"
    dockerfile_path = "Dockerfile"
    build_args: dict[str, str] = {}

    @contextlib.contextmanager
    def tar(self) -> Iterator[io.BytesIO]:
        yield io.BytesIO(b"")


class FakeApi:
    def build(self, **_: Any) -> Iterator[dict[str, Any]]:
        yield {"stream": "Step 1/2 : FROM python:3.12\n"}
        yield {"stream": "Step 2/2 : RUN curl -H 'token: s3cr3t-value' https://example.invalid\n"}
        yield {"aux": {"ID": "sha256:feed"}}


def test_build_progress_shows_each_step_with_secrets_redacted() -> None:
    rep = RecordingReporter()
    ctx = DeployContext(remote=None, reporter=rep)

    def redact(text: str) -> str:
        return text.replace("s3cr3t-value", "***")

    image = _build(ctx, FakeApi(), app="web", context=FakeContext(), tag="shop/web:abc", labels={},  # type: ignore[arg-type]
                   redact=redact)
    assert image == "sha256:feed"
    assert "web: Step 1/2 : FROM python:3.12" in rep.texts
    assert "web: Step 2/2 : RUN curl -H 'token: ***' https://example.invalid" in rep.texts
    assert not any("s3cr3t" in t for t in rep.texts)


class FakeChannel:
    def __init__(self) -> None:
        self.received = b""

    def exec_command(self, command: str) -> None:
        pass

    def recv(self, _n: int) -> bytes:
        return b""

    recv_stderr = recv

    def sendall(self, data: Any) -> None:
        self.received += bytes(data)

    def shutdown_write(self) -> None:
        pass

    def recv_exit_status(self) -> int:
        return 0

    def close(self) -> None:
        pass

    def get_transport(self) -> Any:
        return None


def test_stream_load_reports_bytes_sent_after_each_chunk() -> None:
    chan = FakeChannel()

    class Remote:
        user = "deploy"
        target = type("Target", (), {"connect_timeout": 5, "label": "deploy@host"})()

        @contextlib.contextmanager
        def open_channel(self, what: str) -> Iterator[Any]:
            yield type("Lease", (), {"channel": chan})()

    seen: list[int] = []
    assert stream_load(Remote(), [b"abc", b"defg"], on_sent=seen.append) == 7
    assert seen == [3, 7] and chan.received == b"abcdefg"


def test_human_bytes() -> None:
    assert [human_bytes(n) for n in (512, 1_500_000, 3_200_000_000)] == ["512 B", "1.5 MB", "3.2 GB"]


# --- status tables -----------------------------------------------------------------------------------------

COLUMNS = ("app", "version", "state", "health", "ports", "started", "image")
ROW = ["web", "0123456789ab", "running", "healthy", "0.0.0.0:8082->8080, 127.0.0.1:8443->8443",
       "2026-11-30 15:49:53", "197.0MB"]


def test_piped_table_keeps_every_cell_whole() -> None:
    buf = io.StringIO()
    print_table(Console(file=buf, width=80, force_terminal=False), "shop/staging", COLUMNS, [ROW])
    lines = buf.getvalue().splitlines()
    assert lines == ["\t".join(COLUMNS), "\t".join(ROW)]


def test_terminal_table_folds_long_cells_instead_of_cutting_them() -> None:
    buf = io.StringIO()
    print_table(Console(file=buf, width=80, force_terminal=True, color_system=None), "shop/staging", COLUMNS,
                [ROW])
    out = buf.getvalue()
    assert "…" not in out and "shop/staging" in out and "0123456789ab" in out


def test_status_command_piped_and_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from invoke.context import Context

    import provision.cli.deploy as cli_deploy
    import provision.deploy as core
    import provision.phases.inspect as phase

    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "Dockerfile").write_text("FROM scratch\n")
    playbook = tmp_path / "staging.yml"
    playbook.write_text("project: shop\nprovider: existing\nhost: {address: 198.51.100.10}\n"
                        "ssh: {user: deploy, key_file: id_test}\n"
                        "apps:\n  web: {dockerfile: Dockerfile, context: web, port: 8080, publish: 8082}\n")
    row = core.AppStatus("web", "shop-staging-web", "0123456789ab", "ba9876543210", "running", "healthy",
                         "0.0.0.0:8082->8080, 127.0.0.1:8443->8443", "2026-11-30 15:49:53", 197_000_000)
    monkeypatch.setattr(phase, "remote_for", lambda pb, host=None: contextlib.nullcontext(None))
    monkeypatch.setattr(phase, "app_status", lambda pb, remote: [row])

    cli_deploy.status(Context(), playbook=str(playbook))
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split("\t") == ["app", "version", "state", "health", "ports", "domains", "started", "image"]
    assert lines[1].split("\t")[4] == "0.0.0.0:8082->8080, 127.0.0.1:8443->8443"
    assert lines[1].split("\t")[5] == "-"  # no domains

    cli_deploy.status(Context(), playbook=str(playbook), json=True)
    [app] = json.loads(capsys.readouterr().out)["apps"]
    assert app["ports"] == "0.0.0.0:8082->8080, 127.0.0.1:8443->8443" and app["image_size"] == 197_000_000
