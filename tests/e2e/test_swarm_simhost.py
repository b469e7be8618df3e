"""Several hosts as one environment: THREE fresh sim hosts (stock sshd, no engine) given as `provider: existing`
with `host.addresses` ("127.0.0.1:<each published SSH port>") and `engine.mode: swarm`. One `setup` installs
the three engines in parallel and forms one swarm (the first host inits, the others join as workers, each
advertising its own bridge address, never 127.0.0.1); a second `setup` changes nothing.

Traffic: only the sim hosts' SSH on 127.0.0.1 from here; the swarm's own traffic (2377/7946/4789) stays between
the sim hosts on the default bridge. Swarm runs only inside the sim hosts, never on this machine's engine.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from tests.e2e.helpers import cli_env, dockyard, json_of
from tests.simhost import SimHost, start_simhost, stop_simhost

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
        for i in range(3):
            if hosts:  # one key for the environment (ssh.key_file): the next host authorizes the same key
                for suffix in ("", ".pub"):
                    shutil.copy(f"{hosts[0].key_file}{suffix}", workdir / f"{unique}-node{i}_ed25519{suffix}")
            hosts.append(start_simhost(f"{unique}-node{i}", workdir))
        playbook = tmp_path / "playbooks" / "swarm.yml"
        playbook.parent.mkdir()
        addresses = ", ".join(f'"{h.host}:{h.port}"' for h in hosts)
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
""")
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

        second = json_of(dockyard(env, "setup", "-p", str(playbook), "--json"))
        assert [(h["changed"], h["failed"]) for h in second["hosts"]] == [(0, 0)] * 3, second["hosts"]
        assert len(ready_nodes(hosts[0])) == 3  # nothing joined twice
    finally:
        for host in hosts:
            stop_simhost(host)
