"""Ten apps in one deploy over ONE connection to a stock sshd (the `sshd` fixture: MaxSessions 10): each its own
build, published port on 127.0.0.1 and health check. All answer; a no-op redeploy keeps every container.
Then the same with `ssh.max_sessions: 2`. The channel budget is never exceeded, the server never refuses a
channel, and apps still overlap (two apps' build or health-wait intervals intersect).

deploy only touches objects carrying its labels (a unique project here), so the test sshd (this machine) is
a fair target; everything labelled with the project is removed afterwards.
"""

from __future__ import annotations

import io
import secrets
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console

from provision import appops
from provision.deploy import deploy
from provision.playbook import load_playbook
from provision.remote import Remote, SshTarget
from provision.report import Reporter
from tests.images import image_ref
from tests.integration.test_deploy import FIXTURES, failures, free_port, http_get

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]

APPS = 10


def cleanup(client: Any, project: str) -> None:
    api = client.api
    label = {"label": [f"dockyard.project={project}"]}
    for c in api.containers(all=True, filters=label):
        api.remove_container(c["Id"], force=True)
    for n in api.networks(filters=label):
        api.remove_network(n["Id"])
    for i in api.images(filters=label):
        for tag in i.get("RepoTags") or []:
            api.remove_image(tag, force=True)


class Intervals:
    """(app, what, start, end) of every build and health wait, recorded by wrapping the app effects."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, float, float]] = []
        self._lock = threading.Lock()

    def wrap(self, monkeypatch: pytest.MonkeyPatch, name: str, app_of: Any, engine_op: str | None = None) -> None:
        real = appops.ENGINE_HANDLERS[engine_op] if engine_op else getattr(appops, name)

        def recorded(*args: Any, **kwargs: Any) -> Any:
            start = time.monotonic()
            try:
                return real(*args, **kwargs)
            finally:
                with self._lock:
                    self.rows.append((app_of(args, kwargs), name, start, time.monotonic()))

        if engine_op:  # the Engine executor's handler for that op
            monkeypatch.setitem(appops.ENGINE_HANDLERS, engine_op, recorded)
        else:
            monkeypatch.setattr(appops, name, recorded)

    def overlapping_pairs(self) -> list[tuple[str, str]]:
        out = []
        for i, (a, _, s1, e1) in enumerate(self.rows):
            for b, _, s2, e2 in self.rows[i + 1:]:
                if a != b and s1 < e2 and s2 < e1:
                    out.append((a, b))
        return out


@pytest.mark.parametrize("max_sessions", [None, 2], ids=["default-budget", "max_sessions-2"])
def test_ten_apps_over_one_connection_to_a_stock_sshd(max_sessions: int | None, sshd, docker_client, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    project = f"dyt-{secrets.token_hex(4)}"
    base = image_ref("static", docker_client)
    ports = {f"s{n}": free_port() for n in range(APPS)}
    apps = {}
    for name, port in ports.items():
        context = tmp_path / name
        shutil.copytree(FIXTURES / "static", context)
        (context / "index.html").write_text(f"<h1>{project} {name}</h1>\n")  # its own build
        apps[name] = {"template": "static-site", "context": name, "port": 8080, "publish": f"127.0.0.1:{port}",
                      "vars": {"base_image": base}, "memory": "32m",
                      "healthcheck": {"http": "/", "interval": "1s", "wait": "120s"}}
    ssh: dict[str, Any] = {"port": sshd.port, "user": "root", "key_file": str(sshd.key_file),
                           "known_hosts": str(sshd.known_hosts)}
    if max_sessions is not None:
        ssh["max_sessions"] = max_sessions
    path = tmp_path / "scale.yml"
    path.write_text(yaml.safe_dump({"project": project, "environment": "scale", "provider": "existing",
                                    "host": {"address": "127.0.0.1"}, "ssh": ssh, "apps": apps}, sort_keys=False))
    pb = load_playbook(path)
    budget = max_sessions or 8
    intervals = Intervals()
    intervals.wrap(monkeypatch, "build_image", lambda a, k: k["app"], engine_op="image.build")
    intervals.wrap(monkeypatch, "wait_healthy", lambda a, k: a[3])

    def one_deploy() -> tuple[Any, str, Remote]:
        out = io.StringIO()
        reporter = Reporter(verbose=False, console=Console(file=out, width=200, force_terminal=False))
        with Remote(SshTarget.from_playbook(pb, pb.host.address)) as remote:
            result = deploy(pb, remote, reporter=reporter, host="scale-host")
            reporter.recap([result.recap])
        return result, out.getvalue(), remote

    try:
        started = time.monotonic()
        first, output, remote = one_deploy()
        first_took, first_peak = time.monotonic() - started, remote.budget.peak
        assert not first.failed, failures(first) + "\n" + output
        assert remote.connections_opened == 1
        assert remote.budget.limit == budget and remote.budget.peak <= budget  # never lowered, never exceeded
        assert "refused" not in output and "reconnected" not in output, output
        assert sorted(t.split(":")[0] for t in first.built) == sorted(f"{project}/{n}" for n in ports)
        for name, port in ports.items():
            status, body = http_get(f"http://127.0.0.1:{port}/")
            assert status == 200 and f"{project} {name}" in body
        # still parallel within the budget: builds / health waits of different apps overlapped
        assert {app for app, what, *_ in intervals.rows if what == "wait_healthy"} == set(ports)
        assert intervals.overlapping_pairs(), intervals.rows

        labels = {"label": [f"dockyard.project={project}"]}
        before = {c["Names"][0]: c["Id"] for c in docker_client.api.containers(filters=labels)}
        assert len(before) == APPS
        started = time.monotonic()
        again, output, remote = one_deploy()
        assert not again.failed, failures(again) + "\n" + output
        # a figure for `pytest -s` (bench/ has the real benchmarks), never asserted
        print(f"\n{APPS} apps, max_sessions {budget}: first deploy {first_took:.1f}s with at most {first_peak} "
              f"channels open; no-op {time.monotonic() - started:.1f}s with at most {remote.budget.peak}")
        assert again.built == [] and sum(1 for t in again.recap.results if t.status.value == "changed") == 0
        after = {c["Names"][0]: c["Id"] for c in docker_client.api.containers(filters=labels)}
        assert after == before
    finally:
        cleanup(docker_client, project)
