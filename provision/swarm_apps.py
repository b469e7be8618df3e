"""Pure pieces of the app commands in swarm mode (engine.mode: swarm): `logs`, `exec`, `releases`, `rollback`
reach a service's tasks wherever they run. No network here; provision.phases.swarm_apps does the reads.

- task location: a manager's task list (`api.tasks`) and node list (`api.nodes`) → which running task, on which
  node, and which environment host (label, HostInfo) that node is. A node is matched by its address (the
  node's Status.Addr against the host's addresses); when that fails (NAT: the swarm advertises private
  addresses, dockyard reaches public or forwarded ones) by the node id or hostname each host's own engine
  reports (`identities`, read only then); else an error naming the node.
- logs: `service_logs(details=True)` lines carry the task and node ids; `LogPrefixer` turns them into docker's
  `name.slot.task@hostname | ` prefix.
- releases: the service's Spec (current) and PreviousSpec (what a rollback restores), their `dockyard.release`.
- rollback: one Change (the engine's `rollback=previous` update, then a bounded wait until the previous spec's
  tasks run); Swarm keeps only the previous spec, so there is no `--to`.
"""

from __future__ import annotations

import datetime
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from provision.changes import Change, Step
from provision.commands.docker import LABEL_CONFIG_HASH, LABEL_RELEASE
from provision.errors import StepFailed
from provision.ops import EngineCall, Wait, params
from provision.releases import Release

LABEL_TASK_ID = "com.docker.swarm.task.id"  # on every task's container (set by the engine)
ROLLBACK_SLACK = 60.0  # seconds on top of replicas x monitor a rollback may take


@dataclass(frozen=True)
class NodeInfo:
    id: str
    hostname: str
    address: str  # Status.Addr: the address the node advertised to the swarm


@dataclass(frozen=True)
class TaskInfo:
    id: str
    slot: int
    node_id: str
    state: str  # Status.State: running, starting, shutdown, failed …


@dataclass(frozen=True)
class HostIdentity:
    """What one host's own engine says it is in the swarm (`api.info()`)."""

    node_id: str
    hostname: str


def parse_nodes(nodes: Iterable[Mapping[str, Any]]) -> dict[str, NodeInfo]:
    out = {}
    for n in nodes:
        node_id = str(n.get("ID", ""))
        out[node_id] = NodeInfo(node_id, str((n.get("Description") or {}).get("Hostname", "")),
                                str((n.get("Status") or {}).get("Addr", "")))
    return out


def parse_tasks(tasks: Iterable[Mapping[str, Any]]) -> list[TaskInfo]:
    return [TaskInfo(str(t.get("ID", "")), int(t.get("Slot") or 0), str(t.get("NodeID", "")),
                     str((t.get("Status") or {}).get("State", ""))) for t in tasks]


def identity_of(info: Mapping[str, Any]) -> HostIdentity:
    return HostIdentity(str((info.get("Swarm") or {}).get("NodeID", "")), str(info.get("Name", "")))


def running_tasks(tasks: Iterable[TaskInfo]) -> list[TaskInfo]:
    """The running tasks, by slot (then id): the order `exec` picks from."""
    return sorted((t for t in tasks if t.state == "running" and t.node_id), key=lambda t: (t.slot, t.id))


def host_addresses(info: Any) -> set[str]:
    return {a for a in (info.ssh_address, info.public_address, info.private_address) if a}


def host_for_node(node: NodeInfo, hosts: Sequence[tuple[str, Any]],
                  identities: Mapping[str, HostIdentity] | None = None) -> str | None:
    """The label of the environment host that is `node`: by address when exactly one host has it, else by the
    node id, else the hostname its engine reports (`identities`: label → identity); None when nothing matches."""
    by_address = [label for label, info in hosts if node.address and node.address in host_addresses(info)]
    if len(by_address) == 1:
        return by_address[0]
    for key in ("node_id", "hostname"):
        wanted = node.id if key == "node_id" else node.hostname
        found = [label for label, ident in (identities or {}).items() if wanted and getattr(ident, key) == wanted]
        if len(found) == 1:
            return found[0]
    return None


def unmatched_node_error(node: NodeInfo, hosts: Sequence[tuple[str, Any]]) -> StepFailed:
    known = ", ".join(f"{label} ({', '.join(sorted(host_addresses(info)))})" for label, info in hosts)
    return StepFailed(f"swarm node {node.hostname or node.id[:12]} (address {node.address or '?'}) is none of the "
                      f"environment's hosts: {known}; is host.addresses complete?")


def pick_task(running: Sequence[TaskInfo], app: str, *, slot: int = 0, node_label: str = "",
              labels: Mapping[str, str | None] | None = None) -> TaskInfo:
    """The task `exec` runs in: slot `slot` (`--task N`), else the first one on host `node_label` (`--node`;
    `labels`: task id → host label), else the first running one."""
    if not running:
        raise StepFailed(f"app {app} has no running task (deploy it first)")
    if slot:
        found = [t for t in running if t.slot == slot]
        if not found:
            raise StepFailed(f"app {app} has no running task {slot} (running: "
                             f"{', '.join(str(t.slot) for t in running)})")
        return found[0]
    if node_label:
        found = [t for t in running if (labels or {}).get(t.id) == node_label]
        if not found:
            where = sorted({str((labels or {}).get(t.id)) for t in running})
            raise StepFailed(f"app {app} has no running task on {node_label} (its tasks run on: {', '.join(where)})")
        return found[0]
    return running[0]


# --- logs ---------------------------------------------------------------------------------------------------


