"""`logs`, `exec`, `releases` and `rollback` in swarm mode on TWO sim hosts (stock sshd, no engine) given as one
`provider: existing` environment with `host.addresses`: `setup` forms the swarm (the first host a manager, the
second a worker), `deploy` runs a `build: local` static site as a service of 1 replica placed on workers only
(`node.role==worker`), so its task runs on the SECOND host, never on the first (the one dockyard reaches the
swarm through). Each sim host publishes the app's port to 127.0.0.1 (extra_ports).

- `status --json` shows both nodes ready and the one replica on the worker;
- `exec` reaches the task's container on the worker (it prints that container's hostname), `--node` of the
  first host fails (no task there);
- `logs` shows the line the app printed, prefixed with the task and the worker's hostname as docker does
  (also `logs -f`, which keeps following);
- `rollback` right after the first deploy: nothing to roll back to (exit 1); `--to`: refused (exit 2);
- deploy v2, then `rollback --check` changes nothing and `rollback` serves v1 again on the worker's port;
  `releases --json` shows the current and the previous release before and after.

Traffic: only 127.0.0.1 from here; swarm traffic stays between the sim hosts. Swarm runs only inside them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.helpers import ROOT, cli_env, dockyard, explain, json_of, remove_labelled, swarm_playbook_head
from tests.e2e.test_swarm_services_simhost import answers, service
from tests.e2e.test_swarm_simhost import ready_nodes
from tests.images import image_ref
from tests.simhost import SimHost, start_simhosts, stop_simhost

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]

PORT = 18080
FOLLOW_WAIT = 60.0


def task_container(host: SimHost, name: str) -> tuple[str, str]:
    """(container id, its hostname) of the service's one running task container on `host` (docker, directly)."""
    code, out = host.exec(f"docker ps -q --no-trunc --filter label=com.docker.swarm.service.name={name}")
    assert code == 0, out
    ids = out.split()
    assert len(ids) == 1, out
    code, hostname = host.exec(f"docker inspect -f '{{{{.Config.Hostname}}}}' {ids[0]}")
    assert code == 0, hostname
    return ids[0], hostname.strip()


def releases(env: dict[str, str], playbook: Path) -> list[tuple[str, str, bool]]:
    done = dockyard(env, "releases", "-p", str(playbook), "--json")
    assert done.returncode == 0, explain(done)
    return [(r["release"], r["state"], r["current"]) for r in json.loads(done.stdout)]


def follow_logs(env: dict[str, str], playbook: Path, marker: str) -> tuple[str, bool]:
    """`logs -f` until `marker` shows (bounded): (what it printed, whether it was still following then)."""
    out = playbook.parent / "follow.log"
    with out.open("wb") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "provision", "logs", "-p", str(playbook), "--app", "site",
                                 "-f", "-n", "0"], cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + FOLLOW_WAIT
            while marker not in out.read_text(errors="replace") and time.monotonic() < deadline:
                time.sleep(0.5)
            running = proc.poll() is None
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    return out.read_text(errors="replace"), running


