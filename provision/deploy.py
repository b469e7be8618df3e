"""`deploy`: build and run the playbook's apps on the host, each isolated, over the host's one SSH connection.

    desired (render + context hash + container config, all local)  ──►  facts (4 API reads)  ──►
    networks (one task)  ──►  per app, in parallel (bounded): image → volumes → container → old images
    ──►  apps no longer in the playbook: reported, removed with --prune (volumes only with --prune-volumes)

Everything that can be wrong with the input (templates, contexts, missing secrets) is found before the host
is touched. Status, logs and exec (read-only helpers for the CLI) live here too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from provision import ship
from provision.appops import DeployContext
from provision.build import assemble, image_tag
from provision.changes import HostRecap
from provision.commands.docker import (
    container_config,
    env_file_content,
    env_file_path,
    label_filters,
    volume_name,
)
from provision.deploy_images import desired_image_app, image_ids, image_task, registry_secrets
from provision.deploy_proxy import front_proxy
from provision.errors import InputError, Problem, StepFailed
from provision.facts.apps import AppFacts, gather, gather_remote
from provision.plan import apps as plan
from provision.plan.apps import DesiredApp
from provision.plan.proxy import desired_proxy, plan_proxy_removal, seed_routes
from provision.playbook import locate_problems
from provision.proxyops import upstream_counts
from provision.releases import git_release, release_id
from provision.render import render_dockerfile
from provision.runner import Runner
from provision.secrets import SecretSource
from provision.spec import Playbook

MAX_PARALLEL_APPS = 3


# --- secrets -----------------------------------------------------------------------------------------------


def secret_source(playbook: Playbook) -> Any:
    return SecretSource(playbook)


# --- desired state -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    apps: tuple[str, ...]  # the apps deployed in this run
    networks: tuple[str, ...]  # apps whose networks must exist (selected + the ones they reach)


def select(playbook: Playbook, only: Sequence[str] | None) -> Selection:
    names = list(playbook.apps)
    if only:
        unknown = [n for n in only if n not in playbook.apps]
        if unknown:
            raise InputError.single(
                f"no app {', '.join(map(repr, unknown))} in the playbook (apps: {', '.join(names) or 'none'})",
                playbook.source,
                "apps",
            )
        names = [n for n in names if n in only]
    nets = list(names)
    for n in names:
        nets += [r for r in playbook.apps[n].reach if r not in nets]
    return Selection(tuple(names), tuple(nets))


def desired_apps(playbook: Playbook, names: Iterable[str], secrets: Any, ssh_user: str) -> list[DesiredApp]:
    """Render, hash and configure every app locally; all input problems at once, as one InputError."""
    names = list(names)
    registry = registry_secrets(playbook, names)  # {registry password secret: its key path}
    wanted = sorted({s for n in names for s in playbook.apps[n].secrets} | set(registry))
    problems: list[Problem] = []
    if wanted and secrets is not None:
        missing = list(secrets.missing(wanted))
        for name in missing:
            users = [n for n in names if name in playbook.apps[n].secrets]
            problems.append(
                Problem(
                    f"secret {name} is not set (environment or .env beside the playbook)",
                    playbook.source,
                    f"apps.{users[0]}.secrets" if users else registry[name],
                )
            )
    out: list[DesiredApp] = []
    git = git_release(playbook.base_dir)
    for name in names:
        app = playbook.apps[name]
        if app.image is not None:  # a prebuilt image: nothing to render or hash here
            if not problems and _env_file_ok(playbook, name, secrets, problems):
                d = desired_image_app(playbook, name, {s: secrets.digest(s) for s in app.secrets}, ssh_user)
                cfg = replace(d.container, release=release_id(git, d.container.config_hash))
                out.append(replace(d, container=cfg, keep_releases=app.keep_releases))
            continue
        try:
            rendered = render_dockerfile(playbook, name)
            build = assemble(
                playbook.app_context(name), rendered.text, app.build_args, dockerfile_path=rendered.dockerfile
            )
        except InputError as exc:
            problems.extend(exc.problems)
            continue
        if problems:
            continue
        tag = image_tag(playbook.project, name, build.content_hash)
        read_only = app.read_only if app.read_only is not None else rendered.read_only
        tmpfs = tuple(dict.fromkeys(("/tmp", *rendered.writable)))
        digests = {s: secrets.digest(s) for s in app.secrets}
        cfg = container_config(
            playbook.project,
            playbook.environment,
            name,
            app,
            image=tag,
            build_hash=build.content_hash,
            secret_digests=digests,
            ssh_user=ssh_user,
            read_only=read_only,
            tmpfs=tmpfs,
            release_command=app.release_command if app.release_command is not None else rendered.release_command,
        )
        # without git, a release is named by its config hash (env-only changes are releases too)
        cfg = replace(cfg, release=release_id(git, cfg.config_hash))
        if not _env_file_ok(playbook, name, secrets, problems):
            continue
        volumes = tuple((volume_name(playbook.project, playbook.environment, name, v), v) for v in sorted(app.volumes))
        out.append(DesiredApp(name, tag, build, cfg, volumes, build_where=app.build, drain=app.drain,
                              keep_releases=app.keep_releases))
    if problems:
        raise InputError(locate_problems(playbook, problems))
    return out


def _env_file_ok(playbook: Playbook, name: str, secrets: Any, problems: list[Problem]) -> bool:
    """The env file is written by deploy's executor from the secret source; check it can be, here."""
    app = playbook.apps[name]
    if app.secrets:
        try:
            env_file_content({s: secrets.value(s) for s in app.secrets})
        except ValueError as exc:
            problems.append(Problem(str(exc), playbook.source, f"apps.{name}.secrets"))
            return False
    return True