def parse_details(line: bytes) -> tuple[dict[str, str], bytes]:
    """`k=v,k=v message` (service_logs with details=True; values URL-encoded) → (details, message)."""
    head, sep, rest = line.partition(b" ")
    if not sep or b"=" not in head:
        return {}, line
    details = {}
    for pair in head.decode("utf-8", "replace").split(","):
        key, eq, value = pair.partition("=")
        if not eq:
            return {}, line
        details[urllib.parse.unquote(key)] = urllib.parse.unquote(value)
    return details, rest


class LogPrefixer:
    """Feeds of service log bytes → lines prefixed as docker does: `<service>.<slot>.<task12>@<hostname> | `."""

    def __init__(self, service: str, tasks: Iterable[TaskInfo], nodes: Mapping[str, NodeInfo]) -> None:
        self.service = service
        self.slots = {t.id: t.slot for t in tasks}
        self.nodes = nodes
        self.partial = b""

    def prefix(self, details: Mapping[str, str]) -> bytes:
        task = details.get("com.docker.swarm.task.id", "")
        node_id = details.get("com.docker.swarm.node.id", "")
        node = self.nodes.get(node_id)
        slot = self.slots.get(task)
        where = node.hostname if node is not None and node.hostname else node_id[:12]
        return f"{self.service}.{slot if slot else '?'}.{task[:12]}@{where} | ".encode()

    def feed(self, chunk: bytes) -> bytes:
        data = self.partial + chunk
        *lines, self.partial = data.split(b"\n")
        return b"".join(self._line(line) + b"\n" for line in lines)

    def flush(self) -> bytes:
        rest, self.partial = self.partial, b""
        return self._line(rest) if rest else b""

    def _line(self, line: bytes) -> bytes:
        details, message = parse_details(line)
        return self.prefix(details) + message if details else line


# --- releases and rollback ----------------------------------------------------------------------------------


def _epoch(stamp: str) -> int:
    """The Engine's RFC 3339 time (nanoseconds, Z) → seconds; 0 when unreadable."""
    try:
        head = stamp.split(".")[0].rstrip("Z")
        return int(datetime.datetime.fromisoformat(head).replace(tzinfo=datetime.UTC).timestamp())
    except ValueError:
        return 0


def _image(spec: Mapping[str, Any]) -> str:
    return str(((spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}).get("Image", ""))


def service_releases(app: str, attrs: Mapping[str, Any]) -> list[Release]:
    """The service's current release (Spec) and, when Swarm kept one, the previous (PreviousSpec): the one
    `rollback` restores. `container` is the service's name, `state` "current" or "previous"."""
    out = []
    for key, current in (("Spec", True), ("PreviousSpec", False)):
        spec = attrs.get(key)
        if not spec:
            continue
        labels = spec.get("Labels") or {}
        out.append(Release(app, str(labels.get(LABEL_RELEASE) or "-"), str(spec.get("Name", "")),
                           str(attrs.get("ID", "")), _image(spec),
                           _epoch(str(attrs.get("UpdatedAt", ""))) if current else 0,
                           "current" if current else "previous", current))
    return out


def _replicas(spec: Mapping[str, Any]) -> int:
    return int(((spec.get("Mode") or {}).get("Replicated") or {}).get("Replicas", 1))


def plan_service_rollback(app: str, attrs: Mapping[str, Any], *, monitor: float) -> list[Change]:
    """The engine's rollback to PreviousSpec, then the bounded wait until its replicas run; StepFailed when
    Swarm kept no previous spec (nothing to roll back to)."""
    previous = attrs.get("PreviousSpec")
    name = str((attrs.get("Spec") or {}).get("Name", ""))
    if not previous:
        raise StepFailed(f"app {app}: nothing to roll back to (service {name} has no previous spec)")
    target_hash = str((previous.get("Labels") or {}).get(LABEL_CONFIG_HASH, ""))
    replicas = _replicas(previous)
    release = str((previous.get("Labels") or {}).get(LABEL_RELEASE) or "-")
    version = int((attrs.get("Version") or {}).get("Index", 0))
    call = EngineCall("service.rollback", params(id=str(attrs.get("ID", "")), version=version))
    wait = Wait("service.rolled_back", params(service=name, config_hash=target_hash, replicas=replicas,
                                              label=f"app {app}"),
                timeout=ROLLBACK_SLACK + replicas * monitor)
    return [Change(f"app:{app}:service", "rollback", f"previous spec (release {release})", (
        Step(f"roll service {name} back to its previous spec", call),
        Step(f"wait until {replicas} replicas of {name} run the previous spec", wait)),
        data={"release": release, "config_hash": target_hash[:12], "replicas": replicas})]


def rollback_state(attrs: Mapping[str, Any], config_hash: str, running: int, replicas: int) -> str:
    """Pure: "done", "wait" or "failed: <why>" for a requested rollback, from one inspect of the service and
    the count of running tasks that carry the previous spec's config hash."""
    update = attrs.get("UpdateStatus") or {}
    state = str(update.get("State", ""))
    labels = (attrs.get("Spec") or {}).get("Labels") or {}
    if state in ("rollback_paused", "paused"):
        why = " ".join(str(update.get("Message", "")).split())[:300]
        return f"failed: the rollback {state.replace('_', ' ')}" + (f" ({why})" if why else "")
    if labels.get(LABEL_CONFIG_HASH) != config_hash:
        return "failed: the service does not carry the previous spec (changed by someone else?)"
    if state in ("", "completed", "rollback_completed") and running >= replicas:
        return "done"
    return "wait"
