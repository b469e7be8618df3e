"""`deploy` with engine.mode: swarm: every app becomes a Swarm service. STATUS: provision/commands/service.py.

    desired (the same render + hash + container config as standalone, all local)  ──►
    per host (the first, then the others in parallel), each over its own connection: its IPVS fact
    (provision.facts.ipvs), then images: build there (`build: host`) or build here and ship (`build: local`)
    when the host lacks the image's tag — with a top-level `registry:` (provision.plan.push) only on the first
    host, which pushes it (the others pull the service's `<server>/<project>/<app>@digest` themselves, nothing
    is shipped to them); an `image:` app's image pulled there, or shipped from this machine
    when the host cannot pull (provider local, `pull: never`, or a failed pull: provision.plan.images)  ──►
    image apps: the service runs the first host's image (its id in the config hash, so a no-op deploy changes
    nothing), pinned as `repo@digest` when that image came from a registry  ──►
    the endpoint choice (provision.plan.services.endpoint_choice: the routing mesh only when every host has
    IPVS, else dnsrr + host-mode ports; said once in the output)  ──►
    services, through the first host (a manager): facts (services, networks, secrets with our labels) ──►
    per app: overlay network, Swarm secrets, service create/update/nothing (provision.plan.services) and the
    bounded wait for its rollout (a rollback fails the run: exit 1)  ──►
    once all converged: the leader's facts again, and the environment's secrets no service references removed.

Not in swarm mode yet (refused, exit 2, before anything is touched): `domains` (the front proxy),
--prune, a publish address (`publish: "127.0.0.1:8080"`: a swarm publishes on every interface).
A release command is not run (reported).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from provision.appops import DeployContext
from provision.changes import HostRecap
from provision.commands.docker import label_filters
from provision.commands.service import pinned_image, service_of
from provision.deploy_images import image_ids, image_task
from provision.errors import InputError, Problem, StepFailed, api_status
from provision.facts.apps import gather_remote
from provision.facts.ipvs import gather_ipvs
from provision.plan import apps as plan
from provision.plan.desired import DesiredApp
from provision.plan.push import plan_push, push_auth, push_pin, registry_ref
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
from provision.registry import RegistryAuth
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
        if app.domains:
            problems.append(Problem("`domains` (the front proxy) is not supported with engine.mode: swarm yet",
                                    pb.source, f"apps.{name}.domains"))
        if app.publish is not None and app.publish.host_ip:
            # a swarm publishes on every interface of a node: binding one address cannot be honoured
            problems.append(Problem("a publish address is not supported with engine.mode: swarm (a swarm "
                                    "publishes on every interface): give the port alone", pb.source,
                                    f"apps.{name}.publish"))
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
    pulled = [d for d in desired if d.pulled is not None]
    resolved: list[dict[str, DesiredApp]] = [{} for _ in hosts]  # per host: image apps with their image id
    ipvs: dict[str, bool | None] = {label: None for label, _ in hosts}
    push = push_auth(pb) if wanted else None  # a registry: built once on the first host, pushed, pulled by nodes
    pushed: dict[str, str] = {}  # app → the digest reference it was pushed as

    def images(i: int) -> None:
        runner, remote = runners[i], hosts[i][1]
        facts = None
        with runner.guard("gather app facts"):
            facts = gather_remote(remote, project, env)
            ipvs[hosts[i][0]] = gather_ipvs(remote).available
        if facts is None:
            return
        for d in wanted if push is None or i == 0 else ():
            runner.run_task(f"app {d.name}: image", plan.plan_image(d, facts, project=project, environment=env))
            if push is not None:
                pushed[d.name] = push_task(runner, remote, d, push)
        ids = None
        if pulled:
            with runner.guard("read the image apps' images"):
                ids = image_ids(ctxs[i], pulled)
        for d in pulled if ids is not None else ():
            resolved[i][d.name] = image_task(runner, ctxs[i], d, *ids)

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
    pins: dict[str, str] | None = dict(pushed)
    if pulled:
        desired = [resolved[0].get(d.name, d) for d in desired]
        pins = None
        with leader.guard("image apps: digests"):
            pins = {**pushed, **image_pins(hosts[0][1], [d for d in desired if d.pulled is not None])}
        if pins is None:
            return result()
        warn_other_images(reporter, [label for label, _ in hosts], resolved, pins)
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
    wanted_services = [(d, service_of(d.container, pb.apps[d.name], routing_mesh=endpoint.routing_mesh,
                                      image_pin=pins.get(d.name, ""))) for d in desired]
    # every app's network first: an app may `reach` one planned after it
    leader.run_task("app networks", [c for _, svc in wanted_services for c in plan_network(svc, networks)])
    for d, svc in wanted_services:
        if leader.failed:
            break
        if d.container.release_command and reporter is not None:
            reporter.warn(f"app {d.name}: its release command is not run in swarm mode yet")
        auth = push if d.name in pushed else d.pulled.auth if d.pulled is not None else None
        leader.run_task(f"app {d.name}: service", [*plan_secrets(svc, existing_secrets),
                                                   *plan_service(svc, services.get(svc.name), auth=auth)])
        services_done.append(svc.name)
    if not leader.failed:
        tidy_secrets(leader, hosts[0][1], project, env)
    return result()


def push_task(runner: Runner, remote: Any, d: DesiredApp, auth: RegistryAuth) -> str:
    """Push the first host's image of a built app unless it was pushed before; its digest reference ("" in check
    mode before the push, or after a failure: the runner says so)."""
    ref = registry_ref(auth.server, d.image)
    digests: list[str] | None = None
    with runner.guard(f"app {d.name}: registry digest"):
        digests = repo_digests(remote, ref)
    changes = plan_push(d, auth, digests) if not runner.failed else []
    runner.run_task(f"app {d.name}: push", changes)
    if not changes or runner.check or runner.failed:
        return push_pin(ref, digests)
    with runner.guard(f"app {d.name}: pushed digest"):
        pin = push_pin(ref, repo_digests(remote, ref))
        if not pin:
            raise StepFailed(f"{ref} has no digest from the registry after the push")
        return pin
    return ""


def repo_digests(remote: Any, ref: str) -> list[str] | None:
    """The RepoDigests of the host's image under `ref` (None: no such image)."""
    try:
        return [str(x) for x in remote.docker().api.inspect_image(ref).get("RepoDigests") or []]
    except Exception as exc:
        if api_status(exc) != 404:
            raise
        return None


