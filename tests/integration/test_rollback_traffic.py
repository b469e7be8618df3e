"""Releases, rollback, the lock and the audit log over real SSH (the stock test sshd) to this machine's engine,
behind the front proxy, with the playbook in a git repository (release ids are commits).

deploy v1 (commit A) → deploy v2 (commit B) → `releases --json` lists both, B current → under continuous
traffic: `rollback` serves v1 without building anything, `rollback --to B` serves v2 again, 0 failed requests
→ a held lock makes `rollback` refuse naming its message → the audit log has every entry, in order.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cli import run_cli
from tests.e2e.helpers import remove_labelled
from tests.images import image_ref
from tests.ports import free_port
from tests.traffic import Traffic

pytestmark = pytest.mark.integration

APP_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "apps" / "versioned"


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30, check=True)
    return done.stdout.strip()


def test_rollback_and_forward_under_traffic_with_lock_and_audit(sshd, docker_client, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    import secrets

    project = f"dyt-{secrets.token_hex(4)}"
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copytree(APP_DIR, repo / "versioned")
    http_port = free_port()
    playbook = repo / "test.yml"
    app: dict[str, Any] = {
        "template": "generic", "context": "versioned", "command": ["python3", "-u", "app.py"],
        "vars": {"base_image": image_ref("python", docker_client)}, "port": 8000, "domains": ["shop.test"],
        "drain": "10s", "env": {"VERSION": "v1", "APP_NAME": "shop"},
        "healthcheck": {"http": "/", "interval": "1s", "retries": 2, "wait": "30s"},
    }

    def write_and_commit(message: str) -> str:
        playbook.write_text(yaml.safe_dump({
            "project": project, "environment": "test", "provider": "existing", "host": {"address": "127.0.0.1"},
            "ssh": {"port": sshd.port, "user": "root", "key_file": str(sshd.key_file),
                    "known_hosts": str(sshd.known_hosts)},
            "proxy": {"http": f"127.0.0.1:{http_port}", "tls": "off", "image": "dockyard/caddy:bookworm"},
            "apps": {"shop": app}}, sort_keys=False))
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", message)
        return git(repo, "rev-parse", "--short=10", "HEAD")

    def cli(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = run_cli(*args, "-p", str(playbook))
        out, err = capsys.readouterr()
        return code, out, err

    def images() -> set[str]:
        return {i["Id"] for i in docker_client.api.images(filters={"label": [f"dockyard.project={project}"]})}

    git(repo, "init", "-q")
    git(repo, "config", "user.email", "ci@example.com")
    git(repo, "config", "user.name", "CI Runner")
    try:
        a = write_and_commit("v1")
        assert cli("deploy")[0] == 0
        app["env"] = {"VERSION": "v2", "APP_NAME": "shop"}
        b = write_and_commit("v2")
        assert cli("deploy")[0] == 0

        code, out, _ = cli("releases", "--json")
        assert code == 0
        listed = json.loads(out)
        assert [(r["app"], r["release"], r["current"]) for r in listed] == [("shop", b, True), ("shop", a, False)]
        assert all({"app", "release", "image", "created", "current"} <= set(r) for r in listed)

        built = images()
        with Traffic(http_port, "shop.test", max_seconds=180) as traffic:
            assert traffic.wait_for("v2")
            code, _, err = cli("rollback", "--app", "shop")
            assert code == 0, err
            assert traffic.wait_for("v1")
            code, _, err = cli("rollback", "--app", "shop", "--to", b)
            assert code == 0, err
            assert traffic.wait_for("v2")
        assert images() == built  # no build, no pull: the releases' own images
        assert traffic.failed() == [], traffic.failed()[:5]
        for kind in ("new", "keepalive"):
            assert traffic.versions_in_order(kind) == ["v2", "v1", "v2"], kind
        assert all(s.status == 200 for s in traffic.samples if s.kind == "slow")

        code, _, err = cli("rollback", "--app", "shop", "--to", "nope")
        assert code == 2 and "no release 'nope'" in err and a in err and b in err

        assert cli("lock.acquire", "-m", "release freeze for the demo")[0] == 0
        code, _, err = cli("rollback", "--app", "shop")
        assert code == 1 and "release freeze for the demo" in err
        assert cli("lock.release")[0] == 0

        code, out, _ = cli("audit", "-n", "20", "--json")
        assert code == 0
        entries = json.loads(out)
        entries = entries.get("entries", entries) if isinstance(entries, dict) else entries
        commands = [(e["command"], e.get("releases")) for e in entries]
        assert [c for c, _ in commands] == ["deploy", "deploy", "rollback", "rollback", "rollback", "lock.acquire",
                                           "lock.release"], commands
        assert commands[0][1] == [a] and commands[1][1] == [b] and commands[2][1] == [a]
        assert commands[3][1] == [b]
    finally:
        remove_labelled(project)
        shutil.rmtree(f"/var/lib/dockyard/{project}-test", ignore_errors=True)
