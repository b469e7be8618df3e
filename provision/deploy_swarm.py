"""`deploy` with engine.mode: swarm: every app becomes a Swarm service. STATUS: provision/commands/service.py.

    desired (the same render + hash + container config as standalone, all local)  ──►
    per host (the first, then the others in parallel), each over its own connection: its IPVS fact
    (provision.facts.ipvs), then images: build there (`build: host`) or build here and ship (`build: local`)
    when the host lacks the image's tag  ──►
    the endpoint choice (provision.plan.services.endpoint_choice: the routing mesh only when every host has
    IPVS, else dnsrr + host-mode ports; said once in the output)  ──►
    services, through the first host (a manager): facts (services, networks, secrets with our labels) ──►
    per app: overlay network, Swarm secrets, service create/update/nothing (provision.plan.services) and the
    bounded wait for its rollout (a rollback fails the run: exit 1)  ──►
    once all converged: the leader's facts again, and the environment's secrets no service references removed.

Not in swarm mode yet (refused, exit 2, before anything is touched): `image:` apps, `domains` (the front
proxy), --prune. A release command is not run (reported).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from provision.appops import DeployContext
from provision.changes import HostRecap
from provision.commands.docker import label_filters
from provision.commands.service import service_of
from provision.errors import InputError, Problem
from provision.facts.apps import gather_remote
from provision.facts.ipvs import gather_ipvs
from provision.plan import apps as plan
from provision.plan.desired import DesiredApp
from provision.plan.services import (
    SecretFact,
    ServiceFacts,
    endpoint_choice,
    parse_secret,
    parse_service,
    plan_network,
    plan_secret_cleanup,
    plan_secrets,
    plan_service,
)
from provision.playbook import locate_problems
from provision.runner import Runner

MAX_PARALLEL_HOSTS = 16


@dataclass
class SwarmDeployResult:
    recaps: list[HostRecap]
    built: list[str] = field(default_factory=list)
    services: list[str] = field(default_factory=list)
    endpoint_mode: str = ""  # vip (routing mesh) | dnsrr (host-mode ports) | "" (not decided: failed earlier)

    @property
    def failed(self) -> bool:
        return any(r.failed for r in self.recaps)


def refuse_unsupported(pb: Any, names: Sequence[str], *, prune: bool) -> None:
    """What swarm mode cannot deploy yet: one InputError naming every key path."""
    problems = []
    for name in names:
        app = pb.apps[name]
        if app.image is not None:
            problems.append(Problem("`image:` apps are not deployed as swarm services yet", pb.source,
                                    f"apps.{name}.image"))
        if app.domains:
            problems.append(Problem("`domains` (the front proxy) is not supported with engine.mode: swarm yet",
                                    pb.source, f"apps.{name}.domains"))
    if prune:
        problems.append(Problem("--prune is not supported with engine.mode: swarm yet", pb.source, "engine.mode"))
    if problems:
        raise InputError(locate_problems(pb, problems))


def service_facts(remote: Any, project: str, environment: str, *, networks: bool = True
                  ) -> tuple[dict[str, ServiceFacts], set[str], list[SecretFact]]:
    """The leader's view: our services by name, our networks' names, our secrets (three reads; two without
    the networks)."""
    api = remote.docker().api
    labels = {"label": label_filters(project, environment)}
    services = {str(s["Spec"]["Name"]): parse_service(s) for s in api.services(filters=labels)}
    nets = {str(n["Name"]) for n in api.networks(filters=labels)} if networks else set()
    secrets = [parse_secret(s) for s in api.secrets(filters=labels)]
    return services, nets, secrets


def deploy_swarm(pb: Any, hosts: Sequence[tuple[str, Any]], desired: list[DesiredApp], *, secrets: Any,
                 reporter: Any = None, check: bool = False, diff: bool = False,
                 verbose: bool = False) -> SwarmDeployResult:
    """`hosts`: (label, open Remote) pairs; the first is a manager (it formed the swarm)."""
    project, env = pb.project, pb.environment
    ctxs = [DeployContext(remote=remote, reporter=reporter, verbose=verbose, host=label, secrets=secrets)
            for label, remote in hosts]
    runners = [Runner(label, ctx, check=check, diff=diff, reporter=reporter)
               for (label, _), ctx in zip(hosts, ctxs, strict=True)]
    wanted = [d for d in desired if d.build is not None]
    ipvs: dict[str, bool | None] = {label: None for label, _ in hosts}

    def images(i: int) -> None:
        runner, remote = runners[i], hosts[i][1]
        facts = None
        with runner.guard("gather app facts"):
            facts = gather_remote(remote, project, env)
            ipvs[hosts[i][0]] = gather_ipvs(remote).available
        if facts is None:
            return
        for d in wanted:
            runner.run_task(f"app {d.name}: image", plan.plan_image(d, facts, project=project, environment=env))

    # the first host alone, then the rest in parallel: `build: local` builds here once, the other hosts' builds
    # are cache hits giving the same image (concurrent first builds re-tag each other's images mid-ship)
    images(0)
    with ThreadPoolExecutor(max_workers=max(1, min(len(hosts) - 1, MAX_PARALLEL_HOSTS))) as pool:
        list(pool.map(images, range(1, len(hosts))))
    services_done: list[str] = []
    mode: list[str] = []

    def result() -> SwarmDeployResult:  # a Runner's recap is a snapshot: take it at the end
        return SwarmDeployResult([r.recap for r in runners], sorted({t for c in ctxs for t in c.built}),
                                 services_done, mode[0] if mode else "")

    if any(r.failed for r in runners):
        return result()

    leader = runners[0]
    found: tuple[dict[str, ServiceFacts], set[str], list[SecretFact]] | None = None
    with leader.guard("gather service facts"):
        found = service_facts(hosts[0][1], project, env)
    if found is None:
        return result()
    services, networks, secret_facts = found
    existing_secrets = {s.name for s in secret_facts}
    endpoint = endpoint_choice(ipvs)
    mode.append("vip" if endpoint.routing_mesh else "dnsrr")
    if reporter is not None and desired:
        reporter.info(endpoint.reason)
    wanted_services = [(d, service_of(d.container, pb.apps[d.name], routing_mesh=endpoint.routing_mesh))
                       for d in desired]
    # every app's network first: an app may `reach` one planned after it
    leader.run_task("app networks", [c for _, svc in wanted_services for c in plan_network(svc, networks)])
    for d, svc in wanted_services:
        if leader.failed:
            break
        if d.container.release_command and reporter is not None:
            reporter.warn(f"app {d.name}: its release command is not run in swarm mode yet")
        leader.run_task(f"app {d.name}: service", [*plan_secrets(svc, existing_secrets),
                                                   *plan_service(svc, services.get(svc.name))])
        services_done.append(svc.name)
    if not leader.failed:
        tidy_secrets(leader, hosts[0][1], project, env)
    return result()


def tidy_secrets(leader: Runner, remote: Any, project: str, environment: str) -> None:
    """After every rollout converged: read again, remove our secrets no service (Spec or PreviousSpec) uses."""
    found: tuple[dict[str, ServiceFacts], set[str], list[SecretFact]] | None = None
    with leader.guard("old swarm secrets"):
        found = service_facts(remote, project, environment, networks=False)
    if found is not None:
        services, _, secrets = found
        leader.run_task("old swarm secrets", plan_secret_cleanup(project, environment, secrets, services.values()))
