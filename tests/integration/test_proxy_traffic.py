"""The front proxy over real SSH (the stock test sshd) to this machine's real engine, under continuous traffic.

In order, against one deployment: two apps by host name on one proxy port → a routed app redeployed twice and
then given a broken version while new connections, a keep-alive connection and 3-second requests flow (0 failed
requests, v1 → v2 → v3, every slow request completes) → isolation between the routed apps → a restarted proxy
keeps every route → an upgraded proxy (tls: off → internal) rebuilds them from the apps' labels, serves TLS
verified against `dockyard proxy-ca`, and redirects HTTP to HTTPS.
"""

from __future__ import annotations

import http.client
import io
import json
import shutil
import socket
import ssl
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console

from provision.changes import Status
from provision.deploy import deploy
from provision.playbook import load_playbook
from provision.remote import Remote, SshTarget
from provision.report import Reporter
from tests.cli import run_cli
from tests.e2e.helpers import remove_labelled
from tests.images import image_ref
from tests.ports import free_port
from tests.traffic import Traffic

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent.parent
APP_DIR = ROOT / "tests" / "fixtures" / "apps" / "versioned"


def get(port: int, host: str, path: str = "/", tls: ssl.SSLContext | None = None) -> tuple[int, str, dict]:
    """One request to the proxy with a Host header (and SNI for TLS), retried while nothing listens yet
    (bounded)."""
    deadline = time.monotonic() + 20
    while True:
        conn: http.client.HTTPConnection
        if tls is not None:
            conn = http.client.HTTPSConnection(host, port, timeout=10, context=tls)
            conn.sock = None
            raw = socket.create_connection(("127.0.0.1", port), timeout=10)
            try:
                conn.sock = tls.wrap_socket(raw, server_hostname=host)
            except Exception:
                raw.close()
                raise
        else:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("GET", path, headers={"Host": host})
            resp = conn.getresponse()
            return resp.status, resp.read().decode(), dict(resp.getheaders())
        except (ConnectionRefusedError, ConnectionResetError, http.client.RemoteDisconnected):
            # a (re)starting proxy: docker-proxy accepts before Caddy listens behind it
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
        finally:
            conn.close()


class Env:
    def __init__(self, root: Path, project: str, sshd: Any, client: Any) -> None:
        self.root, self.project, self.sshd, self.client = root, project, sshd, client
        self.http_port, self.https_port = free_port(), free_port()
        shutil.copytree(APP_DIR, root / "versioned")
        self.tls = "off"
        base = image_ref("python", client)
        self.apps: dict[str, Any] = {
            "shop": {"template": "generic", "context": "versioned", "command": ["python3", "-u", "app.py"],
                     "vars": {"base_image": base}, "port": 8000, "domains": ["shop.test"], "drain": "10s",
                     "env": {"VERSION": "v1", "APP_NAME": "shop"},
                     "healthcheck": {"http": "/", "interval": "1s", "retries": 2, "wait": "30s"}},
            # no healthcheck: a routed app must answer GET / (Host: its first domain) below 500
            "docs": {"template": "generic", "context": "versioned", "command": ["python3", "-u", "app.py"],
                     "vars": {"base_image": base}, "port": 8000, "domains": ["docs.test", "www.docs.test"],
                     "env": {"VERSION": "d1", "APP_NAME": "docs"}},
        }
        self.output = io.StringIO()

    def playbook(self):
        proxy: dict[str, Any] = {"http": f"127.0.0.1:{self.http_port}", "https": f"127.0.0.1:{self.https_port}",
                                 "tls": self.tls, "image": "dockyard/caddy:bookworm"}
        doc = {"project": self.project, "environment": "test", "provider": "existing",
               "host": {"address": "127.0.0.1"},
               "ssh": {"port": self.sshd.port, "user": "root", "key_file": str(self.sshd.key_file),
                       "known_hosts": str(self.sshd.known_hosts)},
               "proxy": proxy, "apps": self.apps}
        path = self.root / "test.yml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    def deploy(self) -> Any:
        pb = load_playbook(self.playbook())
        reporter = Reporter(verbose=True, console=Console(file=self.output, width=200, force_terminal=False))
        with Remote(SshTarget.from_playbook(pb, pb.host.address)) as remote:
            result = deploy(pb, remote, reporter=reporter, host="test-host", verbose=True)
            reporter.recap([result.recap])
        return result

    @property
    def proxy_name(self) -> str:
        return f"{self.project}-test_proxy"

    def containers(self, app: str) -> list[dict[str, Any]]:
        labels = [f"dockyard.project={self.project}", f"dockyard.app={app}"]
        return self.client.api.containers(filters={"label": labels})

    def cleanup(self) -> None:
        remove_labelled(self.project)


def failures(result: Any) -> str:
    return "\n".join(f"{t.task}: {t.message}" for t in result.recap.results if t.status.value == "failed")


@pytest.fixture(scope="module")
def env(sshd, docker_client, tmp_path_factory: pytest.TempPathFactory):
    import secrets

    e = Env(tmp_path_factory.mktemp("proxy"), f"dyt-{secrets.token_hex(4)}", sshd, docker_client)
    try:
        yield e
    finally:
        e.cleanup()


