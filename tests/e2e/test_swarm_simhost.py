"""Several hosts as one environment: THREE fresh sim hosts (stock sshd, no engine) given as `provider: existing`
with `host.addresses` ("127.0.0.1:<each published SSH port>") and `engine.mode: swarm`. One `setup` installs
the three engines in parallel and forms one swarm (the first host inits, the others join as workers, each
advertising its own bridge address, never 127.0.0.1); a second `setup` changes nothing.

Traffic: only the sim hosts' SSH on 127.0.0.1 from here; the swarm's own traffic (2377/7946/4789) stays between
the sim hosts on the default bridge. Swarm runs only inside the sim hosts, never on this machine's engine.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.e2e.helpers import cli_env, dockyard, json_of, swarm_playbook_head
from tests.simhost import SimHost, start_simhosts, stop_simhost

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]

NODE_WAIT = 90.0


def ready_nodes(leader: SimHost) -> list[dict[str, str]]:
    """`docker node ls` on the first host (through `docker exec`, independent of dockyard), once every node is
    Ready or the bounded wait is over."""
    deadline = time.monotonic() + NODE_WAIT
    while True:
        code, out = leader.exec("docker node ls --format '{{json .}}'")
        assert code == 0, out
        nodes = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        if all(n["Status"] == "Ready" for n in nodes) or time.monotonic() > deadline:
            return nodes
        time.sleep(2)


def test_setup_forms_one_swarm_over_three_sim_hosts(tmp_path: Path, unique: str) -> None:
    workdir = tmp_path / "simhost"
    hosts: list[SimHost] = []
    try:
        hosts.extend(start_simhosts(unique, workdir, 3))
        playbook = tmp_path / "playbooks" / "swarm.yml"
        playbook.parent.mkdir()
        playbook.write_text(swarm_playbook_head(unique, hosts, tmp_path))
        assert all(h.exec("command -v docker")[0] != 0 for h in hosts)  # fresh "VMs"
        env = cli_env()
        first = json_of(dockyard(env, "setup", "-p", str(playbook), "--json"))
        assert [h["host"] for h in first["hosts"]] == [f"{unique}-swarm-{i}" for i in (1, 2, 3)]
        assert all(h["failed"] == 0 and h["changed"] > 0 for h in first["hosts"]), first["hosts"]

        nodes = ready_nodes(hosts[0])
        assert sorted(n["Hostname"] for n in nodes) == sorted(h.name for h in hosts)
        assert [n["Status"] for n in nodes] == ["Ready"] * 3, nodes
        assert [n["Hostname"] for n in nodes if n["ManagerStatus"] == "Leader"] == [hosts[0].name]
        for host in hosts:
            code, out = host.exec("docker info --format '{{.Swarm.NodeAddr}}'")
            assert code == 0 and out.strip() and not out.startswith("127."), out  # its bridge address

        second = dockyard(env, "setup", "-p", str(playbook), "--json")
        doc = json_of(second)
        assert [(h["changed"], h["failed"]) for h in doc["hosts"]] == [(0, 0)] * 3, doc["hosts"]
        assert len(ready_nodes(hosts[0])) == 3  # nothing joined twice
        for role in ("worker", "manager"):  # the join tokens travel on stdin: never in dockyard's output
            token = hosts[0].exec(f"docker swarm join-token -q {role}")[1].strip()
            assert token.startswith("SWMTKN-") and token not in second.stdout + second.stderr

        # the third host is "replaced": it leaves (its old entry turns Down on the leader) and comes back fresh
        old_id = hosts[2].exec("docker info --format '{{.Swarm.NodeID}}'")[1].strip()
        assert hosts[2].exec("docker swarm leave --force")[0] == 0
        deadline = time.monotonic() + NODE_WAIT
        while time.monotonic() < deadline and "Down" not in hosts[0].exec(
                f"docker node inspect -f '{{{{.Status.State}}}}' {old_id}")[1].title():
            time.sleep(2)
        third = json_of(dockyard(env, "setup", "-p", str(playbook), "--json"))
        changed = {h["host"]: [t["task"] for t in h["tasks"] if t["status"] == "changed"] for h in third["hosts"]}
        assert changed == {f"{unique}-swarm-1": ["swarm nodes"], f"{unique}-swarm-2": [],
                           f"{unique}-swarm-3": ["swarm join"]}, changed
        nodes = ready_nodes(hosts[0])
        assert sorted(n["Hostname"] for n in nodes) == sorted(h.name for h in hosts)  # the old entry is gone
        assert old_id not in [n["ID"] for n in nodes] and [n["Status"] for n in nodes] == ["Ready"] * 3

        status = json_of(dockyard(env, "status", "-p", str(playbook), "--json"))
        assert sorted((n["hostname"], n["status"]) for n in status["nodes"]) == sorted(
            (h.name, "Ready") for h in hosts)
        assert [n["hostname"] for n in status["nodes"] if n["manager_status"] == "Leader"] == [hosts[0].name]
        deploy = json_of(dockyard(env, "deploy", "-p", str(playbook), "--json"))  # no apps: nothing to do
        assert [(h["changed"], h["failed"]) for h in deploy["hosts"]] == [(0, 0)] * 3, deploy["hosts"]
    finally:
        for host in hosts:
            stop_simhost(host)
