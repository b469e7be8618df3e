"""The runner's execution model and the reporter's output, against a fake context (no SSH)."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from provision.changes import Change, Status, Step
from provision.errors import StepFailed
from provision.ops import Argv, EngineCall, Upload, params
from provision.report import Reporter, to_json, unified_diff
from provision.runner import Runner

pytestmark = pytest.mark.unit


class FakeCtx:
    def __init__(self, fail_on: str | None = None) -> None:
        self.calls: list[tuple[tuple[str, ...], bool, bytes | None]] = []
        self.fail_on = fail_on

    def run(self, argv, *, sudo=False, stdin=None):
        self.calls.append((tuple(argv), sudo, stdin))
        if self.fail_on and self.fail_on in argv:
            raise StepFailed(f"`{' '.join(argv)}` exited 1: E: Unable to locate package")


def change(target: str, *argvs: tuple[str, ...], notify: tuple[str, ...] = (), before=None, after=None):
    return Change(target, "update", "differs", tuple(Step(f"run {' '.join(a)}", argv=a) for a in argvs),
                  before=before, after=after, notify=notify)


def reporter() -> tuple[Reporter, io.StringIO]:
    buf = io.StringIO()
    return Reporter(console=Console(file=buf, width=200, color_system=None)), buf


def test_no_changes_is_ok_and_runs_nothing():
    ctx = FakeCtx()
    r = Runner("h", ctx)
    assert r.run_task("nothing", []).status is Status.OK
    assert ctx.calls == []


def test_steps_applied_in_order_with_sudo_and_stdin():
    ctx = FakeCtx()
    r = Runner("h", ctx)
    steps = (Step("a", argv=("a",), sudo=True), Step("b", argv=("b",), stdin=b"x"))
    c = Change("f", "write", "absent", steps)
    res = r.run_task("t", [c])
    assert res.status is Status.CHANGED
    assert ctx.calls == [(("a",), True, None), (("b",), False, b"x")]


class ExecutingCtx(FakeCtx):
    """A context with its own executor (deploy's, the EC2 one): the runner hands it every op."""

    def __init__(self) -> None:
        super().__init__()
        self.executed: list[object] = []

    def execute(self, op) -> None:
        self.executed.append(op)


def test_ops_go_to_the_contexts_executor():
    ctx = ExecutingCtx()
    r = Runner("h", ctx)
    net = EngineCall("network.create", params(name="n"))
    r.run_task("t", [Change("x", "create", "absent", (Step("net", net), Step("argv", argv=("x",))))])
    assert ctx.executed == [net, Argv(("x",))] and ctx.calls == []


def test_check_mode_reports_but_runs_nothing():
    ctx = ExecutingCtx()
    r = Runner("h", ctx, check=True)
    r.add_handler("restart", lambda: [change("svc", ("restart",))])
    c = Change("x", "create", "absent", (Step("argv", argv=("x",)), Step("net", EngineCall("network.create"))),
               notify=("restart",))
    assert r.run_task("t", [c]).status is Status.CHANGED
    [h] = r.flush_handlers()
    assert h.status is Status.CHANGED and h.task == "handler: restart"
    assert ctx.calls == [] and ctx.executed == []


def test_failure_stops_the_host_and_carries_the_step_and_stderr():
    ctx = FakeCtx(fail_on="bad")
    r = Runner("h", ctx)
    res = r.run_task("install", [change("pkg", ("ok1",), ("bad",), ("never",))])
    assert res.status is Status.FAILED
    assert "run bad" in res.message and "Unable to locate package" in res.message
    assert [c[0] for c in ctx.calls] == [("ok1",), ("bad",)]
    later = r.run_task("later", [change("y", ("y",))])
    assert later.status is Status.SKIPPED
    assert r.failed and r.recap.count(Status.FAILED) == 1 and r.recap.count(Status.SKIPPED) == 1


def test_handler_runs_once_only_when_notified():
    ctx = FakeCtx()
    r = Runner("h", ctx)
    built = []

    def restart():
        built.append(1)
        return [change("svc", ("systemctl", "restart", "docker"))]

    r.add_handler("restart docker", restart)
    r.add_handler("unused", lambda: pytest.fail("not notified"))
    r.run_task("a", [change("a", ("a",), notify=("restart docker",))])
    r.run_task("b", [change("b", ("b",), notify=("restart docker",))])
    r.run_task("c", [])
    results = r.flush_handlers()
    assert [x.task for x in results] == ["handler: restart docker"]
    assert built == [1]
    assert ctx.calls.count((("systemctl", "restart", "docker"), False, None)) == 1
    assert r.flush_handlers() == []


def test_handler_not_notified_by_ok_tasks():
    r = Runner("h", FakeCtx())
    r.add_handler("restart docker", lambda: [change("svc", ("restart",))])
    r.run_task("a", [])
    assert r.flush_handlers() == []


def test_handlers_skipped_after_failure():
    ctx = FakeCtx(fail_on="bad")
    r = Runner("h", ctx)
    r.add_handler("restart", lambda: [change("svc", ("restart",))])
    r.run_task("a", [change("a", ("a",), notify=("restart",))])
    r.run_task("b", [change("b", ("bad",))])
    [h] = r.flush_handlers()
    assert h.status is Status.SKIPPED
    assert (("restart",), False, None) not in ctx.calls


def test_guard_records_failure():
    r = Runner("h", FakeCtx())
    with r.guard("gather facts"):
        raise StepFailed("ssh root@x:22: connection refused")
    assert r.failed and r.results[-1].message == "ssh root@x:22: connection refused"


def test_reporter_lines_diff_and_recap():
    rep, buf = reporter()
    r = Runner("web1", FakeCtx(), diff=True, reporter=rep)
    r.run_task("daemon.json", [change("engine:daemon.json", ("install",), before='{"a": 1}\n',
                                      after='{"a": 2}\n')])
    r.run_task("service", [])
    rep.recap([r.recap])
    out = buf.getvalue()
    assert "changed: [web1] daemon.json" in out
    assert "ok: [web1] service" in out
    assert '-{"a": 1}' in out and '+{"a": 2}' in out
    assert "RECAP" in out and "web1" in out


def test_stdin_never_reported():
    rep, buf = reporter()
    rep.verbose = True
    r = Runner("h", FakeCtx(), check=True, reporter=rep)
    r.run_task("secret file", [Change("f", "write", "absent",
                                      (Step("upload env file", argv=("cat",), stdin=b"hunter2-secret"),))])
    out = buf.getvalue()
    assert "upload env file" in out and "hunter2" not in out
    assert "$ cat < stdin (sha256:" in out  # -v shows exactly what would run; stdin only as its digest


def test_check_verbose_shows_each_op_rendered():
    from provision.ops import EngineCall, SecretFile, Upload, params

    rep, buf = reporter()
    rep.verbose = True
    r = Runner("h", FakeCtx(), check=True, reporter=rep)
    r.run_task("app web", [Change("app:web:container", "create", "absent", (
        Step("apt", argv=("apt-get", "install", "docker.io"), sudo=True),
        Step("env", Upload("/srv/web.env", SecretFile(("DB_PASSWORD",), "sha256:" + "a" * 64), mode=0o600)),
        Step("net", EngineCall("network.create", params(name="shop-prod-web", labels={"dockyard.app": "web"})))))])
    lines = [line.strip() for line in buf.getvalue().splitlines() if line.strip().startswith("$")]
    assert lines == ["$ sudo apt-get install docker.io",
                     "$ upload /srv/web.env (env file of secrets DB_PASSWORD, sha256:aaaaaaaaaaaa, mode 0600)",
                     "$ engine network.create name=shop-prod-web labels={dockyard.app: web}"]


def test_to_json_document():
    r = Runner("h", FakeCtx(fail_on="bad"))
    r.run_task("a", [change("a", ("a",))])
    r.run_task("b", [change("b", ("bad",))])
    doc = to_json([r.recap], {"command": "setup"})
    json.dumps(doc)
    assert doc["ok"] is False and doc["changed"] == 1 and doc["failed"] == 1 and doc["command"] == "setup"
    [host] = doc["hosts"]
    assert [t["status"] for t in host["tasks"]] == ["changed", "failed"]
    assert host["tasks"][0]["changes"][0]["steps"] == [
        {"description": "run a", "op": {"type": "argv", "argv": ["a"], "sudo": False}}]


def test_unified_diff_of_new_file():
    text = unified_diff("daemon.json", None, "{}\n")
    assert "/dev/null" in text and "+{}" in text


def test_parallel_tasks_on_one_host_are_all_recorded():
    from concurrent.futures import ThreadPoolExecutor

    ctx = FakeCtx()
    r = Runner("h", ctx)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: r.run_task(f"app {i}", [change(f"a{i}", (f"cmd{i}",))]), range(32)))
    assert {x.status for x in results} == {Status.CHANGED}
    assert len(r.recap.results) == 32 and len(ctx.calls) == 32


