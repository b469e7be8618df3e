"""Pure planning for apps: (desired apps, observed facts) -> Changes. Never touches the network.

Per app, in the order deploy applies them:
- image: build when no image of the project carries the build hash (tag `<project>/<app>:<hash12>`);
- network: `<project>-<environment>-<app>` (+ those of the apps it may `reach`), created when absent;
- volumes: `<project>-<environment>-<app>-<volume>`, labelled, created when absent, never removed here;
- container: config hash label equal and running → ok; otherwise roll out (start new, wait healthy, then
  remove old; on failure remove new and keep old) — `roll_out` plans it as one Guarded op;
- old images: keep the newest KEEP_IMAGES per app (plus any image a container uses).
Apps seen on the host but absent from the playbook are listed by `orphans`; `plan_prune` removes them.

Steps carry ops (provision.ops: EngineCall, Argv, Upload, Wait, and one Guarded per roll-out that holds every
decision of it, undo included); deploy's context executes them (provision.appops). Building a Step does nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from provision.build import BuildContext, BuildSource
from provision.changes import Change, Step
from provision.commands.docker import ROLE_CANDIDATE, ContainerConfig, network_name, owner_labels
from provision.facts.apps import AppFacts, ContainerFact, ImageFact
from provision.ops import Argv, EngineCall, Guarded, Op, SecretFile, Upload, Wait, digest, params
from provision.plan.images import PulledImage
from provision.plan.proxy import route_switch
from provision.ship import plan_ship
from provision.spec import NAME_RE

KEEP_IMAGES = 3
NO_HEALTHCHECK_SETTLE = 2.0  # without a health check: still running this long after start = up
_APP_NAME = re.compile(NAME_RE)


@dataclass(frozen=True)
class DesiredApp:
    name: str
    image: str  # tag <project>/<app>:<hash12> (an image app: its reference)
    build: BuildContext | None  # None: an image app (`pulled`), never built
    container: ContainerConfig
    volumes: tuple[tuple[str, str], ...]  # (volume name, short name)
    build_where: str = "host"  # "local": build on this machine and ship the image (AppSpec.build)
    drain: float = 30.0  # routed apps: how long the old container's in-flight requests may run after a switch
    pulled: PulledImage | None = None  # an image app: pulled or shipped (provision.plan.images), not built

    @property
    def build_hash(self) -> str:
        """The build's content hash (an image app: the image id on the host, once known)."""
        return self.build.content_hash if self.build is not None else self.container.build_hash


def _target(app: str, what: str) -> str:
    return f"app:{app}:{what}"


def image_present(desired: DesiredApp, facts: AppFacts) -> ImageFact | None:
    for image in facts.images:
        if image.build_hash == desired.build_hash and desired.image in image.tags:
            return image
    return None


def plan_image(desired: DesiredApp, facts: AppFacts, *, project: str, environment: str) -> list[Change]:
    if desired.build is None or image_present(desired, facts) is not None:
        return []  # an image app's image: provision.plan.images
    labels = owner_labels(project, environment, desired.name)
    files = len(desired.build.files)
    local = desired.build_where == "local"
    where = "on this machine, then ship it to the host" if local else "on the host"
    build = EngineCall("image.build", params(
        app=desired.name, source=BuildSource.of(desired.build), tag=desired.image, labels=labels,
        where="local" if local else "host", redact=desired.container.secrets))
    steps = [Step(f"build {desired.image} {where} ({files} context files)", build)]
    if local:
        steps.append(Step(f"ship {desired.image} to the host (docker save | docker load)",
                          EngineCall("image.ship", params(app=desired.name, refs=(desired.image,)))))
    return [
        Change(
            _target(desired.name, "image"),
            "build",
            f"no image with build hash {desired.build_hash[:12]}",
            tuple(steps),
            before=None,
            after=f"image: {desired.image}\n",
            data={"image": desired.image, "build_hash": desired.build_hash},
        )
    ]


def plan_ship_bases(
    refs: Iterable[str], local_ids: Mapping[str, str], remote_ids: Mapping[str, str | None]
) -> list[Change]:
    """Base images the builds need that this machine has and the host lacks (or holds differently)."""
    todo = tuple(plan_ship(list(refs), local_ids, remote_ids))
    if not todo:
        return []
    step = Step(f"ship {', '.join(todo)} to the host (docker save | docker load)",
                EngineCall("image.ship", params(refs=todo)))
    return [Change("host:build-bases", "ship", "missing on the host", (step,), data={"images": list(todo)})]


