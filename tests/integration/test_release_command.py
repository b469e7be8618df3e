"""`release_command` over real SSH (the stock test sshd) to this machine's engine: it runs once per new release
with the app's env, secrets and volume before the switch; a failing one leaves the old release serving."""

from __future__ import annotations

import io
import shutil
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console

from provision.deploy import deploy
from provision.playbook import load_playbook
from provision.remote import Remote, SshTarget
from provision.report import Reporter
from tests.e2e.helpers import remove_labelled
from tests.images import image_ref
from tests.ports import free_port

pytestmark = pytest.mark.integration

APP_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "apps" / "versioned"
SECRET = "rc-secret-" + "7Yq"
MIGRATE = ("import os,pathlib\n"
           "p=pathlib.Path('/data/migrations.log')\n"
           "p.write_text(p.read_text() if p.exists() else '')\n"
           "with p.open('a') as f: f.write(os.environ['VERSION']+' '+str(len(os.environ['DB_PASSWORD']))+'\\n')\n"
           "print('migrated', os.environ['VERSION'])")
FAIL = "import os,sys; print('boom: password=' + os.environ['DB_PASSWORD']); sys.exit(3)"


def test_release_command_runs_with_the_apps_env_and_volume_and_a_failing_one_keeps_the_old_release(
        sshd, docker_client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import secrets

    project = f"dyt-{secrets.token_hex(4)}"
    shutil.copytree(APP_DIR, tmp_path / "versioned")
    port = free_port()
    monkeypatch.setenv("DB_PASSWORD", SECRET)
    app: dict[str, Any] = {
        "template": "generic", "context": "versioned", "command": ["python3", "-u", "app.py"],
        "vars": {"base_image": image_ref("python", docker_client)}, "port": 8000,
        "publish": f"127.0.0.1:{port}", "env": {"VERSION": "v1", "APP_NAME": "api"}, "secrets": ["DB_PASSWORD"],
        "volumes": {"data": "/data"}, "release_command": ["python3", "-c", MIGRATE],
        "healthcheck": {"http": "/", "interval": "1s", "retries": 2, "wait": "30s"},
    }
    out = io.StringIO()

    def run() -> Any:
        path = tmp_path / "test.yml"
        path.write_text(yaml.safe_dump({
            "project": project, "environment": "test", "provider": "existing", "host": {"address": "127.0.0.1"},
            "ssh": {"port": sshd.port, "user": "root", "key_file": str(sshd.key_file),
                    "known_hosts": str(sshd.known_hosts)}, "apps": {"api": app}}, sort_keys=False))
        pb = load_playbook(path)
        reporter = Reporter(verbose=True, console=Console(file=out, width=200, force_terminal=False))
        with Remote(SshTarget.from_playbook(pb, pb.host.address)) as remote:
            return deploy(pb, remote, reporter=reporter, host="test-host", verbose=True)

    def served() -> str:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        return opener.open(f"http://127.0.0.1:{port}/", timeout=10).read().decode().split()[0]

    def log_in_volume() -> str:
        running = docker_client.api.containers(filters={"label": [f"dockyard.project={project}"]})
        exec_id = docker_client.api.exec_create(running[0]["Id"], ["cat", "/data/migrations.log"])["Id"]
        return docker_client.api.exec_start(exec_id).decode()

    try:
        assert not run().failed
        assert served() == "v1" and log_in_volume() == f"v1 {len(SECRET)}\n"  # env, secret and volume
        assert not run().failed  # no new release: the command does not run again
        assert log_in_volume() == f"v1 {len(SECRET)}\n"
        app["env"] = {"VERSION": "v2", "APP_NAME": "api"}
        assert not run().failed
        assert served() == "v2" and log_in_volume() == f"v1 {len(SECRET)}\nv2 {len(SECRET)}\n"
        app["env"] = {"VERSION": "v3", "APP_NAME": "api"}
        app["release_command"] = ["python3", "-c", FAIL]
        failed = run()
        assert failed.failed
        message = "\n".join(t.message for t in failed.recap.results if t.status.value == "failed")
        assert "release command failed (exit 3)" in message and "boom: password=***" in message
        assert SECRET not in message and SECRET not in out.getvalue()
        assert served() == "v2"  # the old release keeps serving; v3 never started
        names = [c["Names"][0] for c in docker_client.api.containers(
            all=True, filters={"label": [f"dockyard.project={project}"]})]
        assert not [n for n in names if n.endswith("-release")]  # the one-off container is gone
    finally:
        remove_labelled(project)
        shutil.rmtree(f"/var/lib/dockyard/{project}-test", ignore_errors=True)