# --- deploy ------------------------------------------------------------------------------------------------


@dataclass
class DeployResult:
    recap: HostRecap
    orphans: list[str]
    built: list[str]

    @property
    def failed(self) -> bool:
        return self.recap.failed


def deploy(
    playbook: Playbook,
    remote: Any,
    *,
    reporter: Any = None,
    host: str = "",
    only: Sequence[str] = (),
    check: bool = False,
    diff: bool = False,
    prune: bool = False,
    prune_volumes: bool = False,
    verbose: bool = False,
    secrets: Any = None,
    desired: list[DesiredApp] | None = None,
) -> DeployResult:
    selection = select(playbook, only)
    if secrets is None and (any(playbook.apps[n].secrets for n in selection.apps)
                            or registry_secrets(playbook, selection.apps)):
        secrets = secret_source(playbook)
    if desired is None:
        desired = desired_apps(playbook, selection.apps, secrets, remote.user)
    ctx = DeployContext(remote=remote, reporter=reporter, verbose=verbose, host=host, secrets=secrets)
    runner = Runner(host or remote.target.label, ctx, check=check, diff=diff, reporter=reporter)
    project, env = playbook.project, playbook.environment
    facts: AppFacts | None = None
    with runner.guard("gather app facts"):
        facts = gather_remote(remote, project, env)
    if facts is None or runner.failed:
        return DeployResult(runner.recap, [], ctx.built)

    if playbook.provider == "local":
        changes = None
        with runner.guard("ship build base images"):
            changes = bases_to_ship(ctx, [d for d in desired
                                          if d.build is not None and plan.image_present(d, facts) is None])
        if changes is None or runner.failed:
            return DeployResult(runner.recap, [], ctx.built)
        runner.run_task("ship build base images", changes)
    proxy = desired_proxy(playbook)
    routed = [n for n in playbook.apps if playbook.apps[n].domains]
    networks = list(dict.fromkeys((*selection.networks, *(routed if proxy else ()))))
    runner.run_task("app networks", plan.plan_networks(networks, facts, project=project, environment=env))
    if proxy is not None:
        if not front_proxy(ctx, runner, proxy, facts, check=check) or runner.failed:
            return DeployResult(runner.recap, [], ctx.built)
    elif facts.proxy is not None and reporter is not None and not prune:
        reporter.warn(f"the proxy container {facts.proxy.name} runs but the playbook has no `proxy:`; "
                      "`deploy --prune` removes it (not its certificate volumes)")
    elif facts.proxy is not None and prune and not only:
        runner.run_task("prune proxy", plan_proxy_removal(facts))

    host_ids: dict[str, str] = {}
    local_ids: dict[str, str] = {}
    if any(d.pulled for d in desired):
        with runner.guard("read the image apps' images"):
            host_ids, local_ids = image_ids(ctx, desired)
        if runner.failed:
            return DeployResult(runner.recap, [], ctx.built)

    def one(d: DesiredApp) -> None:
        assert facts is not None
        if d.pulled is not None:  # pulled or shipped; its container's config hash then covers the image id
            d = image_task(runner, ctx, d, host_ids, local_ids)
        else:
            runner.run_task(f"app {d.name}: image", plan.plan_image(d, facts, project=project, environment=env))
        runner.run_task(f"app {d.name}: volumes", plan.plan_volumes(d, facts, project=project, environment=env))
        runner.run_task(f"app {d.name}: container", plan.plan_container(d, facts, proxy=proxy is not None))
        runner.run_task(f"app {d.name}: old images", plan.plan_image_prune(d, facts, keep=d.keep_releases))

    with ThreadPoolExecutor(max_workers=MAX_PARALLEL_APPS, thread_name_prefix="dockyard-app") as pool:
        for future in [pool.submit(one, d) for d in desired]:
            future.result()

    orphans: list[str] = []
    if not only:
        orphans = plan.orphans(playbook.apps, facts)
        for label in plan.unsafe_app_labels(facts):
            if reporter is not None:
                reporter.warn(f"skipping objects whose dockyard.app label {label!r} is not an app name "
                              "(never pruned, no path is built from it); inspect them on the host")
        for name in orphans:
            if prune:
                runner.run_task(
                    f"prune app {name}",
                    plan.plan_prune(
                        name,
                        facts,
                        prune_volumes=prune_volumes,
                        env_file=env_file_path(remote.user, project, env, name),
                        proxy=proxy is not None,
                    ),
                )
            elif reporter is not None:
                reporter.warn(
                    f"app {name!r} runs on the host but is not in the playbook; "
                    "`deploy --prune` removes it (its volumes only with --prune-volumes)"
                )
    return DeployResult(runner.recap, orphans, ctx.built)