def plan_networks(apps: Iterable[str], facts: AppFacts, *, project: str, environment: str) -> list[Change]:
    """One user-defined bridge per app: apps cannot reach each other unless one joins another's (`reach`)."""
    changes = []
    for app in apps:
        name = network_name(project, environment, app)
        if facts.network(name) is not None:
            continue
        step = Step(f"create network {name}", EngineCall("network.create", params(
            name=name, labels=owner_labels(project, environment, app))))
        changes.append(Change(_target(app, "network"), "create", "absent", (step,),
                              after=f"network {name}\n", data={"network": name}))
    return changes


def plan_volumes(desired: DesiredApp, facts: AppFacts, *, project: str, environment: str) -> list[Change]:
    steps = []
    for full, short in desired.volumes:
        if facts.volume(full) is None:
            labels = {**owner_labels(project, environment, desired.name), "dockyard.volume": short}
            steps.append(Step(f"create volume {full}", EngineCall("volume.create", params(name=full, labels=labels))))
    if not steps:
        return []
    return [
        Change(
            _target(desired.name, "volumes"),
            "create",
            "absent",
            tuple(steps),
            after="".join(f"volume {s.description.rsplit(' ', 1)[1]}\n" for s in steps),
        )
    ]


def _publish_conflicts(cfg: ContainerConfig, container: ContainerFact) -> bool:
    if cfg.publish is None or not container.running:
        return False
    host_ip, host_port = cfg.publish
    return any(
        p.host_port == host_port and (not host_ip or p.host_ip in ("", "0.0.0.0", "::", host_ip))
        for p in container.ports
    )


def remove_container(container_id: str) -> EngineCall:
    return EngineCall("container.remove", params(id=container_id))


def env_file_steps(cfg: ContainerConfig) -> list[Step]:
    """The env file of the app's secrets: a 0700 directory, then the file (0600). The op names the secrets
    and carries a digest of their values (config_hash covers the same digests); the executor reads them."""
    assert cfg.env_file
    directory = cfg.env_file.rsplit("/", 1)[0]
    values_digest = digest(repr(cfg.secret_digests).encode())
    return [
        Step(f"create {directory} (0700)", argv=("mkdir", "-p", "-m", "700", directory)),
        Step(f"make {directory} 0700", argv=("chmod", "700", directory)),
        Step(f"upload env file {cfg.env_file} (0600; {len(cfg.secrets)} secrets)",
             Upload(cfg.env_file, SecretFile(cfg.secrets, values_digest), mode=0o600)),
    ]


def _undo_start(stop_first: Sequence[str]) -> tuple[Op, ...]:
    return tuple(EngineCall("container.start", params(id=cid)) for cid in stop_first)


def _health_wait(cfg: ContainerConfig, container: str) -> Wait:
    limit = cfg.health.wait if cfg.health is not None else NO_HEALTHCHECK_SETTLE
    return Wait("container.healthy", params(container=container, health=cfg.health, label=cfg.app), limit)


def _prepare(cfg: ContainerConfig, old: Sequence[ContainerFact]) -> list[Op]:
    """A same-name (same config, unhealthy) container is renamed aside; a leftover of an interrupted run (the
    container or its candidate) is removed."""
    ops: list[Op] = [EngineCall("container.rename", params(id=o.id, name=f"{o.name}-prev-{o.id[:12]}"))
                     for o in old if o.name == cfg.name]
    ops.append(EngineCall("container.remove", params(id=cfg.name, ignore_errors=True)))
    return ops


def _create(cfg: ContainerConfig, *, candidate: bool = False) -> list[Op]:
    name = cfg.candidate_name if candidate else cfg.name
    aliases = () if candidate else (cfg.app,)
    return [Argv(cfg.create_argv(candidate=candidate)),
            *(EngineCall("container.connect", params(container=name, network=n, aliases=aliases))
              for n in cfg.extra_networks)]


def roll_out(cfg: ContainerConfig, old: Sequence[ContainerFact], stop_first: Sequence[str]) -> Guarded:
    """Every decision of a roll-out, as data: the new container is created, joined to the networks it may
    reach; the old ones publishing its host port stop; it starts and must become healthy; a routed app's
    domains then switch to it (one atomic proxy reload). Undo: remove the new one, start the ones stopped for
    the port; the failure shows the new one's (redacted) log tail. A version that never becomes healthy is
    never routed to."""
    ops = _prepare(cfg, old) + _create(cfg)
    ops += [EngineCall("container.stop", params(id=cid, timeout=10)) for cid in stop_first]
    ops.append(EngineCall("container.start", params(id=cfg.name)))
    ops.append(_health_wait(cfg, cfg.name))
    if cfg.upstream:
        ops.append(route_switch(cfg.app, cfg.domains, cfg.upstream))
    undo = (remove_container(cfg.name), *_undo_start(stop_first))
    kept = ", ".join(o.name for o in old) or "none"
    return Guarded(tuple(ops), undo, note=f"removed it, kept the old container ({kept})", logs_of=cfg.name,
                   redact=cfg.secrets)