def test_a_handler_that_cannot_plan_fails_the_host():
    r = Runner("h", FakeCtx())

    def broken():
        raise StepFailed("gathering engine facts failed: connection lost")

    r.add_handler("restart docker", broken)
    r.run_task("a", [change("a", ("a",), notify=("restart docker",))])
    [h] = r.flush_handlers()
    assert h.status is Status.FAILED and "connection lost" in h.message and r.failed


def test_a_remote_command_step_is_shown_while_it_runs_and_gone_after():
    """The engine install (an apt argv step) gets a live line / heartbeat of its own while it runs."""
    rep = Reporter(console=Console(file=io.StringIO(), width=200, force_terminal=False))
    seen: list[list[str]] = []

    class Ctx(FakeCtx):
        def run(self, argv, *, sudo=False, stdin=None):
            seen.append([i.text for i in rep.board.running()])
            super().run(argv, sudo=sudo, stdin=stdin)

        def put_file(self, path, content, mode=0o644, owner=None, sudo=False):
            seen.append([i.text for i in rep.board.running()])

    r = Runner("web1", Ctx(), reporter=rep)
    r.run_task("install docker engine", [change("engine", ("apt-get", "install", "docker.io"))])
    r.run_task("upload only", [Change("x", "create", "absent", (Step("write", Upload("/x", b"x")),))])
    assert seen == [["[web1] install docker engine: run apt-get install docker.io"], []]
    assert rep.board.running() == []