@pytest.fixture(scope="module")
def first(env: Env):
    result = env.deploy()
    assert not result.failed, failures(result) + env.output.getvalue()[-3000:]
    return result


def test_two_apps_answer_on_one_port_by_host_name(env: Env, first) -> None:
    assert get(env.http_port, "shop.test")[:2] == (200, "v1 shop host=shop.test\n")
    assert get(env.http_port, "docs.test")[:2] == (200, "d1 docs host=docs.test\n")
    assert get(env.http_port, "www.docs.test")[:2] == (200, "d1 docs host=www.docs.test\n")
    status, body, _ = get(env.http_port, "nobody.test")
    assert status == 404 and "no app" in body
    # the admin API is not published: only the http port (and no https port with tls: off)
    proxy = env.client.api.inspect_container(env.proxy_name)
    published = {k: v for k, v in (proxy["NetworkSettings"]["Ports"] or {}).items() if v}
    assert list(published) == ["80/tcp"]
    # the routed apps publish nothing themselves
    for app in ("shop", "docs"):
        (c,) = env.containers(app)
        assert not [p for p in c["Ports"] if p.get("PublicPort")]


def test_redeploys_under_traffic_fail_no_request_and_a_broken_version_is_never_routed(env: Env, first) -> None:
    shop = env.apps["shop"]
    with Traffic(env.http_port, "shop.test", max_seconds=240) as traffic:
        assert traffic.wait_for("v1")
        for version in ("v2", "v3"):
            shop["env"] = {**shop["env"], "VERSION": version}
            result = env.deploy()
            assert not result.failed, failures(result)
            assert traffic.wait_for(version)
        shop["env"] = {**shop["env"], "VERSION": "v4", "BROKEN": "1"}
        broken = env.deploy()
        time.sleep(2)  # traffic goes on after the refused version is gone
    assert broken.failed and "unhealthy" in failures(broken), failures(broken)
    kinds = {k: [s for s in traffic.samples if s.kind == k] for k in ("new", "keepalive", "slow")}
    print("proxy traffic:", {k: len(v) for k, v in kinds.items()}, "requests;", traffic.retries(),
          "keep-alive connection(s) closed by a reload and retried on a new one")
    assert all(len(v) >= 3 for v in kinds.values()), {k: len(v) for k, v in kinds.items()}
    assert traffic.failed() == []
    assert traffic.retries() <= 4  # at most one per reload (2 switches + 2 drain tidy-ups)
    for kind in ("new", "keepalive"):
        assert traffic.versions_in_order(kind) == ["v1", "v2", "v3"], kind
    assert "v4" not in {s.version for s in traffic.samples}
    # every slow request in flight during a switch completed (3 s each, several straddle each switch)
    assert all(s.status == 200 for s in kinds["slow"])
    assert {s.version for s in kinds["slow"]} >= {"v1", "v2"}
    (live,) = env.containers("shop")
    assert live["Labels"]["dockyard.domains"] == "shop.test"
    shop["env"] = {**shop["env"], "VERSION": "v3"}
    shop["env"].pop("BROKEN")


def test_routed_apps_cannot_reach_each_other(env: Env, first) -> None:
    (shop,) = env.containers("shop")
    (docs,) = env.containers("docs")
    docs_name = docs["Names"][0].lstrip("/")
    probe = ("import socket,sys\ntry:\n socket.create_connection((sys.argv[1],8000),timeout=3).close()\n"
             " print('connected')\nexcept OSError as e:\n print('refused',e)")
    api = env.client.api

    def attempt(container: str, target: str) -> str:
        exec_id = api.exec_create(container, ["python3", "-c", probe, target])["Id"]
        return api.exec_start(exec_id).decode()

    docs_ip = next(iter(api.inspect_container(docs["Id"])["NetworkSettings"]["Networks"].values()))["IPAddress"]
    assert attempt(shop["Id"], docs_name).startswith("refused")  # not even resolvable
    assert attempt(shop["Id"], docs_ip).startswith("refused")  # nor reachable by address
    assert attempt(docs["Id"], docs_name).startswith("connected")  # positive control: the probe can connect
    # the proxy reaches both (it joined both networks)
    out = api.exec_start(api.exec_create(env.proxy_name, ["curl", "-sS", f"http://{docs_name}:8000/"])["Id"])
    assert out.decode().startswith("d1 docs")


def test_a_restarted_proxy_keeps_every_route(env: Env, first) -> None:
    env.client.api.restart(env.proxy_name, timeout=5)
    assert get(env.http_port, "shop.test")[:2] == (200, "v3 shop host=shop.test\n")
    assert get(env.http_port, "docs.test")[:2] == (200, "d1 docs host=docs.test\n")


