"""Swarm facts and plan (engine.mode: swarm). Pure: no network, no clock; the setup phase runs them.

Facts, one round trip per host (`SWARM_FACTS_SCRIPT`, run with sudo): `docker info --format '{{json .Swarm}}'`,
the host's own private address (the source address of its default route, `ip -o route get`), its hostname,
and on a manager `docker node ls --format '{{json .}}'`. `parse_swarm_facts` turns that into `SwarmFacts`.

Plan: the first host is the leader. `plan_init`: `docker swarm init` on it when it is in no swarm.
`plan_members`: every other host not in THIS swarm (its node id absent from the leader's node list) joins —
as a manager when `engine.managers: 3` (hosts 2 and 3), else as a worker; a host that is in another swarm,
or half-joined (pending/error), is an error naming it. `plan_stale_nodes`: node entries that are down and carry
the hostname of one of our hosts under an old id (a replaced host that rejoined) are removed on the leader.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from typing import Any

from provision.changes import Change, Step
from provision.commands import engine as cmd
from provision.errors import StepFailed
from provision.facts import script_sections

SWARM_FACTS_SCRIPT = r"""export LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
sec() { printf '\n@@%s\n' "$1"; }
sec swarm; timeout 20 docker info --format '{{json .Swarm}}' 2>/dev/null
sec route; ip -o route get 1.1.1.1 2>/dev/null || ip -o -6 route get 2606:4700:4700::1111 2>/dev/null
sec hostname; hostname 2>/dev/null || cat /etc/hostname
sec nodes; timeout 20 docker node ls --format '{{json .}}' 2>/dev/null
sec end
"""


@dataclass(frozen=True)
class NodeFacts:
    """One line of `docker node ls --format '{{json .}}'`."""

    id: str
    hostname: str
    status: str  # Ready | Down | Unknown | Disconnected
    availability: str  # Active | Pause | Drain
    manager_status: str  # Leader | Reachable | Unreachable | "" (worker)

    @property
    def down(self) -> bool:
        return self.status.lower() in ("down", "disconnected", "unknown")


@dataclass(frozen=True)
class SwarmFacts:
    state: str  # LocalNodeState: inactive | pending | active | error | locked
    node_id: str = ""
    node_address: str = ""
    control_available: bool = False  # a manager
    cluster_id: str = ""  # only managers know it
    error: str = ""
    advertise_address: str | None = None  # the host's own private address (default route source)
    hostname: str = ""
    nodes: tuple[NodeFacts, ...] = ()  # a manager's view of the swarm
    engine_answers: bool = True

    @property
    def active(self) -> bool:
        return self.state == "active"

    def summary(self) -> dict[str, Any]:
        return {"state": self.state, "node_id": self.node_id, "manager": self.control_available,
                "cluster_id": self.cluster_id, "advertise_address": self.advertise_address,
                "nodes": len(self.nodes)}


def parse_route_source(lines: list[str]) -> str | None:
    """`1.1.1.1 via 172.17.0.1 dev eth0 src 172.17.0.2 uid 0` → "172.17.0.2"; never a loopback address."""
    for line in lines:
        words = line.split()
        if "src" in words and words.index("src") + 1 < len(words):
            try:
                address = ipaddress.ip_address(words[words.index("src") + 1])
            except ValueError:
                continue
            if not address.is_loopback and not address.is_unspecified:
                return str(address)
    return None


def parse_node_list(lines: list[str]) -> tuple[NodeFacts, ...]:
    nodes = []
    for line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise StepFailed("gathering swarm facts: `docker node ls` printed something that is not JSON") from None
        nodes.append(NodeFacts(id=str(row.get("ID", "")), hostname=str(row.get("Hostname", "")),
                               status=str(row.get("Status", "")), availability=str(row.get("Availability", "")),
                               manager_status=str(row.get("ManagerStatus", ""))))
    return tuple(nodes)


def parse_swarm_facts(text: str) -> SwarmFacts:
    # the swarm facts are read without indentation (JSON lines, `ip route`, hostname): strip both sides
    s = {name: [line.strip() for line in lines] for name, lines in script_sections(text).items()}
    if "end" not in s:
        raise StepFailed("gathering swarm facts: the facts script did not finish (output truncated)")
    route = parse_route_source(s.get("route", []))
    hostname = (s.get("hostname") or [""])[0]
    if not s.get("swarm"):
        return SwarmFacts(state="", advertise_address=route, hostname=hostname, engine_answers=False)
    try:
        info = json.loads(s["swarm"][0])
    except json.JSONDecodeError:
        raise StepFailed("gathering swarm facts: `docker info` printed something that is not JSON") from None
    nodes = parse_node_list(s.get("nodes", [])) if info.get("ControlAvailable") else ()
    return SwarmFacts(state=str(info.get("LocalNodeState", "")), node_id=str(info.get("NodeID", "")),
                      node_address=str(info.get("NodeAddr", "")),
                      control_available=bool(info.get("ControlAvailable")),
                      cluster_id=str((info.get("Cluster") or {}).get("ID", "")), error=str(info.get("Error", "")),
                      advertise_address=route, hostname=hostname, nodes=nodes)


def gather_swarm_facts(remote: Any) -> SwarmFacts:
    """The thin effect: one round trip."""
    result = remote.run_script(SWARM_FACTS_SCRIPT, sudo=True, check=False, timeout=60)
    return parse_swarm_facts(result.stdout)


def read_join_token(remote: Any, role: str) -> bytes:
    """The leader's join token for `role` (a secret: kept in memory, sent on stdin, never printed)."""
    result = remote.run(cmd.swarm_join_token(role), sudo=True, check=False, timeout=30)
    token = result.stdout.strip()
    if result.exit_code != 0 or not token.startswith("SWMTKN-"):
        raise StepFailed(f"reading the swarm {role} join token on the first host failed (exit {result.exit_code})")
    return token.encode()


