"""The swarm part of `setup` (engine.mode: swarm), after every host's engine is set up.

`form_swarm(pb, hosts, engine_recaps, *, check, diff, reporter) -> list[HostRecap]` (one per host, in order):
swarm facts from every host in parallel (one round trip each) → `swarm init` on the first host when it is in
no swarm → the join tokens read from it (only when a host must join; kept in memory, sent on stdin) → the
other hosts join in parallel, each on its own connection → stale node entries of replaced hosts removed on the
first host. Every decision is provision.swarm's pure plan; each host's Runner makes its recap.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from provision.changes import HostRecap, Status
from provision.errors import StepFailed, api_status
from provision.phases.host import environment_hosts, remote_for

T = TypeVar("T")
MAX_PARALLEL_HOSTS = 16


def parallel(items: Sequence[Any], work: Callable[[Any], T]) -> list[T]:
    """`work` on every item at once (bounded pool), results in order."""
    if len(items) <= 1:
        return [work(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(len(items), MAX_PARALLEL_HOSTS)) as pool:
        return list(pool.map(work, items))


def form_swarm(pb: Any, hosts: Sequence[tuple[str, Any]], engine_recaps: Sequence[HostRecap], *,
               check: bool = False, diff: bool = False, reporter: Any) -> list[HostRecap]:
    """`hosts`: (label, open Remote) pairs, the first leads."""
    # deferred: paramiko (through provision.runner) loads when a command runs, not for `dockyard --help`
    from provision.runner import Runner
    from provision.swarm import gather_swarm_facts, plan_init, plan_member, plan_stale_nodes, read_join_token

    runners = [Runner(label, remote, check=check, diff=diff, reporter=reporter) for label, remote in hosts]
    leader_label, leader_remote = hosts[0]
    broken = [r.host for r in engine_recaps if r.failed]
    if broken:
        runners[0].fail("swarm", f"not formed: the engine setup failed on {', '.join(broken)}")
        return [r.recap for r in runners]
    if check and any(r.count(Status.CHANGED) for r in engine_recaps):
        reporter.info(f"[{leader_label}] the swarm is planned once every engine runs (setup has engine changes)")
        return [r.recap for r in runners]

    def gather(i: int) -> Any:
        with runners[i].guard("gather swarm facts"):
            return gather_swarm_facts(hosts[i][1])
        return None

    facts = parallel(range(len(hosts)), gather)
    if any(f is None for f in facts):
        return [r.recap for r in runners]
    for runner, f in zip(runners, facts, strict=True):
        runner.run_task("gather swarm facts", [], data=f.summary())

    init = plan_init(leader_label, facts[0])
    if not _run(runners[0], init, reporter):
        return [r.recap for r in runners]
    if init.changes and not check:
        with runners[0].guard("gather swarm facts"):
            facts[0] = gather_swarm_facts(leader_remote)
        if runners[0].failed:
            return [r.recap for r in runners]

    managers = pb.engine.managers
    members = [(i, label, remote) for i, (label, remote) in enumerate(hosts) if i > 0]
    tokens: dict[str, bytes] = {}
    draft = [plan_member(label, i, facts[i], facts[0], managers, tokens) for i, label, _ in members]
    roles = {t.data["role"] for t in draft if t.changes}
    if roles and not check:
        with runners[0].guard("read join tokens"):
            tokens = {role: read_join_token(leader_remote, role) for role in sorted(roles)}
        if runners[0].failed:
            return [r.recap for r in runners]

    def join(member: tuple[int, str, Any]) -> bool:
        i, label, _ = member
        return _run(runners[i], plan_member(label, i, facts[i], facts[0], managers, tokens), reporter)

    parallel(members, join)
    if not check and roles:
        fresh = parallel(range(len(hosts)), gather)
        facts = [f if f is not None else old for f, old in zip(fresh, facts, strict=True)]
    _run(runners[0], plan_stale_nodes(facts[0], facts), reporter)
    return [r.recap for r in runners]


def _run(runner: Any, task: Any, reporter: Any) -> bool:
    if task.error:
        runner.fail(task.name, task.error)
        return False
    with reporter.progress(f"[{runner.host}] {task.name}"):
        runner.run_task(task.name, task.changes, data=task.data)
    return not runner.failed


def swarm_status(pb: Any) -> tuple[list[Any], list[Any]]:
    """`status` in swarm mode, through the first host (a manager): one read each of the nodes, our services
    (label filter) and their tasks meant to run → (NodeFacts list, ServiceRow list: provision.swarm_status).
    StepFailed naming the first host when it cannot be reached or read."""
    # deferred: provision.swarm (and what it imports) loads when a command runs, not for `dockyard --help`
    from provision.swarm_status import node_facts, service_rows

    hosts = environment_hosts(pb)
    label, info = hosts[0]
    try:
        with remote_for(pb, info) as remote:
            nodes, services, tasks = _swarm_reads(pb, label, remote.docker().api)
    except StepFailed as exc:
        if "not a swarm manager" in str(exc):
            raise
        raise StepFailed(f"status: the first host {label} failed ({exc}); the swarm is read through it (a "
                         f"manager). {_other_managers(pb, hosts)}") from None
    return [node_facts(n) for n in nodes], service_rows(services, tasks, nodes, list(pb.apps))


def _swarm_reads(pb: Any, label: str, api: Any) -> tuple[list[Any], list[Any], list[Any]]:
    # deferred: pydantic (through provision.commands.docker) loads when a command runs, not for `setup`'s import
    from provision.commands.docker import label_filters

    try:
        nodes = api.nodes()
        services = api.services(filters={"label": label_filters(pb.project, pb.environment)})
        ids = [str(s.get("ID", "")) for s in services]
        tasks = api.tasks(filters={"service": ids, "desired-state": "running"}) if ids else []
    except StepFailed:
        raise
    except Exception as exc:
        if api_status(exc) == 503:  # "This node is not a swarm manager"
            raise StepFailed(f"{label} (the first host) is not a swarm manager: run `dockyard setup -e "
                             f"{pb.environment}` to form the swarm") from None
        status = api_status(exc)
        raise StepFailed(f"reading the swarm: {type(exc).__name__}" + (f" (HTTP {status})" if status else "")
                         ) from None
    return list(nodes), list(services), list(tasks)


def _other_managers(pb: Any, hosts: Any) -> str:
    """What to try next: with 3 managers, hosts 2 and 3 know the swarm too (provision.swarm.member_role)."""
    if pb.engine.managers == 3 and len(hosts) >= 3:
        return (f"The other managers ({hosts[1][0]}, {hosts[2][0]}) know the swarm too: put a reachable one "
                "first in host.addresses to read it.")
    return "It is the swarm's only manager: the swarm cannot be read until it answers again."