def roll_out_published(cfg: ContainerConfig, old: Sequence[ContainerFact], stop_first: Sequence[str]) -> Guarded:
    """A published port belongs to one container at a time, and a broken version must never take it: the new
    version first runs as a candidate (same config, no published port, no alias) and must become healthy;
    only then the real container is created, the old one stops, the new one starts on the port and must be
    healthy again; the candidate goes. The gap (connections refused) is the old one's stop plus the new one's
    start-up: `domains` behind the proxy have none."""
    ops = _prepare(cfg, old)
    ops.append(EngineCall("container.remove", params(id=cfg.candidate_name, ignore_errors=True)))
    ops += _create(cfg, candidate=True)
    ops.append(EngineCall("container.start", params(id=cfg.candidate_name)))
    ops.append(_health_wait(cfg, cfg.candidate_name))
    ops += _create(cfg)
    ops += [EngineCall("container.stop", params(id=cid, timeout=10)) for cid in stop_first]
    ops.append(EngineCall("container.start", params(id=cfg.name)))
    ops.append(_health_wait(cfg, cfg.name))
    ops.append(remove_container(cfg.candidate_name))
    undo = (remove_container(cfg.candidate_name), remove_container(cfg.name), *_undo_start(stop_first))
    kept = ", ".join(o.name for o in old) or "none"
    # the log tail shown is the candidate's: a broken version fails there (the real one runs the same config)
    return Guarded(tuple(ops), undo, note=f"removed it; the old container ({kept}) kept the port",
                   logs_of=cfg.candidate_name, redact=cfg.secrets)


def plan_container(desired: DesiredApp, facts: AppFacts, *, proxy: bool = False) -> list[Change]:
    """`proxy`: this deploy runs a front proxy (route switches and unroutes are planned only then)."""
    cfg = desired.container
    want = cfg.config_hash
    seen = [c for c in facts.containers_of(desired.name) if c.role != ROLE_CANDIDATE]
    leftovers = [c for c in facts.containers_of(desired.name) if c.role == ROLE_CANDIDATE]
    keep = next((c for c in seen if c.config_hash == want and c.running and c.health != "unhealthy"), None)
    target = _target(desired.name, "container")
    if keep is not None:
        stale = [c for c in (*seen, *leftovers) if c.id != keep.id]
        if not stale:
            return []
        steps = tuple(Step(f"remove stale container {c.name} ({c.state})", remove_container(c.id)) for c in stale)
        return [Change(target, "cleanup", "stale containers beside the current one", steps,
                       data={"container": keep.name})]
    old = [c for c in seen if c.running]
    dead = [c for c in (*seen, *leftovers) if not c.running or c.role == ROLE_CANDIDATE]
    stop_first = [c.id for c in old if _publish_conflicts(cfg, c)]
    if not seen:
        action, reason = "create", "absent"
    elif any(c.config_hash == want for c in seen):
        action, reason = "replace", "not running or unhealthy"
    else:
        action, reason = (
            "replace",
            f"config hash differs ({old[0].config_hash[:12] if old else 'none running'}",
        )
        reason += f" → {want[:12]})"
    steps: list[Step] = [Step(f"remove stopped container {c.name}", remove_container(c.id)) for c in dead]
    if cfg.secrets and cfg.env_file:
        steps += env_file_steps(cfg)
    if stop_first:
        steps.append(Step(f"start {cfg.candidate_name} (no published port), wait until healthy; then swap the "
                          f"port from the old container to {cfg.name}", roll_out_published(cfg, old, stop_first)))
    else:
        routed = f", then route {', '.join(cfg.domains)} to it" if cfg.upstream and proxy else ""
        rollout = roll_out(cfg, old, stop_first) if proxy or not cfg.upstream else _without_switch(
            roll_out(cfg, old, stop_first))
        steps.append(Step(f"start {cfg.name} from {cfg.image}, wait until healthy{routed}", rollout))
    draining = tuple(u for c in old if (u := c.upstream))
    if proxy and draining and cfg.upstream:
        steps.append(Step(f"drain the old container (up to {desired.drain:g}s)", Wait(
            "proxy.drained", params(upstreams=draining, label=cfg.app), desired.drain)))
    elif proxy and draining:
        steps.append(Step(f"stop routing {cfg.app} through the proxy", EngineCall("proxy.unroute", params(
            app=cfg.app))))
    steps += [Step(f"remove old container {c.name}", remove_container(c.id)) for c in old]
    if proxy and draining and cfg.upstream:
        steps.append(Step("forget the drained container in the proxy's config", EngineCall("proxy.sync", params(
            app=cfg.app))))
    before = "".join(c.config_text or f"config hash: {c.config_hash[:12]}\n" for c in old) or None
    return [
        Change(
            target,
            action,
            reason,
            tuple(steps),
            before=before,
            after=cfg.describe(),
            data={
                "container": cfg.name,
                "config_hash": want,
                "image": cfg.image,
                "create": list(cfg.create_argv()),
                **({"route": {"domains": list(cfg.domains), "upstream": cfg.upstream}} if cfg.upstream else {}),
            },
        )
    ]


