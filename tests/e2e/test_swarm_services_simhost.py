"""Apps as Swarm services on THREE sim hosts (stock sshd, no engine) given as one `provider: existing`
environment with `host.addresses` and `engine.mode: swarm`: ONE `up` installs the engines, forms the swarm
and runs a `build: local` static site (built here, shipped to every node) as a service of 3 replicas with a host-mode
published port; each sim host publishes that port to 127.0.0.1 (extra_ports), so every replica is reached from
here. A changed version rolls to every replica; a broken one (its tasks exit) rolls back by itself with the
old version still answering, and the run exits 1; a second `up` changes nothing and leaves UpdatedAt alone.
Sim hosts have no IPVS: the deploy says so and uses dnsrr. The site has a secret (SITE_TOKEN): a changed value
is a new Swarm secret; the old one is kept while the service's PreviousSpec uses it and removed by the deploy
after. An `image:` app (`pull: never`: the offline sim hosts get it shipped) runs beside it, its image id in the
config hash (so the second `up` is a no-op for it too). Node loss: the third sim host is stopped; `status`
shows its node down and the replicas running on the other two.

Traffic: only 127.0.0.1 from here; swarm traffic stays between the sim hosts. Swarm runs only inside them.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.helpers import cli_env, dockyard, explain, get, json_of, remove_labelled, swarm_playbook_head
from tests.e2e.test_swarm_simhost import ready_nodes
from tests.images import image_ref
from tests.simhost import SimHost, start_simhosts, stop_simhost

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]

PORT = 18080
ANSWER_WAIT = 120.0
NODE_LOSS_WAIT = 180.0


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


def secrets_of(leader: SimHost, project: str) -> list[str]:
    code, out = leader.exec(f"docker secret ls --filter label=dockyard.project={project} --format '{{{{.Name}}}}'")
    assert code == 0, out
    return sorted(out.split())


def task_container(hosts: list[SimHost], service_name: str) -> dict:
    """`docker inspect` of one running task container of the service (on whichever node has one)."""
    for host in hosts:
        code, out = host.exec(f"docker ps -q --filter label=com.docker.swarm.service.name={service_name}")
        if code == 0 and out.split():
            code, out = host.exec(f"docker inspect {out.split()[0]}")
            assert code == 0, out
            return json.loads(out)[0]
    raise AssertionError(f"no running task of {service_name} on any node")


def node_loss_view(env: dict[str, str], playbook: Path, lost: str) -> dict:
    """Poll `status --json` (bounded) until the lost node is down and no running task is counted on it."""
    deadline = time.monotonic() + NODE_LOSS_WAIT
    view: dict = {}
    while time.monotonic() < deadline:
        doc = json_of(dockyard(env, "status", "-p", str(playbook), "--json"))
        nodes = {n["hostname"]: n["status"].lower() for n in doc["nodes"]}
        services = {row["app"]: row for row in doc["services"]}
        view = {"lost": nodes.get(lost), "ready": sum(1 for s in nodes.values() if s == "ready"),
                "services": services}
        settled = all(lost not in row["nodes"] for row in services.values()) and all(
            row["replicas"]["running"] >= min(row["replicas"]["desired"], 2) for row in services.values())
        if view["lost"] == "down" and settled:
            return view
        time.sleep(5)
    return view


def test_apps_run_as_replicated_services_with_rolling_updates(tmp_path: Path, unique: str) -> None:
    workdir = tmp_path / "simhost"
    hosts: list[SimHost] = []
    site = tmp_path / "apps" / "site"
    site.mkdir(parents=True)
    try:
        hosts.extend(start_simhosts(unique, workdir, 3, extra_ports=(PORT,)))
        playbook = tmp_path / "playbooks" / "swarm.yml"
        playbook.parent.mkdir()

        def write(version: str, extra: str = "", token: str = "t1") -> None:
            env["SITE_TOKEN"] = f"{unique}-{token}"
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
    replicas: 3
    memory: 64m
    secrets: [SITE_TOKEN]
{extra}  tool:
    image: "{image_ref('static')}"
    pull: never
    command: [busybox, httpd, -f, -p, "8090"]
""")

        env = cli_env()
        write("v1")
        # ONE `up` on three hosts without an engine: engines installed, the swarm formed, the apps as services
        first = dockyard(env, "up", "-p", str(playbook), "--json")
        doc = json_of(first)
        assert [h["host"] for h in doc["hosts"]] == [f"{unique}-swarm-{i}" for i in (1, 2, 3)], explain(first)
        assert all(h["failed"] == 0 and h["changed"] > 0 for h in doc["hosts"]), explain(first)
        assert [n["Status"] for n in ready_nodes(hosts[0])] == ["Ready"] * 3
        name, tool = f"{unique}-swarm-site", f"{unique}-swarm-tool"
        assert sorted(doc["services"]) == [name, tool]
        spec = service(hosts[0], name)["Spec"]
        assert spec["Mode"]["Replicated"]["Replicas"] == 3
        # the sim hosts' kernel has no IPVS: detected, said once, dnsrr + host-mode ports
        assert doc["endpoint_mode"] == "dnsrr" and spec["EndpointSpec"]["Mode"] == "dnsrr"
        assert first.stderr.count("no IPVS in the kernel of") == 1, explain(first)
        assert spec["EndpointSpec"]["Ports"][0]["PublishMode"] == "host"
        # hardening reaches the task's container as it reaches a standalone one
        task = task_container(hosts, name)
        container_spec = spec["TaskTemplate"]["ContainerSpec"]
        assert task["HostConfig"]["Init"] is True
        assert task["HostConfig"]["ReadonlyRootfs"] is bool(container_spec.get("ReadOnly"))
        # the sim hosts' engine (API 1.41) drops the field, and the task has no no-new-privileges (the gap in
        # STATUS); a current engine keeps both
        kept = bool((container_spec.get("Privileges") or {}).get("NoNewPrivileges"))
        assert ("no-new-privileges" in (task["HostConfig"]["SecurityOpt"] or [])) is kept
        # the image app: shipped to every node (they cannot pull), run by its reference (no registry digest)
        tool_spec = service(hosts[0], tool)["Spec"]
        assert tool_spec["TaskTemplate"]["ContainerSpec"]["Image"] == image_ref("static")
        assert tool_spec["Labels"]["dockyard.image"] == image_ref("static")
        assert len(task_nodes(hosts[0], tool)) == 1
        [t1_secret] = secrets_of(hosts[0], unique)
        assert spec["UpdateConfig"]["FailureAction"] == "rollback"
        assert len(set(task_nodes(hosts[0], name))) >= 2
        assert answers(hosts, "v1") == [True] * 3

        before = service(hosts[0], name)
        second = json_of(dockyard(env, "up", "-p", str(playbook), "--json"))  # engines, swarm, services: no-op
        assert [(h["changed"], h["failed"]) for h in second["hosts"]] == [(0, 0)] * 3, second["hosts"]
        after = service(hosts[0], name)
        assert (after["UpdatedAt"], after["Version"]) == (before["UpdatedAt"], before["Version"])

        write("v2", token="t2")  # a new secret value too: a new Swarm secret
        rolled = dockyard(env, "deploy", "-p", str(playbook), "--json")
        assert all(h["failed"] == 0 for h in json_of(rolled)["hosts"]), explain(rolled)
        assert service(hosts[0], name)["UpdatedAt"] != after["UpdatedAt"]
        assert answers(hosts, "v2") == [True] * 3
        both = secrets_of(hosts[0], unique)
        assert len(both) == 2 and t1_secret in both  # the old one: the PreviousSpec (a rollback) still uses it

        after_v2 = service(hosts[0], name)
        write("v3", "    command: [sh, -c, 'exit 3']\n", token="t2")  # every new task exits: it rolls back
        broken = dockyard(env, "deploy", "-p", str(playbook), "--json")
        assert broken.returncode == 1, explain(broken)
        assert "roll" in broken.stdout + broken.stderr
        state = service(hosts[0], name)
        assert state["UpdateStatus"]["State"].startswith("rollback")
        assert state["Spec"]["Labels"]["dockyard.config-hash"] == after_v2["Spec"]["Labels"]["dockyard.config-hash"]
        assert answers(hosts, "v2") == [True] * 3

        write("v4", token="t2")  # the next good update: no spec uses the t1 secret any more, it goes
        last = dockyard(env, "deploy", "-p", str(playbook), "--json")
        assert all(h["failed"] == 0 for h in json_of(last)["hosts"]), explain(last)
        assert answers(hosts, "v4") == [True] * 3
        assert secrets_of(hosts[0], unique) == [s for s in both if s != t1_secret]

        # node loss: the third host stops (its engine with it); the swarm marks it down and `status` shows it,
        # with the replicas running on the other two nodes (its site task cannot move: the host-mode port is
        # taken on both; the one-replica tool moves if it ran there)
        code, lost = hosts[2].exec("hostname")
        assert code == 0, lost
        lost = lost.strip()
        subprocess.run(["docker", "stop", "-t", "1", hosts[2].name], capture_output=True, timeout=60, check=True)
        view = node_loss_view(env, playbook, lost)
        assert view["lost"] == "down", view
        assert view["ready"] == 2, view
        site_row, tool_row = view["services"]["site"], view["services"]["tool"]
        assert lost not in site_row["nodes"] and lost not in tool_row["nodes"], view
        assert site_row["replicas"] == {"desired": 3, "running": 2}, view
        assert sum(site_row["nodes"].values()) == 2 and len(site_row["nodes"]) == 2, view
        assert tool_row["replicas"] == {"desired": 1, "running": 1}, view
        assert answers(hosts[:2], "v4") == [True] * 2
    finally:
        for host in hosts:
            stop_simhost(host)
        remove_labelled(unique)
