"""Apps as Swarm services on THREE sim hosts (stock sshd, no engine) given as one `provider: existing`
environment with `host.addresses` and `engine.mode: swarm`: `setup` forms the swarm, then `deploy` runs a
`build: local` static site (built here, shipped to every node) as a service of 3 replicas with a host-mode
published port; each sim host publishes that port to 127.0.0.1 (extra_ports), so every replica is reached from
here. A changed version rolls to every replica; a broken one (its tasks exit) rolls back by itself with the
old version still answering, and the run exits 1; a second deploy changes nothing and leaves UpdatedAt alone.

Traffic: only 127.0.0.1 from here; swarm traffic stays between the sim hosts. Swarm runs only inside them.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from tests.e2e.helpers import cli_env, dockyard, explain, get, json_of, remove_labelled
from tests.e2e.test_swarm_simhost import ready_nodes
from tests.images import image_ref
from tests.simhost import SimHost, start_simhost, stop_simhost

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]

PORT = 18080
ANSWER_WAIT = 120.0


def answers(hosts: list[SimHost], text: str) -> list[bool]:
    """Does each node's published port answer with `text` (bounded wait per node)?"""
    seen = []
    for host in hosts:
        deadline = time.monotonic() + ANSWER_WAIT
        ok = False
        while not ok and time.monotonic() < deadline:
            try:
                code, body = get(f"http://127.0.0.1:{host.published(PORT)}/", attempts=1, delay=0)
            except AssertionError:  # nothing answered yet
                code, body = 0, ""
            ok = code == 200 and text in body
            if not ok:
                time.sleep(2)
        seen.append(ok)
    return seen


def service(leader: SimHost, name: str) -> dict:
    code, out = leader.exec(f"docker service inspect {name}")
    assert code == 0, out
    return json.loads(out)[0]


def task_nodes(leader: SimHost, name: str) -> list[str]:
    code, out = leader.exec(f"docker service ps {name} --filter desired-state=running --format '{{{{.Node}}}}'")
    assert code == 0, out
    return [line for line in out.split() if line]


def test_apps_run_as_replicated_services_with_rolling_updates(tmp_path: Path, unique: str) -> None:
    workdir = tmp_path / "simhost"
    hosts: list[SimHost] = []
    site = tmp_path / "apps" / "site"
    site.mkdir(parents=True)
    try:
        for i in range(3):
            if hosts:  # one key for the environment: the next host authorizes the same key
                for suffix in ("", ".pub"):
                    shutil.copy(f"{hosts[0].key_file}{suffix}", workdir / f"{unique}-node{i}_ed25519{suffix}")
            hosts.append(start_simhost(f"{unique}-node{i}", workdir, extra_ports=(PORT,)))
        playbook = tmp_path / "playbooks" / "swarm.yml"
        playbook.parent.mkdir()
        addresses = ", ".join(f'"{h.host}:{h.port}"' for h in hosts)

        def write(version: str, extra: str = "") -> None:
            (site / "index.html").write_text(f"<h1>{unique} {version}</h1>\n")
            playbook.write_text(f"""\
project: {unique}
environment: swarm
provider: existing
host:
  addresses: [{addresses}]
ssh:
  user: deploy
  key_file: {hosts[0].key_file}
  known_hosts: {tmp_path / 'known_hosts'}
engine:
  mode: swarm
apps:
  site:
    template: static-site
    context: ../apps/site
    vars: {{base_image: "{image_ref('static')}"}}
    build: local
    port: 8080
    publish: {PORT}
    replicas: 3
    memory: 64m
{extra}""")

        env = cli_env()
        write("v1")
        setup = json_of(dockyard(env, "setup", "-p", str(playbook), "--json"))
        assert all(h["failed"] == 0 for h in setup["hosts"]), setup["hosts"]
        assert [n["Status"] for n in ready_nodes(hosts[0])] == ["Ready"] * 3

        first = dockyard(env, "deploy", "-p", str(playbook), "--json")
        doc = json_of(first)
        assert all(h["failed"] == 0 for h in doc["hosts"]), explain(first)
        name = f"{unique}-swarm-site"
        assert doc["services"] == [name]
        spec = service(hosts[0], name)["Spec"]
        assert spec["Mode"]["Replicated"]["Replicas"] == 3
        assert spec["EndpointSpec"]["Mode"] == "dnsrr"
        assert spec["UpdateConfig"]["FailureAction"] == "rollback"
        assert len(set(task_nodes(hosts[0], name))) >= 2
        assert answers(hosts, "v1") == [True] * 3

        before = service(hosts[0], name)
        second = json_of(dockyard(env, "deploy", "-p", str(playbook), "--json"))
        assert [(h["changed"], h["failed"]) for h in second["hosts"]] == [(0, 0)] * 3, second["hosts"]
        after = service(hosts[0], name)
        assert (after["UpdatedAt"], after["Version"]) == (before["UpdatedAt"], before["Version"])

        write("v2")
        rolled = dockyard(env, "deploy", "-p", str(playbook), "--json")
        assert all(h["failed"] == 0 for h in json_of(rolled)["hosts"]), explain(rolled)
        assert service(hosts[0], name)["UpdatedAt"] != after["UpdatedAt"]
        assert answers(hosts, "v2") == [True] * 3

        after_v2 = service(hosts[0], name)
        write("v3", "    command: [sh, -c, 'exit 3']\n")  # every new task exits: the update rolls back
        broken = dockyard(env, "deploy", "-p", str(playbook), "--json")
        assert broken.returncode == 1, explain(broken)
        assert "roll" in broken.stdout + broken.stderr
        state = service(hosts[0], name)
        assert state["UpdateStatus"]["State"].startswith("rollback")
        assert state["Spec"]["Labels"]["dockyard.config-hash"] == after_v2["Spec"]["Labels"]["dockyard.config-hash"]
        assert answers(hosts, "v2") == [True] * 3
    finally:
        for host in hosts:
            stop_simhost(host)
        remove_labelled(unique)