def _without_switch(guarded: Guarded) -> Guarded:
    """A routed app deployed with no proxy in this run (cannot happen from a valid playbook; kept safe)."""
    ops = tuple(op for op in guarded.ops if not (isinstance(op, EngineCall) and op.op == "proxy.route"))
    return Guarded(ops, guarded.on_failure, note=guarded.note, logs_of=guarded.logs_of, redact=guarded.redact)


def plan_image_prune(desired: DesiredApp, facts: AppFacts, keep: int = KEEP_IMAGES) -> list[Change]:
    """Keep the newest `keep` images of the app (counting the one about to be built) and any in use."""
    images = sorted(facts.images_of(desired.name), key=lambda i: (i.created, i.id), reverse=True)
    current = image_present(desired, facts)
    others = [i for i in images if current is None or i.id != current.id]
    budget = max(keep - 1, 0)  # the current (or about to be built) image takes one slot
    drop = [i for i in others[budget:] if not facts.image_in_use(i.id)]
    if not drop:
        return []
    steps = tuple(
        Step(
            f"remove old image {', '.join(i.tags) or i.id[:19]}",
            EngineCall("image.remove", params(image_id=i.id, tags=i.tags)),
        )
        for i in drop
    )
    return [
        Change(
            _target(desired.name, "old-images"),
            "delete",
            f"more than {keep} images",
            steps,
            data={"removed": [t for i in drop for t in i.tags]},
        )
    ]


def orphans(app_names: Iterable[str], facts: AppFacts) -> list[str]:
    """Apps dockyard runs on the host (this project and environment) that the playbook no longer has.

    Only names a playbook could have given (spec.NAME_RE): `dockyard.app` is a label read from the host,
    and --prune builds paths (the env file) and names from it; see `unsafe_app_labels`."""
    wanted = set(app_names)
    return sorted(a for a in facts.apps_seen if a not in wanted and _APP_NAME.fullmatch(a))


def unsafe_app_labels(facts: AppFacts) -> list[str]:
    """`dockyard.app` labels on the host that are not app names (e.g. `../../etc`): skipped, never used."""
    return sorted(a for a in facts.apps_seen if not _APP_NAME.fullmatch(a))


def plan_prune(app: str, facts: AppFacts, *, prune_volumes: bool, env_file: str | None = None,
               proxy: bool = False) -> list[Change]:
    """Remove an app that left the playbook: its route, containers, network, images, its env file (volumes on
    request)."""
    steps: list[Step] = []
    if proxy and any(c.upstream for c in facts.containers_of(app)):
        steps.append(Step(f"stop routing {app} through the proxy", EngineCall("proxy.unroute", params(app=app))))
    for c in facts.containers_of(app):
        steps.append(Step(f"remove container {c.name}", remove_container(c.id)))
    if env_file and steps:
        steps.append(Step(f"remove env file {env_file} (if any)", argv=("rm", "-f", env_file)))
    for n in facts.networks:
        if n.app == app:
            steps.append(Step(f"remove network {n.name}", EngineCall("network.remove", params(id=n.id))))
    kept_volumes = []
    for v in facts.volumes:
        if v.app != app:
            continue
        if prune_volumes:
            steps.append(Step(f"remove volume {v.name}", EngineCall("volume.remove", params(name=v.name))))
        else:
            kept_volumes.append(v.name)
    for i in facts.images_of(app):
        in_other_env = any(c.image_id == i.id for c in facts.other_containers)
        if not in_other_env:
            steps.append(
                Step(
                    f"remove image {', '.join(i.tags) or i.id[:19]}",
                    EngineCall("image.remove", params(image_id=i.id, tags=i.tags)),
                )
            )
    if not steps:
        return []
    data: dict[str, Any] = {"kept_volumes": kept_volumes}
    reason = "not in the playbook" + (f" (volumes kept: {', '.join(kept_volumes)})" if kept_volumes else "")
    return [Change(f"app:{app}", "delete", reason, tuple(steps), before=f"app {app}\n", after=None, data=data)]
