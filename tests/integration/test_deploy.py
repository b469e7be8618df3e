"""deploy over real SSH (the test sshd) to this machine's real engine: three apps from the built-in templates.

The tests of this module run in order against one deployment (building the Flask image costs a pip install):
first deploy → each app answers → isolation → a no-op second deploy → secrets leave no trace → one app
changed (only it is rebuilt and replaced; its volume's data survives) → a failing new version leaves the old
one serving → an app dropped from the playbook is reported, then removed with --prune.
Everything carries the test's unique project label and is removed at the end.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console

from provision.changes import Status
from provision.deploy import deploy
from provision.playbook import load_playbook
from provision.remote import Remote, SshTarget
from provision.report import Reporter, to_json
from tests.images import image_ref
from tests.ports import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "apps"
SECRET_NAME = "APP_SECRET"
SECRET_VALUE = "pw-7Hq2-zz-dockyard-" + "x9Q"  # never printed, never in labels/argv/history


def http_get(url: str, data: bytes | None = None, method: str | None = None) -> tuple[int, str]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    req = urllib.request.Request(url, data=data, method=method)
    deadline = time.monotonic() + 20
    while True:
        try:
            with opener.open(req, timeout=5) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


class Env:
    """The test's playbook directory, its deployments and what they printed."""

    def __init__(self, root: Path, project: str, sshd: Any, docker_client: Any) -> None:
        self.root = root
        self.project = project
        self.sshd = sshd
        self.client = docker_client
        self.web_port = free_port()
        self.site_port = free_port()
        for name in ("flask", "static", "worker"):
            shutil.copytree(FIXTURES / name, root / name)
        (root / ".env").write_text(f"{SECRET_NAME}={SECRET_VALUE}\n")
        self.apps: dict[str, Any] = {
            "web": {
                "template": "python-web",
                "context": "flask",
                "port": 8000,
                "publish": f"127.0.0.1:{self.web_port}",
                "vars": {"base_image": image_ref("python", docker_client), "workers": 1},
                "env": {"DATA_DIR": "/var/lib/app", "APP_NAME": "web"},
                "secrets": [SECRET_NAME],
                "volumes": {"data": "/var/lib/app"},
                "memory": "256m",
                "cpus": 1,
                "healthcheck": {"http": "/healthz", "interval": "1s", "retries": 3, "wait": "60s"},
            },
            "site": {
                "template": "static-site",
                "context": "static",
                "port": 8080,
                "publish": f"127.0.0.1:{self.site_port}",
                "vars": {"base_image": image_ref("static", docker_client)},
                "healthcheck": {"http": "/", "interval": "1s"},
            },
            "worker": {
                "template": "generic",
                "build": "local",  # built by this machine's engine and shipped (here: the same engine)
                "context": "worker",
                "command": ["sh", "/app/worker.sh"],
                "vars": {"base_image": image_ref("base", docker_client)},
                "env": {"HEARTBEAT_FILE": "/state/heartbeat"},
                "volumes": {"state": "/state"},
                "healthcheck": {"cmd": ["sh", "/app/healthcheck.sh"], "interval": "1s"},
            },
        }
        self.output = io.StringIO()
        self.json_docs: list[dict[str, Any]] = []

    def playbook(self):
        doc = {
            "project": self.project,
            "environment": "test",
            "provider": "existing",
            "host": {"address": "127.0.0.1"},
            "ssh": {
                "port": self.sshd.port,
                "user": "root",
                "key_file": str(self.sshd.key_file),
                "known_hosts": str(self.sshd.known_hosts),
            },
            "apps": self.apps,
        }
        path = self.root / "test.yml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return load_playbook(path)

    def deploy(self, **kwargs: Any):
        pb = self.playbook()
        reporter = Reporter(verbose=True, console=Console(file=self.output, width=200, force_terminal=False))
        with Remote(SshTarget.from_playbook(pb, pb.host.address)) as remote:
            result = deploy(pb, remote, reporter=reporter, host="test-host", verbose=True, **kwargs)
            reporter.recap([result.recap])
            self.connections = remote.connections_opened
        self.json_docs.append(to_json([result.recap]))
        return result

    # the engine's view (the local client: the same engine the SSH side talks to)
    def containers(self, app: str | None = None) -> list[dict[str, Any]]:
        labels = [f"dockyard.project={self.project}"] + ([f"dockyard.app={app}"] if app else [])
        return self.client.api.containers(all=True, filters={"label": labels})

    def running(self, app: str) -> dict[str, Any]:
        found = [c for c in self.containers(app) if c["State"] == "running"]
        assert len(found) == 1, f"{app}: expected one running container, got {found}"
        return self.client.api.inspect_container(found[0]["Id"])

    def cleanup(self) -> None:
        api = self.client.api
        label = {"label": [f"dockyard.project={self.project}"]}
        for c in api.containers(all=True, filters=label):
            api.remove_container(c["Id"], force=True)
        for n in api.networks(filters=label):
            api.remove_network(n["Id"])
        for v in (api.volumes(filters=label) or {}).get("Volumes") or []:
            api.remove_volume(v["Name"], force=True)
        for i in api.images(filters=label):
            for tag in i.get("RepoTags") or []:
                api.remove_image(tag, force=True)
        # layers a failed build left behind (untagged; the templates label them with <project>/<app> early)
        for i in api.images(filters={"dangling": True}):
            title = (i.get("Labels") or {}).get("org.opencontainers.image.title", "")
            if title.startswith(f"{self.project}/"):
                with contextlib.suppress(Exception):
                    api.remove_image(i["Id"])
        shutil.rmtree(f"/var/lib/dockyard/{self.project}-test", ignore_errors=True)