def bases_to_ship(ctx: DeployContext, to_build: list[DesiredApp]) -> list[Any]:
    """A sandbox host's engine has no registry: the images its builds start FROM come from this machine."""
    wanted: list[str] = []
    for d in to_build:
        if d.build_where == "host":
            wanted += [r for r in ship.from_images(d.build.dockerfile_text) if r not in wanted]
    if not wanted:
        return []
    client = ctx.local_docker()
    present = []
    for ref in wanted:
        try:
            client.images.get(ref)
            present.append(ref)
        except Exception:  # not here either: the host's build pulls it or says it cannot
            continue
    if not present:
        return []
    return plan.plan_ship_bases(present, ship.local_ids(client, present), ship.remote_ids(ctx.remote, present))


# --- status, logs, exec ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AppStatus:
    app: str
    container: str | None
    version: str  # build hash (12)
    config: str  # config hash (12)
    state: str
    health: str
    ports: str
    started: str
    image_size: int | None
    domains: str = "-"  # routed through the proxy (the row of the proxy itself: its routes and requests)


def status(playbook: Playbook, remote: Any) -> list[AppStatus]:
    facts = gather(remote.docker(), playbook.project, playbook.environment)
    api = remote.docker().api
    sizes = {i.id: i.size for i in facts.images}
    rows: list[AppStatus] = []
    for name in sorted(set(playbook.apps) | set(facts.apps_seen)):
        containers = sorted(facts.containers_of(name), key=lambda c: (c.running, c.created), reverse=True)
        if not containers:
            rows.append(
                AppStatus(
                    name,
                    None,
                    "-",
                    "-",
                    "absent" if name in playbook.apps else "orphan network",
                    "-",
                    "-",
                    "-",
                    None,
                )
            )
            continue
        c = containers[0]
        started = "-"
        try:
            started = api.inspect_container(c.id)["State"].get("StartedAt", "-")[:19].replace("T", " ")
        except Exception:  # a container removed meanwhile
            started = "-"
        ports = ", ".join(f"{p.host_ip or '0.0.0.0'}:{p.host_port}->{p.container_port}" for p in c.ports) or "-"
        state = c.state if name in playbook.apps else f"{c.state} (not in playbook)"
        rows.append(
            AppStatus(
                name,
                c.name,
                c.image_ref or c.build_hash[:12] or "-",  # an image app: its reference
                c.config_hash[:12] or "-",
                state,
                c.health or "-",
                ports,
                started,
                sizes.get(c.image_id),
                ", ".join(c.domains) or "-",
            )
        )
    if playbook.proxy is not None or facts.proxy is not None:
        rows.append(proxy_status(remote, facts, wanted=playbook.proxy is not None))
    return rows


def proxy_status(remote: Any, facts: AppFacts, *, wanted: bool) -> AppStatus:
    """The proxy as a status row: its container's state, ports and how many routes it serves (requests in
    flight per upstream when it answers)."""
    p = facts.proxy
    if p is None:
        return AppStatus("[proxy]", None, "-", "-", "absent (deploy creates it)", "-", "-", "-", None)
    routes = len(seed_routes(facts))  # what a restarted proxy would route: the live containers' labels
    inflight = sum(upstream_counts(remote, p.name).values()) if p.running else 0
    ports = ", ".join(f"{x.host_ip or '0.0.0.0'}:{x.host_port}->{x.container_port}" for x in p.ports) or "-"
    state = p.state if wanted else f"{p.state} (no proxy: in the playbook)"
    return AppStatus("[proxy]", p.name, p.image[:40], p.config_hash[:12] or "-", state, "-", ports, "-", None,
                     f"{routes} routes, {inflight} requests in flight")


def find_container(playbook: Playbook, remote: Any, app: str, *, running: bool = True) -> str:
    """The app's container: the newest running one; with running=False (logs) a stopped one will do."""
    if app not in playbook.apps:
        raise InputError.single(
            f"no app {app!r} in the playbook (apps: {', '.join(playbook.apps)})", playbook.source, "apps"
        )
    api = remote.docker().api
    labels = {"label": label_filters(playbook.project, playbook.environment, app)}
    found = api.containers(all=not running, filters=labels)
    if not found:
        raise StepFailed(f"app {app} has no {'running ' if running else ''}container (deploy it first)")
    found.sort(key=lambda d: (d.get("State") == "running", d.get("Created", 0)), reverse=True)
    return str(found[0]["Id"])