def test_an_upgraded_proxy_rebuilds_routes_from_labels_and_serves_tls(env: Env, first, capsys) -> None:
    old_id = env.client.api.inspect_container(env.proxy_name)["Id"]
    # forget the routes the proxy holds, so only the apps' labels can bring them back
    env.client.api.remove_container(env.proxy_name, force=True)
    for v in (f"{env.proxy_name}-config",):
        env.client.api.remove_volume(v, force=True)
    env.tls = "internal"
    result = env.deploy()
    assert not result.failed, failures(result)
    assert env.client.api.inspect_container(env.proxy_name)["Id"] != old_id
    capsys.readouterr()
    assert run_cli("proxy-ca", "-p", str(env.playbook())) == 0
    pem = capsys.readouterr().out
    assert pem.startswith("-----BEGIN CERTIFICATE-----")
    ctx = ssl.create_default_context(cadata=pem)
    for host, want in (("shop.test", "v3 shop"), ("docs.test", "d1 docs")):
        status, body, _ = get(env.https_port, host, tls=ctx)
        assert (status, body.split(" host=")[0]) == (200, want)
    # plain HTTP redirects to HTTPS
    status, _, headers = get(env.http_port, "shop.test")
    assert status in (301, 308) and headers.get("Location", "").startswith("https://shop.test")
    # an untrusted client refuses the certificate: it really is the proxy's own CA that signed it
    with pytest.raises(ssl.SSLError):
        get(env.https_port, "shop.test", tls=ssl.create_default_context())


def test_a_second_deploy_changes_nothing(env: Env, first) -> None:
    before = {app: [c["Id"] for c in env.containers(app)] for app in ("shop", "docs")}
    proxy_id = env.client.api.inspect_container(env.proxy_name)["Id"]
    result = env.deploy()
    changed = [t.task for t in result.recap.results if t.status.value == "changed"]
    assert not result.failed and result.recap.count(Status.CHANGED) == 0, json.dumps(changed)
    assert {app: [c["Id"] for c in env.containers(app)] for app in ("shop", "docs")} == before
    assert env.client.api.inspect_container(env.proxy_name)["Id"] == proxy_id


# --- an app that publishes a port (no domains) -------------------------------------------------------------


def refusal_windows(traffic: Traffic) -> list[tuple[float, float]]:
    """Spans of consecutive failed connections seen by the sequential new-connection client. With a port
    published on 127.0.0.1 the engine's userland proxy holds the port: while no container listens behind it, it
    accepts and then closes (reset / closed without a response) instead of refusing."""
    windows: list[tuple[float, float]] = []
    current: tuple[float, float] | None = None
    for s in sorted((s for s in traffic.samples if s.kind == "new"), key=lambda s: s.start):
        if s.status is None:
            current = (current[0], s.end) if current else (s.start, s.end)
        elif current is not None:
            windows.append(current)
            current = None
    if current is not None:
        windows.append(current)
    return windows


def test_a_published_app_never_serves_a_broken_version_and_swaps_ports_briefly(
        sshd, docker_client, tmp_path: Path) -> None:
    import secrets

    e = Env(tmp_path, f"dyt-{secrets.token_hex(4)}", sshd, docker_client)
    port = free_port()
    api_app = dict(e.apps["shop"], env={"VERSION": "v1", "APP_NAME": "api"}, publish=f"127.0.0.1:{port}")
    del api_app["domains"], api_app["drain"]
    e.apps = {"api": api_app}
    pb_path = e.playbook()
    doc = yaml.safe_load(pb_path.read_text())
    e.playbook = lambda: _without_proxy(pb_path, doc, e.apps)  # type: ignore[method-assign]
    try:
        first = e.deploy()
        assert not first.failed, failures(first)
        with Traffic(port, "api.test", slow_threads=0, max_seconds=180) as traffic:
            assert traffic.wait_for("v1")
            api_app["env"] = {"VERSION": "v2", "APP_NAME": "api", "BROKEN": "1"}
            broken = e.deploy()
            assert broken.failed and "kept the port" in failures(broken)
            time.sleep(1)
            refused_during_broken = sum(1 for s in traffic.samples if s.status is None)
            api_app["env"] = {"VERSION": "v3", "APP_NAME": "api"}
            good = e.deploy()
            assert not good.failed, failures(good)
            assert traffic.wait_for("v3")
        # no response ever came from the broken version: only 2xx, and refusals only during the swap to v3
        statuses = {s.status for s in traffic.samples if s.status is not None}
        assert statuses == {200}, statuses
        assert refused_during_broken == 0  # the broken version never took the port, the old one never stopped
        errors = Counter(s.error.split(":")[0] for s in traffic.samples if s.status is None)
        windows = refusal_windows(traffic)
        gap = sum(end - start for start, end in windows)
        print(f"published-port swap: {len(windows)} window(s) without a listener, {gap:.2f}s in all; "
              f"failed connections by kind: {dict(errors)}")
        assert len(windows) <= 1  # one swap, one gap: the broken version's attempt opened none
        assert traffic.versions_in_order("new") == ["v1", "v3"]
        assert not [c for c in e.client.api.containers(all=True, filters={"label": [
            f"dockyard.project={e.project}", "dockyard.role=candidate"]})]  # the candidate is gone
    finally:
        e.cleanup()


def _without_proxy(path: Path, doc: dict[str, Any], apps: dict[str, Any]) -> Path:
    doc = {k: v for k, v in doc.items() if k != "proxy"}
    doc["apps"] = apps
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path