def failures(result: Any) -> str:
    return "\n".join(f"{t.task}: {t.message}" for t in result.recap.results if t.status.value == "failed")


@pytest.fixture(scope="module")
def env(sshd, docker_client, tmp_path_factory: pytest.TempPathFactory):
    import secrets as pysecrets

    project = f"dyt-{pysecrets.token_hex(4)}"
    e = Env(tmp_path_factory.mktemp("deploy"), project, sshd, docker_client)
    try:
        yield e
    finally:
        e.cleanup()


@pytest.fixture(scope="module")
def first(env: Env):
    result = env.deploy()
    assert not result.failed, failures(result)
    return result


def test_first_deploy_builds_and_starts_everything(env: Env, first) -> None:
    assert sorted(t.split(":")[0] for t in first.built) == [
        f"{env.project}/site",
        f"{env.project}/web",
        f"{env.project}/worker",
    ]
    assert env.connections == 1  # one SSH connection carried facts, builds, the CLI and the Docker API
    for app in ("web", "site", "worker"):
        info = env.running(app)
        assert info["State"]["Health"]["Status"] == "healthy"
        assert info["Config"]["Labels"]["dockyard.environment"] == "test"
        assert info["HostConfig"]["SecurityOpt"] == ["no-new-privileges"]
        assert info["Config"]["User"] not in ("", "0", "root")  # the templates' non-root user
    web = env.running("web")
    assert web["HostConfig"]["ReadonlyRootfs"] is True and "/tmp" in web["HostConfig"]["Tmpfs"]
    assert web["HostConfig"]["Memory"] == 256 * 1024**2 and web["HostConfig"]["NanoCpus"] == 10**9
    assert web["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    networks = env.client.api.networks(filters={"label": [f"dockyard.project={env.project}"]})
    assert sorted(n["Name"] for n in networks) == [f"{env.project}-test-{a}" for a in ("site", "web", "worker")]


def test_each_app_answers(env: Env, first) -> None:
    status, body = http_get(f"http://127.0.0.1:{env.web_port}/")
    assert (status, body.strip()) == (200, "hello from web version 1")
    status, body = http_get(f"http://127.0.0.1:{env.site_port}/")
    assert status == 200 and "<html" in body.lower()
    logs = env.client.api.logs(env.running("worker")["Id"]).decode()
    assert "worker: heartbeat" in logs


def test_apps_are_isolated(env: Env, first) -> None:
    web, site = env.running("web"), env.running("site")
    site_ip = next(iter(site["NetworkSettings"]["Networks"].values()))["IPAddress"]
    web_ip = next(iter(web["NetworkSettings"]["Networks"].values()))["IPAddress"]
    probe = f"http://127.0.0.1:{env.web_port}/probe?host={{}}&port={{}}"
    # the probe works (web reaches itself) and site listens (the host reaches it) ...
    assert json.loads(http_get(probe.format(web_ip, 8000))[1])["ok"] is True
    with socket.create_connection((site_ip, 8080), timeout=5):
        pass
    # ... but web's container cannot open a connection to site's container
    result = json.loads(http_get(probe.format(site_ip, 8080))[1])
    assert result["ok"] is False, result


def test_second_deploy_changes_nothing(env: Env, first) -> None:
    before = {a: (env.running(a)["Id"], env.running(a)["State"]["StartedAt"]) for a in ("web", "site", "worker")}
    result = env.deploy()
    assert not result.failed
    assert result.recap.count(Status.CHANGED) == 0 and result.recap.count(Status.OK) > 0
    assert result.built == []
    assert env.json_docs[-1]["changed"] == 0 and env.json_docs[-1]["ok"] is True
    after = {a: (env.running(a)["Id"], env.running(a)["State"]["StartedAt"]) for a in ("web", "site", "worker")}
    assert after == before
    assert env.connections == 1


def test_secret_reaches_the_app_and_nothing_else(env: Env, first) -> None:
    import hashlib

    status, body = http_get(f"http://127.0.0.1:{env.web_port}/env-digest/{SECRET_NAME}")
    assert (status, body.strip()) == (200, hashlib.sha256(SECRET_VALUE.encode()).hexdigest())
    web = env.running("web")
    api = env.client.api
    history = json.dumps(api.history(web["Image"]))
    assert SECRET_VALUE not in history
    assert SECRET_VALUE not in json.dumps(api.inspect_image(web["Image"]))
    exposed = json.dumps(
        {
            "labels": web["Config"]["Labels"],
            "cmd": web["Config"]["Cmd"],
            "args": web["Args"],
            "path": web["Path"],
            "entrypoint": web["Config"]["Entrypoint"],
        }
    )
    assert SECRET_VALUE not in exposed
    assert SECRET_VALUE not in api.logs(web["Id"]).decode()
    assert SECRET_VALUE not in env.output.getvalue()  # every task line, -v step, build log and recap so far
    assert SECRET_VALUE not in json.dumps(env.json_docs)
    env_file = Path(f"/var/lib/dockyard/{env.project}-test/web.env")
    assert env_file.stat().st_mode & 0o777 == 0o600
    assert env_file.parent.stat().st_mode & 0o777 == 0o700


def test_changed_app_alone_is_rebuilt_and_replaced_and_keeps_its_data(env: Env, first) -> None:
    status, _ = http_get(f"http://127.0.0.1:{env.web_port}/data/note", data=b"written by v1", method="PUT")
    assert status == 201
    before = {a: env.running(a)["Id"] for a in ("web", "site", "worker")}
    (env.root / "flask" / "VERSION").write_text("2\n")
    result = env.deploy()
    assert not result.failed, failures(result)
    assert [t.split(":")[0] for t in result.built] == [f"{env.project}/web"]
    after = {a: env.running(a)["Id"] for a in ("web", "site", "worker")}
    assert after["web"] != before["web"]
    assert (after["site"], after["worker"]) == (before["site"], before["worker"])
    # the old one is stopped, kept as a release for `rollback` (not serving: the port is the new one's)
    states = sorted((c["Id"] == after["web"], c["State"]) for c in env.containers("web"))
    assert states == [(False, "exited"), (True, "running")]
    assert before["web"] in [c["Id"] for c in env.containers("web")]
    assert http_get(f"http://127.0.0.1:{env.web_port}/")[1].strip() == "hello from web version 2"
    assert http_get(f"http://127.0.0.1:{env.web_port}/data/note") == (200, "written by v1")
    changed = {t.task for t in result.recap.results if t.status.value == "changed"}
    assert changed == {"app web: image", "app web: container"}


def test_failing_new_version_leaves_the_old_one_serving(env: Env, first) -> None:
    old = env.running("web")
    env.apps["web"]["env"] = {**env.apps["web"]["env"], "FAIL_HEALTHZ": "1"}
    env.apps["web"]["healthcheck"]["wait"] = "20s"
    try:
        result = env.deploy()
    finally:
        env.apps["web"]["env"].pop("FAIL_HEALTHZ")
        env.apps["web"]["healthcheck"]["wait"] = "60s"
    assert result.failed
    failed = [t for t in result.recap.results if t.status.value == "failed"]
    assert [t.task for t in failed] == ["app web: container"]
    assert "unhealthy" in failed[0].message or "not healthy" in failed[0].message
    assert "last log lines" in failed[0].message
    now = env.running("web")
    assert now["Id"] == old["Id"]
    # the failed new container was removed: only the serving one and the stopped earlier release remain
    assert sorted(c["State"] for c in env.containers("web")) == ["exited", "running"]
    assert http_get(f"http://127.0.0.1:{env.web_port}/")[1].strip() == "hello from web version 2"
    assert env.json_docs[-1]["ok"] is False


def test_reach_lets_one_app_connect_to_another(env: Env, first) -> None:
    probe = f"http://127.0.0.1:{env.web_port}/probe?host=site&port=8080"
    env.apps["web"]["reach"] = ["site"]
    try:
        result = env.deploy()
        assert not result.failed, failures(result)
        assert json.loads(http_get(probe)[1])["ok"] is True  # by the app's name, on site's network
        site = env.running("site")
        assert sorted(site["NetworkSettings"]["Networks"]) == [f"{env.project}-test-site"]
    finally:
        env.apps["web"].pop("reach")
    result = env.deploy()
    assert not result.failed, failures(result)
    assert json.loads(http_get(probe)[1])["ok"] is False


def cli(env: Env, *args: str) -> subprocess.CompletedProcess[str]:
    env.playbook()  # write the current playbook
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_")}
    environ["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "provision", *args],
        cwd=env.root,
        capture_output=True,
        text=True,
        timeout=600,
        env=environ,
        check=False,
    )


def test_cli_status_logs_exec_and_check(env: Env, first) -> None:
    before = {a: env.running(a)["Id"] for a in ("web", "site", "worker")}
    r = cli(env, "status", "-p", "test.yml", "--json")
    assert r.returncode == 0, r.stderr
    rows = {row["app"]: row for row in json.loads(r.stdout)["apps"]}
    assert sorted(rows) == ["site", "web", "worker"]
    [host] = json.loads(r.stdout)["host"]["hosts"]  # one host, as provision --json names it
    assert host["ssh"]["address"] == "127.0.0.1" and host["id"] == json.loads(r.stdout)["host"]["id"]
    assert all(row["state"] == "running" and row["health"] == "healthy" for row in rows.values())
    assert rows["web"]["ports"] == f"127.0.0.1:{env.web_port}->8000" and rows["web"]["image_size"] > 0
    r = cli(env, "status", "-p", "test.yml")  # piped: tab-separated, no cell cut to 80 columns
    assert r.returncode == 0, r.stderr
    table = {line.split("\t")[0]: line.split("\t") for line in r.stdout.splitlines()}
    assert table["app"][4] == "ports" and table["web"][4] == f"127.0.0.1:{env.web_port}->8000"

    r = cli(env, "logs", "-p", "test.yml", "--app", "worker", "-n", "3")
    assert r.returncode == 0 and "worker: heartbeat" in r.stdout and len(r.stdout.splitlines()) == 3

    r = cli(env, "exec", "-p", "test.yml", "--app", "web", "--", "python3", "-c", "print(6 * 7)")
    assert (r.returncode, r.stdout.strip()) == (0, "42"), r.stderr
    r = cli(env, "exec", "-p", "test.yml", "--app", "web", "--", "sh", "-c", "exit 3")
    assert r.returncode == 3

    r = cli(env, "deploy", "-p", "test.yml", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["changed"] == 0 and doc["built"] == [] and SECRET_VALUE not in r.stdout + r.stderr

    (env.root / "static" / "VERSION").write_text("2\n")
    r = cli(env, "deploy", "-p", "test.yml", "--check", "--diff", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    changed = sorted(t["task"] for t in doc["hosts"][0]["tasks"] if t["status"] == "changed")
    assert changed == ["app site: container", "app site: image"]
    assert "+image: " in r.stderr  # the diff of the container's settings
    assert {a: env.running(a)["Id"] for a in ("web", "site", "worker")} == before  # check changed nothing

    r = cli(env, "deploy", "-p", "test.yml", "--app", "nope")
    assert r.returncode == 2 and "nope" in r.stderr


def test_dropped_app_is_reported_then_pruned(env: Env, first) -> None:
    worker = env.apps.pop("worker")
    try:
        kept = env.deploy()
        assert kept.orphans == ["worker"] and not kept.failed
        assert "not in the playbook" in env.output.getvalue()
        assert env.running("worker")  # still there without --prune
        pruned = env.deploy(prune=True)
        assert not pruned.failed and pruned.orphans == ["worker"]
        assert env.containers("worker") == []
        label = {"label": [f"dockyard.project={env.project}", "dockyard.app=worker"]}
        assert env.client.api.networks(filters=label) == []
        volumes = (env.client.api.volumes(filters=label) or {}).get("Volumes") or []
        assert [v["Name"] for v in volumes] == [f"{env.project}-test-worker-state"]  # only --prune-volumes
        env.deploy(prune=True, prune_volumes=True)
        assert (env.client.api.volumes(filters=label) or {}).get("Volumes") in (None, [])
    finally:
        env.apps["worker"] = worker


def test_failing_build_shows_its_log_tail(env: Env, first) -> None:
    env.apps["broken"] = {
        "template": "generic",
        "context": "worker",
        "command": ["sh", "/app/worker.sh"],
        "vars": {"base_image": image_ref("base", env.client), "run": ["echo dockyard-build-marker && exit 3"]},
    }
    try:
        result = env.deploy(only=["broken"])
        r = cli(env, "deploy", "-p", "test.yml", "--app", "broken", "--json")
        assert r.returncode == 1, r.stderr  # a failed step: exit 1, one JSON document saying so
        assert json.loads(r.stdout)["ok"] is False and "dockyard-build-marker" in r.stdout
    finally:
        env.apps.pop("broken")
    assert result.failed
    failed = [t for t in result.recap.results if t.status.value == "failed"]
    assert [t.task for t in failed] == ["app broken: image"]
    assert "build of" in failed[0].message and "dockyard-build-marker" in failed[0].message
    assert env.containers("broken") == []
    assert [t.task for t in result.recap.results if t.status.value == "skipped"] == [
        "app broken: volumes",
        "app broken: container",
        "app broken: old images",
    ]
