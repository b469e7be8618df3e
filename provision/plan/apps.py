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
from collections.abc import Iterable, Mapping
from typing import Any

from provision.build import BuildSource
from provision.changes import Change, Step
from provision.commands.docker import network_name, owner_labels
from provision.facts.apps import AppFacts, ImageFact
from provision.ops import EngineCall, params
from provision.plan.containers import plan_container, remove_container
from provision.plan.desired import DesiredApp

__all__ = ["DesiredApp", "plan_container"]  # re-exported: the app plan's public names
from provision.ship import plan_ship
from provision.spec import NAME_RE

KEEP_IMAGES = 5  # the default keep_releases: images of kept releases are in use by their stopped containers
_APP_NAME = re.compile(NAME_RE)


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