def test_logs_exec_releases_and_rollback_reach_a_task_on_another_node(tmp_path: Path, unique: str) -> None:
    workdir = tmp_path / "simhost"
    hosts: list[SimHost] = []
    site = tmp_path / "apps" / "site"
    site.mkdir(parents=True)
    try:
        hosts.extend(start_simhosts(unique, workdir, 2, extra_ports=(PORT,)))
        leader, worker = hosts
        playbook = tmp_path / "playbooks" / "swarm.yml"
        playbook.parent.mkdir()
        marker = f"hello-from-{unique}"

        def write(version: str) -> None:
            (site / "index.html").write_text(f"<h1>{unique} {version}</h1>\n")
            playbook.write_text(f"""\
{swarm_playbook_head(unique, hosts, tmp_path)}apps:
  site:
    template: static-site
    context: ../apps/site
    vars: {{base_image: "{image_ref('static')}"}}
    build: local
    port: 8080
    publish: {PORT}
    replicas: 1
    placement: [node.role==worker]
    memory: 64m
    command: [sh, -c, 'echo {marker}; exec busybox httpd -f -v -p 8080 -h /srv/www']
""")

        env = cli_env()
        write("v1")
        setup = json_of(dockyard(env, "setup", "-p", str(playbook), "--json"))
        assert all(h["failed"] == 0 for h in setup["hosts"]), setup["hosts"]
        assert [n["Status"] for n in ready_nodes(leader)] == ["Ready"] * 2
        first = dockyard(env, "deploy", "-p", str(playbook), "--json")
        assert all(h["failed"] == 0 for h in json_of(first)["hosts"]), explain(first)
        name = f"{unique}-swarm-site"
        assert answers([worker], "v1") == [True]
        v1 = service(leader, name)["Spec"]["Labels"]["dockyard.release"]

        # status: both nodes ready; the one replica runs on the worker, none on the first host
        shown = dockyard(env, "status", "-p", str(playbook), "--json")
        assert shown.returncode == 0, explain(shown)
        doc = json.loads(shown.stdout)
        assert sorted(n["status"] for n in doc["nodes"]) == ["Ready", "Ready"], doc["nodes"]
        _, worker_node = worker.exec("hostname")
        assert [(r["app"], r["release"], r["replicas"], r["nodes"]) for r in doc["services"]] == [
            ("site", v1, {"desired": 1, "running": 1}, {worker_node.strip(): 1})], doc["services"]

        # exec: the task runs on the worker only; dockyard reaches its container there
        cid, task_hostname = task_container(worker, name)
        code, out = leader.exec(f"docker ps -q --filter label=com.docker.swarm.service.name={name}")
        assert (code, out.strip()) == (0, "")
        ran = dockyard(env, "exec", "-p", str(playbook), "--app", "site", "--", "cat", "/etc/hostname")
        assert ran.returncode == 0, explain(ran)
        assert ran.stdout.strip() == task_hostname
        failing = dockyard(env, "exec", "-p", str(playbook), "--app", "site", "--", "sh", "-c", "exit 7")
        assert failing.returncode == 7, explain(failing)
        on_leader = dockyard(env, "exec", "-p", str(playbook), "--app", "site", "--node", f"{unique}-swarm-1",
                             "--", "true")
        assert on_leader.returncode == 1, explain(on_leader)
        assert "no running task on" in on_leader.stdout + on_leader.stderr

        # logs: through the manager, from the task on the worker, prefixed with the task and its node
        logged = dockyard(env, "logs", "-p", str(playbook), "--app", "site", "-n", "0")
        assert logged.returncode == 0, explain(logged)
        _, worker_hostname = worker.exec("hostname")
        lines = [line for line in logged.stdout.splitlines() if marker in line]
        assert lines, explain(logged)
        assert lines[0].startswith(f"{name}.1.") and f"@{worker_hostname.strip()} | " in lines[0], lines[0]
        followed, still_running = follow_logs(env, playbook, marker)
        assert marker in followed and still_running, followed

        # rollback: nothing to go back to yet; --to refused; releases shows the one current release
        nothing = dockyard(env, "rollback", "-p", str(playbook), "--app", "site")
        assert nothing.returncode == 1, explain(nothing)
        assert "nothing to roll back to" in nothing.stdout + nothing.stderr
        refused = dockyard(env, "rollback", "-p", str(playbook), "--app", "site", "--to", v1)
        assert refused.returncode == 2, explain(refused)
        assert releases(env, playbook) == [(v1, "current", True)]

        write("v2")
        second = dockyard(env, "deploy", "-p", str(playbook), "--json")
        assert all(h["failed"] == 0 for h in json_of(second)["hosts"]), explain(second)
        assert answers([worker], "v2") == [True]
        v2 = service(leader, name)["Spec"]["Labels"]["dockyard.release"]
        assert v2 != v1
        assert releases(env, playbook) == [(v2, "current", True), (v1, "previous", False)]

        checked = json_of(dockyard(env, "rollback", "-p", str(playbook), "--app", "site", "--check", "--json"))
        assert (checked["release"], checked["hosts"][0]["changed"]) == (v1, 1), checked
        assert service(leader, name)["Spec"]["Labels"]["dockyard.release"] == v2  # --check changed nothing

        rolled = dockyard(env, "rollback", "-p", str(playbook), "--app", "site", "--json")
        doc = json_of(rolled)
        assert (doc["release"], doc["hosts"][0]["changed"], doc["hosts"][0]["failed"]) == (v1, 1, 0), explain(rolled)
        assert answers([worker], "v1") == [True]
        assert service(leader, name)["Spec"]["Labels"]["dockyard.release"] == v1
        assert releases(env, playbook) == [(v1, "current", True), (v2, "previous", False)]
        assert task_container(worker, name)[0] != cid  # a new task: v1's spec again
        code, audit = leader.exec(f"tail -n 1 ~deploy/.dockyard/{unique}-swarm/audit.jsonl")
        assert code == 0, audit
        entry = json.loads(audit)
        assert (entry["command"], entry["releases"], entry["result"]) == ("rollback", [v1], "changed"), entry
    finally:
        for host in hosts:
            stop_simhost(host)
        remove_labelled(unique)
