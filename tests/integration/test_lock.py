"""The deploy lock and the audit log, end to end: the `dockyard` CLI (subprocesses, as a user or a CI job runs it)
deploying over real SSH (the test sshd) to this machine's engine, with a unique project name.

In order, against one deployment: `lock.acquire -m msg` makes `deploy` refuse naming msg and touch nothing;
`lock.release` lets it run; two deploys started together: one deploys and the other refuses, then (with
`--lock-wait`) both run, one after the other; every container healthy and the lock free afterwards; the audit log
holds the lock and deploy entries in order.

The app's health check sleeps 2 s, so a deploy that replaces its container holds the lock for seconds: long
enough that two runs started together meet.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.helpers import ROOT, cli_env, dockyard, explain, json_of, remove_labelled
from tests.images import image_ref

pytestmark = pytest.mark.integration

FIXTURES = ROOT / "tests" / "fixtures" / "apps"
MESSAGE = "db migration by ada, back at 15:00"


class Env:
    def __init__(self, root: Path, project: str, sshd: Any, docker_client: Any) -> None:
        self.root, self.project, self.sshd, self.client = root, project, sshd, docker_client
        shutil.copytree(FIXTURES / "worker", root / "worker")
        self.cli = cli_env()
        self.path = root / "test.yml"
        self.write(round_=1)

    def write(self, round_: int) -> None:
        doc = {
            "project": self.project, "environment": "test", "provider": "existing",
            "host": {"address": "127.0.0.1"},
            "ssh": {"port": self.sshd.port, "user": "root", "key_file": str(self.sshd.key_file),
                    "known_hosts": str(self.sshd.known_hosts)},
            "apps": {"worker": {
                "template": "generic", "context": "worker", "command": ["sh", "/app/worker.sh"],
                "vars": {"base_image": image_ref("base", self.client)},
                "env": {"HEARTBEAT_FILE": "/tmp/heartbeat", "ROUND": str(round_)},  # a new round: a new container
                "healthcheck": {"cmd": ["sh", "-c", "sleep 2 && sh /app/healthcheck.sh"], "interval": "1s",
                                "timeout": "5s", "wait": "90s"},
            }},
        }
        self.path.write_text(yaml.safe_dump(doc, sort_keys=False))

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return dockyard(self.cli, *args, "-p", str(self.path), timeout=timeout)

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "provision", *args, "-p", str(self.path)], cwd=ROOT,
                                env=self.cli, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL)

    def containers(self) -> list[dict[str, Any]]:
        return self.client.api.containers(all=True, filters={"label": [f"dockyard.project={self.project}"]})

    def assert_settled(self, round_: int) -> None:
        """Nothing half-done: one container running, healthy, of this round (earlier rounds' are stopped
        releases, kept for rollback); no one-off or candidate container left; the lock free."""
        everything = self.containers()
        found = [c for c in everything if c["State"] == "running"]
        assert len(found) == 1, [c["Names"] for c in everything]
        assert all(c["State"] == "exited" and "dockyard.role" not in c["Labels"] for c in everything
                   if c not in found), [(c["Names"], c["State"]) for c in everything]
        info = self.client.api.inspect_container(found[0]["Id"])
        assert info["State"]["Health"]["Status"] == "healthy"
        assert f"ROUND={round_}" in info["Config"]["Env"]
        assert json_of(self.run("lock.status", "--json"))["held"] is False


def finish(proc: subprocess.Popen[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=30)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.fixture(scope="module")
def env(sshd, docker_client, tmp_path_factory: pytest.TempPathFactory):
    e = Env(tmp_path_factory.mktemp("lock"), f"dyt-{secrets.token_hex(4)}", sshd, docker_client)
    try:
        yield e
    finally:
        remove_labelled(e.project)
        shutil.rmtree(f"/var/lib/dockyard/{e.project}-test", ignore_errors=True)


def test_a_lock_taken_by_hand_refuses_deploy_naming_its_message(env: Env) -> None:
    done = env.run("lock.acquire", "-m", MESSAGE)
    assert done.returncode == 0, explain(done)
    status = json_of(env.run("lock.status", "--json"))
    assert status["held"] is True and status["stale"] is False
    assert status["holder"]["message"] == MESSAGE and status["holder"]["command"] == "lock.acquire"
    refused = env.run("deploy")
    assert refused.returncode == 1, explain(refused)
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and MESSAGE in lines[0] and "lock.acquire" in lines[0], explain(refused)
    assert env.containers() == []  # nothing was touched
    again = env.run("lock.acquire", "-m", "a second hand")
    assert again.returncode == 1 and MESSAGE in again.stderr, explain(again)


def test_after_lock_release_deploy_runs(env: Env) -> None:
    done = env.run("lock.release")
    assert done.returncode == 0 and "released" in done.stdout, explain(done)
    deployed = env.run("deploy", "--json")
    assert json_of(deployed)["ok"] is True
    env.assert_settled(1)


def test_two_deploys_started_together_one_deploys_the_other_refuses(env: Env) -> None:
    env.write(round_=2)
    procs = [env.start("deploy"), env.start("deploy")]
    done = [finish(p) for p in procs]
    codes = sorted(d.returncode for d in done)
    assert codes == [0, 1], "\n\n".join(explain(d) for d in done)
    refused = next(d for d in done if d.returncode == 1)
    assert "deploy lock of test is held by" in refused.stderr and "`deploy`" in refused.stderr, explain(refused)
    env.assert_settled(2)


def test_two_deploys_with_lock_wait_run_one_after_the_other(env: Env) -> None:
    env.write(round_=3)
    procs = [env.start("deploy", "--lock-wait", "3m", "--json"), env.start("deploy", "--lock-wait", "3m", "--json")]
    done = [finish(p) for p in procs]
    docs = [json_of(d) for d in done]
    assert sorted(doc["changed"] for doc in docs)[0] == 0 and sorted(doc["changed"] for doc in docs)[1] > 0
    assert any("waiting up to 180s" in d.stderr for d in done), "\n\n".join(explain(d) for d in done)
    env.assert_settled(3)


def test_the_audit_log_has_the_lock_and_deploy_entries_in_order(env: Env) -> None:
    doc = json_of(env.run("audit", "-n", "50", "--json"))
    seen = [(e["command"], e["result"]) for e in doc["entries"]]
    assert seen == [("lock.acquire", "changed"), ("lock.release", "changed"), ("deploy", "changed"),
                    ("deploy", "changed"), ("deploy", "changed"), ("deploy", "ok")], seen
    assert all(e["apps"] == ["worker"] for e in doc["entries"][2:])
    assert MESSAGE in doc["entries"][0]["message"] and MESSAGE in doc["entries"][1]["message"]
    text = env.run("audit", "-n", "2")
    assert text.returncode == 0 and len(text.stdout.strip().splitlines()) == 2, explain(text)
    mode = Path(f"/var/lib/dockyard/{env.project}-test/audit.jsonl").stat().st_mode & 0o777
    assert mode == 0o600