def image_pins(remote: Any, apps: Sequence[DesiredApp]) -> dict[str, str]:
    """Per image app, the digest reference of the first host's image ("" when it has none); one inspect each."""
    pins: dict[str, str] = {}
    for d in apps:
        assert d.pulled is not None
        # None (check mode, before a pull): no image yet, no pin to show
        digests = repo_digests(remote, d.container.build_hash or d.pulled.ref) or []
        pins[d.name] = pinned_image(d.pulled.ref, digests)
    return pins


def warn_other_images(reporter: Any, labels: Sequence[str], resolved: Sequence[dict[str, DesiredApp]],
                      pins: dict[str, str]) -> None:
    """A host holding another image under an image app's reference (`pull: missing` keeps a moved tag)."""
    if reporter is None:
        return
    for name, first in resolved[0].items():
        for label, apps in zip(labels[1:], resolved[1:], strict=True):
            other = apps.get(name)
            if other is None or other.container.build_hash == first.container.build_hash:
                continue
            ref = first.image
            runs = (f"its tasks there run {pins[name]}" if pins.get(name)
                    else "its tasks there run that host's image")
            reporter.warn(f"app {name}: {label} holds another image for {ref} "
                          f"({other.container.build_hash.removeprefix('sha256:')[:12]}) than the first host "
                          f"({first.container.build_hash.removeprefix('sha256:')[:12]}); {runs} "
                          "(`pull: always` brings every host the registry's current one)")


def tidy_secrets(leader: Runner, remote: Any, project: str, environment: str) -> None:
    """After every rollout converged: read again, remove our secrets no service (Spec or PreviousSpec) uses."""
    found: tuple[dict[str, ServiceFacts], set[str], list[SecretFact]] | None = None
    with leader.guard("old swarm secrets"):
        found = service_facts(remote, project, environment, networks=False)
    if found is not None:
        services, _, secrets = found
        leader.run_task("old swarm secrets", plan_secret_cleanup(project, environment, secrets, services.values()))
