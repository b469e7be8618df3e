"""Pure planning for apps: (desired apps, observed facts) -> Changes. Never touches the network.

Per app, in the order deploy applies them:
- image: build when no image of the project carries the build hash (tag `<project>/<app>:<hash12>`);
- network: `<project>-<environment>-<app>` (+ those of the apps it may `reach`), created when absent;
- volumes: `<project>-<environment>-<app>-<volume>`, labelled, created when absent, never removed here;
- container: config hash label equal and running → ok; otherwise roll out (start new, wait healthy, then
  remove old; on failure remove new and keep old) — the effect lives in provision.appops;
- old images: keep the newest KEEP_IMAGES per app (plus any image a container uses).
Apps seen on the host but absent from the playbook are listed by `orphans`; `plan_prune` removes them.

The effects referenced by Steps are plain functions of provision.appops bound with functools.partial:
building a Step does nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from provision import appops
from provision.build import BuildContext
from provision.changes import Change, Step
from provision.commands.docker import ContainerConfig, network_name, owner_labels
from provision.facts.apps import AppFacts, ContainerFact, ImageFact
from provision.ship import plan_ship
from provision.spec import NAME_RE

KEEP_IMAGES = 3
_APP_NAME = re.compile(NAME_RE)


@dataclass(frozen=True)
class DesiredApp:
    name: str
    image: str  # tag <project>/<app>:<hash12>
    build: BuildContext
    container: ContainerConfig
    volumes: tuple[tuple[str, str], ...]  # (volume name, short name)
    # reads the secret values when the env file is uploaded (never stored in a Change)
    env_file: Callable[[], bytes] | None = None
    redact: Callable[[str], str] = str
    build_where: str = "host"  # "local": build on this machine and ship the image (AppSpec.build)

    @property
    def build_hash(self) -> str:
        return self.build.content_hash


def _target(app: str, what: str) -> str:
    return f"app:{app}:{what}"


def image_present(desired: DesiredApp, facts: AppFacts) -> ImageFact | None:
    for image in facts.images:
        if image.build_hash == desired.build_hash and desired.image in image.tags:
            return image
    return None


def plan_image(desired: DesiredApp, facts: AppFacts, *, project: str, environment: str) -> list[Change]:
    if image_present(desired, facts) is not None:
        return []
    labels = owner_labels(project, environment, desired.name)
    files = len(desired.build.files)
    local = desired.build_where == "local"
    where = "on this machine, then ship it to the host" if local else "on the host"
    step = Step(
        f"build {desired.image} {where} ({files} context files)",
        effect=partial(
            appops.build_local_and_ship if local else appops.build_image,
            app=desired.name,
            context=desired.build,
            tag=desired.image,
            labels=labels,
            redact=desired.redact,
        ),
    )
    return [
        Change(
            _target(desired.name, "image"),
            "build",
            f"no image with build hash {desired.build_hash[:12]}",
            (step,),
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
    step = Step(
        f"ship {', '.join(todo)} to the host (docker save | docker load)", effect=partial(appops.ship_images, refs=todo)
    )
    return [Change("host:build-bases", "ship", "missing on the host", (step,), data={"images": list(todo)})]


def plan_networks(apps: Iterable[str], facts: AppFacts, *, project: str, environment: str) -> list[Change]:
    """One user-defined bridge per app: apps cannot reach each other unless one joins another's (`reach`)."""
    changes = []
    for app in apps:
        name = network_name(project, environment, app)
        if facts.network(name) is not None:
            continue
        step = Step(
            f"create network {name}",
            effect=partial(appops.ensure_network, name=name, labels=owner_labels(project, environment, app)),
        )
        changes.append(
            Change(
                _target(app, "network"),
                "create",
                "absent",
                (step,),
                after=f"network {name}\n",
                data={"network": name},
            )
        )
    return changes


