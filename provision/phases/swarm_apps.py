"""`logs`, `exec`, `releases` and `rollback` with engine.mode: swarm: the host work. The first host (a manager)
answers for the service (its tasks, nodes, logs, specs); `exec` then opens the SSH connection of the host whose
node runs the chosen task and finds the task's container there by its `com.docker.swarm.task.id` label. The
decisions are provision.swarm_apps' pure functions; rollback runs its plan through a Runner like a deploy, under
the first host's deploy lock (and audit entry).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import nullcontext
from typing import Any, BinaryIO

from provision.changes import Status
from provision.commands.docker import label_filters
from provision.commands.service import DEFAULT_MONITOR, service_name
from provision.errors import InputError, StepFailed
from provision.phases.host import environment_hosts, remote_for
from provision.phases.lock import LockRequest, holding_lock
from provision.phases.releases import RollbackResult
from provision.spec import Playbook
from provision.swarm_apps import (
    LABEL_TASK_ID,
    HostIdentity,
    LogPrefixer,
    TaskInfo,
    host_for_node,
    identity_of,
    parse_nodes,
    parse_tasks,
    pick_task,
    plan_service_rollback,
    running_tasks,
    service_releases,
    unmatched_node_error,
)


def _app(pb: Playbook, app: str) -> str:
    if app not in pb.apps:
        raise InputError.single(f"no app {app!r} in the playbook (apps: {', '.join(pb.apps) or 'none'})",
                                pb.source, "apps")
    return service_name(pb.project, pb.environment, app)


def _service(pb: Playbook, api: Any, name: str, app: str) -> dict[str, Any]:
    """The service's inspect (only one carrying this app's labels), or a clear failure when there is none."""
    wanted = {"label": label_filters(pb.project, pb.environment, app)}
    found = [s for s in api.services(filters=wanted) if s["Spec"]["Name"] == name]
    if not found:
        raise StepFailed(f"app {app} has no swarm service {name} (deploy it first)")
    return dict(found[0])


def _identities(pb: Playbook, hosts: Sequence[tuple[str, Any]]) -> dict[str, HostIdentity]:
    """Each host's own engine says which node it is (one read each): the fallback when addresses differ."""
    out = {}
    for label, info in hosts:
        with remote_for(pb, info) as remote:
            out[label] = identity_of(remote.docker().api.info())
    return out


def task_hosts(pb: Playbook, hosts: Sequence[tuple[str, Any]], tasks: Sequence[TaskInfo],
               nodes: Mapping[str, Any]) -> dict[str, str]:
    """task id → the label of the environment host running it (the identities are read only when an address
    does not settle it); StepFailed naming a node that is none of the hosts."""
    identities: dict[str, HostIdentity] | None = None
    out = {}
    for task in tasks:
        node = nodes.get(task.node_id)
        if node is None:
            raise StepFailed(f"task {task.id[:12]} runs on node {task.node_id[:12]}, which the swarm does not list")
        label = host_for_node(node, hosts)
        if label is None:
            identities = identities if identities is not None else _identities(pb, hosts)
            label = host_for_node(node, hosts, identities)
        if label is None:
            raise unmatched_node_error(node, hosts)
        out[task.id] = label
    return out


def swarm_log_chunks(pb: Playbook, app: str, *, lines: int, follow: bool) -> Iterator[bytes]:
    """The service's logs as the manager gathers them from every task on every node, each line prefixed
    `<service>.<slot>.<task>@<node> | ` as `docker service logs` does."""
    name = _app(pb, app)
    with remote_for(pb) as remote:
        api = remote.docker(timeout=None).api  # the first client of this run: no read timeout (quiet logs)
        _service(pb, api, name, app)
        prefixer = LogPrefixer(name, parse_tasks(api.tasks(filters={"service": name})), parse_nodes(api.nodes()))
        tail: Any = lines if lines > 0 else "all"
        for chunk in api.service_logs(name, details=True, stdout=True, stderr=True, follow=follow, tail=tail,
                                      is_tty=False):
            out = prefixer.feed(chunk)
            if out:
                yield out
        rest = prefixer.flush()
        if rest:
            yield rest + b"\n"


def _task_container(pb: Playbook, app: str, *, slot: int, node: str) -> tuple[Any, str, str]:
    """(the HostInfo running the chosen task, its label, the task id)."""
    name = _app(pb, app)
    hosts = environment_hosts(pb)
    if node and node not in dict(hosts):
        raise InputError.single(f"--node {node}: no such host (hosts: {', '.join(label for label, _ in hosts)})",
                                pb.source, "host.addresses")
    with remote_for(pb, hosts[0][1]) as leader:
        api = leader.docker().api
        _service(pb, api, name, app)
        running = running_tasks(parse_tasks(api.tasks(filters={"service": name, "desired-state": "running"})))
        nodes = parse_nodes(api.nodes())
    where = task_hosts(pb, hosts, running, nodes)
    task = pick_task(running, app, slot=slot, node_label=node, labels=where)
    return dict(hosts)[where[task.id]], where[task.id], task.id


