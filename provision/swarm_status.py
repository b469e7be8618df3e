"""`status` in swarm mode, pure: the Engine API's nodes, our services and their tasks → node facts and one row
per app (replicas per node, release, update state). No network; provision.phases.swarm reads the three lists.

A task counts as running only when its Status.State is "running" AND its DesiredState is "running" (a task
the swarm is shutting down, or one still starting, is not serving). A task on a node that is down but which the
swarm has not yet rescheduled (both states still "running") is NOT counted: it is listed under `down_nodes`
with a note, so `replicas` says what actually serves.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from provision.commands.docker import LABEL_APP, LABEL_RELEASE
from provision.swarm import NodeFacts

__all__ = ["ServiceRow", "node_facts", "nodes_text", "replicas_text", "row_json", "service_rows"]


@dataclass(frozen=True)
class ServiceRow:
    app: str
    service: str  # "" when the playbook's app has no service (not deployed)
    release: str  # the service's dockyard.release label, "-" when none
    desired: int
    running: int
    nodes: dict[str, int] = field(default_factory=dict)  # hostname → running tasks (nodes not down)
    update: str = "-"  # UpdateStatus.State: updating, completed, rollback_started, paused … or "-"
    down_nodes: dict[str, int] = field(default_factory=dict)  # hostname → tasks still "running" on a down node
    note: str = ""


def _title(word: str) -> str:
    return word[:1].upper() + word[1:]


def node_facts(node: Mapping[str, Any]) -> NodeFacts:
    """One `api.nodes()` entry → NodeFacts spelled as `docker node ls` prints it (Ready, Active, Leader)."""
    manager = node.get("ManagerStatus") or {}
    role = "Leader" if manager.get("Leader") else _title(str(manager.get("Reachability", "")))
    return NodeFacts(id=str(node.get("ID", "")), hostname=str((node.get("Description") or {}).get("Hostname", "")),
                     status=_title(str((node.get("Status") or {}).get("State", ""))),
                     availability=_title(str((node.get("Spec") or {}).get("Availability", ""))),
                     manager_status=role)


def _desired(spec: Mapping[str, Any], tasks: Sequence[Mapping[str, Any]]) -> int:
    mode = spec.get("Mode") or {}
    if "Replicated" in mode:
        return int((mode.get("Replicated") or {}).get("Replicas", 1))
    return sum(1 for t in tasks if t.get("DesiredState") == "running")  # global: one per eligible node


def _serving(task: Mapping[str, Any]) -> bool:
    return str((task.get("Status") or {}).get("State", "")) == "running" and task.get("DesiredState") == "running"


def service_rows(services: Iterable[Mapping[str, Any]], tasks: Iterable[Mapping[str, Any]],
                 nodes: Iterable[Mapping[str, Any]], apps: Sequence[str] = ()) -> list[ServiceRow]:
    """One row per service (by app name), plus a row for each of `apps` (the playbook's) with no service."""
    facts = {str(n.get("ID", "")): node_facts(n) for n in nodes}
    by_service: dict[str, list[Mapping[str, Any]]] = {}
    for t in tasks:
        by_service.setdefault(str(t.get("ServiceID", "")), []).append(t)
    rows = []
    for s in services:
        spec = s.get("Spec") or {}
        labels = spec.get("Labels") or {}
        name = str(spec.get("Name", ""))
        mine = by_service.get(str(s.get("ID", "")), [])
        per_node: dict[str, int] = {}
        on_down: dict[str, int] = {}
        for t in filter(_serving, mine):
            node = facts.get(str(t.get("NodeID", "")))
            where = (node.hostname or node.id[:12]) if node is not None else str(t.get("NodeID", ""))[:12] or "?"
            counts = on_down if node is None or node.down else per_node
            counts[where] = counts.get(where, 0) + 1
        note = ""
        if on_down:
            note = (f"{sum(on_down.values())} task(s) still reported running on down node(s) "
                    f"{', '.join(sorted(on_down))}: the swarm has not rescheduled them yet")
        rows.append(ServiceRow(app=str(labels.get(LABEL_APP) or name), service=name,
                               release=str(labels.get(LABEL_RELEASE) or "-"), desired=_desired(spec, mine),
                               running=sum(per_node.values()), nodes=dict(sorted(per_node.items())),
                               update=str((s.get("UpdateStatus") or {}).get("State") or "-"),
                               down_nodes=dict(sorted(on_down.items())), note=note))
    seen = {r.app for r in rows}
    rows += [ServiceRow(app=a, service="", release="-", desired=0, running=0, note="no service (not deployed)")
             for a in apps if a not in seen]
    return sorted(rows, key=lambda r: r.app)


def replicas_text(row: ServiceRow) -> str:
    return f"{row.running}/{row.desired}" if row.service else "-"


def nodes_text(row: ServiceRow) -> str:
    shown = " ".join(f"{host}:{n}" for host, n in row.nodes.items())
    down = " ".join(f"{host}:{n}(down)" for host, n in row.down_nodes.items())
    return " ".join(x for x in (shown, down) if x) or "-"


def row_json(row: ServiceRow) -> dict[str, Any]:
    """`status --json`'s "services" entry: replicas {desired, running} and nodes {hostname: running}."""
    return {"app": row.app, "service": row.service, "release": row.release,
            "replicas": {"desired": row.desired, "running": row.running}, "nodes": dict(row.nodes),
            "update": row.update, "down_nodes": dict(row.down_nodes), "note": row.note}