def plan_volumes(desired: DesiredApp, facts: AppFacts, *, project: str, environment: str) -> list[Change]:
    steps = []
    for full, short in desired.volumes:
        if facts.volume(full) is None:
            labels = {**owner_labels(project, environment, desired.name), "dockyard.volume": short}
            steps.append(Step(f"create volume {full}", effect=partial(appops.ensure_volume, name=full, labels=labels)))
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


def plan_container(desired: DesiredApp, facts: AppFacts) -> list[Change]:
    cfg = desired.container
    want = cfg.config_hash
    seen = facts.containers_of(desired.name)
    keep = next((c for c in seen if c.config_hash == want and c.running and c.health != "unhealthy"), None)
    target = _target(desired.name, "container")
    if keep is not None:
        stale = [c for c in seen if c.id != keep.id]
        if not stale:
            return []
        steps = tuple(
            Step(
                f"remove stale container {c.name} ({c.state})",
                effect=partial(appops.remove_container, container_id=c.id),
            )
            for c in stale
        )
        return [
            Change(
                target,
                "cleanup",
                "stale containers beside the current one",
                steps,
                data={"container": keep.name},
            )
        ]
    old = [c for c in seen if c.running]
    dead = [c for c in seen if not c.running]
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
    steps: list[Step] = []
    for c in dead:
        steps.append(
            Step(
                f"remove stopped container {c.name}",
                effect=partial(appops.remove_container, container_id=c.id),
            )
        )
    if desired.env_file is not None and cfg.env_file:
        steps.append(
            Step(
                f"upload env file {cfg.env_file} (0600; {len(cfg.secrets)} secrets)",
                effect=partial(appops.upload_env_file, path=cfg.env_file, content=desired.env_file),
            )
        )
    verb = "then remove " + ", ".join(c.name for c in old) if old else "no old container"
    gap = " (stops the old one first: same host port)" if stop_first else ""
    steps.append(
        Step(
            f"start {cfg.name} from {cfg.image}, wait until healthy, {verb}{gap}",
            effect=partial(
                appops.roll_out,
                config=cfg,
                old=tuple(old),
                stop_first=tuple(stop_first),
                redact=desired.redact,
            ),
        )
    )
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
            },
        )
    ]


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
            effect=partial(appops.remove_image, image_id=i.id, tags=i.tags),
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


def plan_prune(app: str, facts: AppFacts, *, prune_volumes: bool, env_file: str | None = None) -> list[Change]:
    """Remove an app that left the playbook: containers, network, images, its env file (volumes on request)."""
    steps: list[Step] = []
    for c in facts.containers_of(app):
        steps.append(Step(f"remove container {c.name}", effect=partial(appops.remove_container, container_id=c.id)))
    if env_file and steps:
        steps.append(Step(f"remove env file {env_file} (if any)", argv=("rm", "-f", env_file)))
    for n in facts.networks:
        if n.app == app:
            steps.append(Step(f"remove network {n.name}", effect=partial(appops.remove_network, network_id=n.id)))
    kept_volumes = []
    for v in facts.volumes:
        if v.app != app:
            continue
        if prune_volumes:
            steps.append(Step(f"remove volume {v.name}", effect=partial(appops.remove_volume, name=v.name)))
        else:
            kept_volumes.append(v.name)
    for i in facts.images_of(app):
        in_other_env = any(c.image_id == i.id for c in facts.other_containers)
        if not in_other_env:
            steps.append(
                Step(
                    f"remove image {', '.join(i.tags) or i.id[:19]}",
                    effect=partial(appops.remove_image, image_id=i.id, tags=i.tags),
                )
            )
    if not steps:
        return []
    data: dict[str, Any] = {"kept_volumes": kept_volumes}
    reason = "not in the playbook" + (f" (volumes kept: {', '.join(kept_volumes)})" if kept_volumes else "")
    return [Change(f"app:{app}", "delete", reason, tuple(steps), before=f"app {app}\n", after=None, data=data)]