# --- the plan -----------------------------------------------------------------------------------------


@dataclass
class SwarmTask:
    name: str
    changes: list[Change] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def _address_problem(label: str, facts: SwarmFacts) -> str | None:
    if not facts.engine_answers:
        return f"{label}: the engine does not answer `docker info`"
    if facts.advertise_address is None:
        return (f"{label}: no private address found (no default route with a source address; "
                "`ip -o route get 1.1.1.1` printed none)")
    return None


def plan_init(label: str, facts: SwarmFacts) -> SwarmTask:
    """The first host: init a swarm when it is in none; refuse a half state or a worker."""
    task = SwarmTask("swarm init", data={"advertise_address": facts.advertise_address})
    task.error = _address_problem(label, facts)
    if task.error:
        return task
    if facts.active and not facts.control_available:
        task.error = (f"{label} (the first host) is a worker of a swarm: it must be a manager (it initialises "
                      "and leads the environment's swarm); run `docker swarm leave` on it, or reorder the hosts")
    elif facts.active:
        task.data.update(cluster_id=facts.cluster_id, node_id=facts.node_id)
    elif facts.state in ("pending", "error", "locked"):
        task.error = f"{label}: the swarm state is {facts.state} ({facts.error or 'no detail'}); fix it by hand"
    else:
        address = str(facts.advertise_address)
        task.changes.append(Change("swarm:init", "create", "not in a swarm", (
            Step(f"docker swarm init --advertise-addr {address}", argv=cmd.swarm_init(address), sudo=True),)))
    return task


def member_role(index: int, managers: int) -> str:
    """Host `index` (0 = the leader): with 3 managers, hosts 1 and 2 join as managers."""
    return "manager" if managers == 3 and 1 <= index <= 2 else "worker"


def plan_member(label: str, index: int, facts: SwarmFacts, leader: SwarmFacts, managers: int,
                tokens: dict[str, bytes]) -> SwarmTask:
    """A non-first host: nothing when it is a node of the leader's swarm, else join (the token on stdin)."""
    role = member_role(index, managers)
    task = SwarmTask("swarm join", data={"role": role, "advertise_address": facts.advertise_address})
    task.error = _address_problem(label, facts)
    if task.error:
        return task
    ours = {n.id for n in leader.nodes}
    if facts.active and facts.node_id in ours:
        task.data["node_id"] = facts.node_id
        return task
    if facts.active:
        where = f"cluster {facts.cluster_id}" if facts.cluster_id else f"node {facts.node_id}"
        task.error = (f"{label} is in another swarm ({where}), not the one the first host leads: dockyard does not "
                      "take a host out of a swarm it did not form; run `docker swarm leave` on it first")
        return task
    if facts.state in ("pending", "error", "locked"):
        task.error = f"{label}: the swarm state is {facts.state} ({facts.error or 'no detail'}); fix it by hand"
        return task
    manager = leader.advertise_address or leader.node_address
    argv = cmd.swarm_join(str(facts.advertise_address), manager)
    step = Step(f"docker swarm join as a {role} via {cmd.join_address(manager)} (token on stdin)", argv=argv,
                sudo=True, stdin=tokens.get(role, b"") + b"\n")
    task.changes.append(Change("swarm:join", "create", "not in this swarm", (step,), data={"role": role}))
    return task


def plan_stale_nodes(leader: SwarmFacts, members: list[SwarmFacts]) -> SwarmTask:
    """On the leader: entries that are down, carry one of our hosts' hostnames and are not that host's current
    node (a host replaced by `recreate`, rejoined under a new id): demote (managers) and remove them."""
    task = SwarmTask("swarm nodes", data={"nodes": len(leader.nodes)})
    current = {m.hostname: m.node_id for m in members if m.hostname}
    for node in leader.nodes:
        if node.hostname not in current or node.id == current[node.hostname] or not node.down:
            continue
        steps = []
        if node.manager_status:
            steps.append(Step(f"docker node demote {node.id}", argv=cmd.node_demote(node.id), sudo=True))
        steps.append(Step(f"docker node rm {node.id}", argv=cmd.node_remove(node.id), sudo=True))
        task.changes.append(Change(f"swarm:node:{node.id}", "delete",
                                   f"{node.hostname}'s old entry ({node.status.lower()}); the host rejoined",
                                   tuple(steps), data={"hostname": node.hostname}))
    return task