def _container_of(remote: Any, task_id: str, label: str, app: str) -> str:
    found = remote.docker().api.containers(filters={"label": f"{LABEL_TASK_ID}={task_id}"})
    if not found:
        raise StepFailed(f"app {app}: task {task_id[:12]} has no running container on {label} (it may have just "
                         "been replaced: run again)")
    return str(found[0]["Id"])


def swarm_exec(pb: Playbook, app: str, argv: list[str], *, stdout: BinaryIO, stderr: BinaryIO,
               env: Mapping[str, str] | None = None, slot: int = 0, node: str = "") -> int:
    """`argv` in one running task's container (slot `slot`, or the first on host `node`, or the first), on the
    host that runs it; its exit code."""
    # deferred: the exec helpers load the SDK-side code only when a command runs
    from provision.phases.inspect import exec_in_container

    info, label, task_id = _task_container(pb, app, slot=slot, node=node)
    with remote_for(pb, info) as remote:
        remote.docker(timeout=None)  # the first client of this run: no read timeout (a quiet command)
        return exec_in_container(remote, _container_of(remote, task_id, label, app), argv, env=env,
                                 stdout=stdout, stderr=stderr)


def swarm_exec_tty(pb: Playbook, app: str, argv: list[str], *, stdin_fd: int | None, stdout: BinaryIO,
                   env: Mapping[str, str] | None = None, slot: int = 0, node: str = "") -> int:
    # deferred: the exec helpers load the SDK-side code only when a command runs
    from provision.phases.inspect import exec_tty_in_container

    info, label, task_id = _task_container(pb, app, slot=slot, node=node)
    with remote_for(pb, info) as remote:
        return exec_tty_in_container(remote, _container_of(remote, task_id, label, app), argv, app=app,
                                     stdin_fd=stdin_fd, stdout=stdout, env=env)


def swarm_releases(pb: Playbook, app: str | None = None) -> list[Any]:
    """Per app: its service's current release and the previous one (the one `rollback` restores)."""
    names = [app] if app else list(pb.apps)
    for name in names:
        _app(pb, name)
    out = []
    with remote_for(pb) as remote:
        api = remote.docker().api
        ours = api.services(filters={"label": label_filters(pb.project, pb.environment)})
        by_name = {s["Spec"]["Name"]: s for s in ours}
        for name in names:
            attrs = by_name.get(service_name(pb.project, pb.environment, name))
            if attrs is not None:
                out += service_releases(name, attrs)
    return out


def swarm_rollback(pb: Playbook, app: str, *, to: str | None = None, reporter: Any, check: bool = False,
                   lock: LockRequest | None = None) -> RollbackResult:
    """The service back to its previous spec (Swarm keeps only that one: `--to` is refused), then the bounded
    wait for its replicas; under the first host's deploy lock, with its audit entry."""
    # deferred: the executor and the runner load only when a command runs
    from provision.appops import DeployContext
    from provision.runner import Runner

    name = _app(pb, app)
    if to:
        raise InputError.single("--to: with engine.mode: swarm a service keeps only its previous spec; "
                                "`rollback` without --to restores it (see `releases`)", pb.source, "engine.mode")
    label = environment_hosts(pb)[0][0]
    with remote_for(pb) as remote:
        remote.open()
        locked = holding_lock(pb, remote, lock, reporter) if lock is not None and not check else nullcontext()
        with locked as held:
            ctx = DeployContext(remote=remote, reporter=reporter, host=label)
            runner = Runner(label, ctx, check=check, reporter=reporter)
            release = "-"
            with runner.guard(f"rollback {app}"):
                attrs = _service(pb, remote.docker().api, name, app)
                changes = plan_service_rollback(app, attrs, monitor=_monitor(attrs))
                release = str(changes[0].data["release"])
                runner.run_task(f"rollback {app} to {release}", changes)
            if held is not None:
                held.apps = [app]
                held.releases = [release]
                held.finish(failed=runner.failed, changed=runner.recap.count(Status.CHANGED))
            return RollbackResult(runner.recap, app, release)


def _monitor(attrs: Mapping[str, Any]) -> float:
    """Seconds each rolled-back task must run before the engine counts it (its RollbackConfig.Monitor)."""
    ns = ((attrs.get("Spec") or {}).get("RollbackConfig") or {}).get("Monitor") or 0
    return max(DEFAULT_MONITOR, ns / 1e9)
