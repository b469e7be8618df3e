"""What dockyard's apps look like on the host: containers, images, networks and volumes with its labels.

One API read per kind (4 round trips over the SSH connection, no per-object inspect), parsed into frozen
dataclasses the pure planner consumes. The parsers take the engine's JSON, so tests feed recorded documents.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from provision.commands.docker import (
    LABEL_APP,
    LABEL_BUILD_HASH,
    LABEL_CONFIG,
    LABEL_CONFIG_HASH,
    LABEL_ENVIRONMENT,
    LABEL_IMAGE,
    LABEL_PROJECT,
    LABEL_RELEASE,
    LABEL_VOLUME,
    label_filters,
)
from provision.commands.proxy import LABEL_DOMAINS, LABEL_PORT, LABEL_ROLE, ROLE_PROXY
from provision.imageref import check_reference
from provision.spec_app import check_domain

_RELEASE_ID = re.compile(r"[0-9a-zA-Z][0-9a-zA-Z._-]{0,63}")  # read from the host: shown, never trusted
_HEALTH = re.compile(r"\((healthy|unhealthy|health: starting)\)")


@dataclass(frozen=True)
class PortFact:
    host_ip: str
    host_port: int
    container_port: int


@dataclass(frozen=True)
class ContainerFact:
    id: str
    name: str
    environment: str
    app: str
    config_hash: str
    build_hash: str
    image: str  # the reference it was created from
    image_id: str
    state: str  # running | exited | created | restarting | paused | dead
    health: str | None  # healthy | unhealthy | starting | None (no health check)
    status: str  # the engine's human text, e.g. "Up 2 minutes (healthy)"
    created: int
    ports: tuple[PortFact, ...] = ()
    config_text: str = ""  # the settings it was created with (secret-free), for --diff
    domains: tuple[str, ...] = ()  # host names the proxy routes to it (label)
    proxy_port: int | None = None  # the port the proxy sends requests to (label)
    role: str = ""  # "proxy" for the front proxy; "candidate" for a published app's trial container
    networks: tuple[str, ...] = ()
    release: str = ""  # the release id it runs (label; "" for containers from before releases)
    image_ref: str = ""  # an image app's reference (label dockyard.image)

    @property
    def upstream(self) -> str | None:
        return f"{self.name}:{self.proxy_port}" if self.domains and self.proxy_port else None

    @property
    def running(self) -> bool:
        return self.state == "running"


@dataclass(frozen=True)
class ImageFact:
    id: str
    tags: tuple[str, ...]
    app: str
    build_hash: str
    created: int
    size: int


@dataclass(frozen=True)
class NetworkFact:
    id: str
    name: str
    app: str


@dataclass(frozen=True)
class VolumeFact:
    name: str
    app: str
    volume: str


@dataclass(frozen=True)
class AppFacts:
    """Everything of one project on the host; containers/networks/volumes are this environment's, images
    are the project's (tags are `<project>/<app>:<hash12>`, shared by environments with the same build)."""

    project: str
    environment: str
    containers: tuple[ContainerFact, ...] = ()
    other_containers: tuple[ContainerFact, ...] = ()  # the project's containers in other environments
    images: tuple[ImageFact, ...] = ()
    networks: tuple[NetworkFact, ...] = ()
    volumes: tuple[VolumeFact, ...] = ()
    apps_seen: frozenset[str] = field(default_factory=frozenset)
    proxy: ContainerFact | None = None  # this environment's front proxy container
    proxy_network: bool = False
    proxy_volumes: frozenset[str] = field(default_factory=frozenset)

    def containers_of(self, app: str) -> list[ContainerFact]:
        return [c for c in self.containers if c.app == app]

    def images_of(self, app: str) -> list[ImageFact]:
        return [i for i in self.images if i.app == app]

    def network(self, name: str) -> NetworkFact | None:
        return next((n for n in self.networks if n.name == name), None)

    def volume(self, name: str) -> VolumeFact | None:
        return next((v for v in self.volumes if v.name == name), None)

    def live_container(self, app: str) -> ContainerFact | None:
        """The container the proxy should route `app` to, read from labels alone: the newest running one that
        has domains, is not a trial candidate and is not unhealthy."""
        usable = [c for c in self.containers_of(app)
                  if c.running and c.upstream and c.role != "candidate" and c.health not in ("unhealthy", "starting")]
        return max(usable, key=lambda c: (c.created, c.id), default=None)

    def image_in_use(self, image_id: str) -> bool:
        return any(c.image_id == image_id for c in (*self.containers, *self.other_containers))


def _labels(doc: dict[str, Any]) -> dict[str, str]:
    return dict(doc.get("Labels") or {})


def parse_health(status: str) -> str | None:
    m = _HEALTH.search(status or "")
    if not m:
        return None
    return "starting" if m.group(1) == "health: starting" else m.group(1)


def parse_container(doc: dict[str, Any]) -> ContainerFact:
    labels = _labels(doc)
    names = doc.get("Names") or [""]
    ports = []
    for p in doc.get("Ports") or []:
        if p.get("PublicPort"):
            ports.append(PortFact(p.get("IP", ""), int(p["PublicPort"]), int(p.get("PrivatePort", 0))))
    return ContainerFact(
        id=doc["Id"],
        name=names[0].lstrip("/"),
        environment=labels.get(LABEL_ENVIRONMENT, ""),
        app=labels.get(LABEL_APP, ""),
        config_hash=labels.get(LABEL_CONFIG_HASH, ""),
        build_hash=labels.get(LABEL_BUILD_HASH, ""),
        image=doc.get("Image", ""),
        image_id=doc.get("ImageID", ""),
        state=doc.get("State", ""),
        health=parse_health(doc.get("Status", "")),
        status=doc.get("Status", ""),
        created=int(doc.get("Created", 0)),
        ports=tuple(sorted(set(ports), key=lambda p: (p.host_port, p.host_ip))),
        config_text=labels.get(LABEL_CONFIG, ""),
        # read from the host: only names a playbook could have given reach the proxy's config
        domains=tuple(d for d in labels.get(LABEL_DOMAINS, "")[:8192].split(",") if d and not check_domain(d))[:100],
        proxy_port=int(port) if (port := labels.get(LABEL_PORT, "")).isdigit() and len(port) <= 5 else None,
        role=labels.get(LABEL_ROLE, ""),
        networks=tuple(sorted(((doc.get("NetworkSettings") or {}).get("Networks") or {}).keys())),
        release=release if _RELEASE_ID.fullmatch(release := labels.get(LABEL_RELEASE, "")) else "",
        # read from the host and printed by status: only what the spec would accept as a reference
        image_ref=ref if not check_reference(ref := labels.get(LABEL_IMAGE, "")[:600]) else "",
    )


def parse_image(doc: dict[str, Any]) -> ImageFact:
    labels = _labels(doc)
    tags = tuple(t for t in (doc.get("RepoTags") or []) if t != "<none>:<none>")
    return ImageFact(
        id=doc["Id"],
        tags=tags,
        app=labels.get(LABEL_APP, ""),
        build_hash=labels.get(LABEL_BUILD_HASH, ""),
        created=int(doc.get("Created", 0)),
        size=int(doc.get("Size", 0)),
    )


def parse_network(doc: dict[str, Any]) -> NetworkFact:
    return NetworkFact(id=doc["Id"], name=doc["Name"], app=_labels(doc).get(LABEL_APP, ""))


def parse_volume(doc: dict[str, Any]) -> VolumeFact:
    labels = _labels(doc)
    return VolumeFact(name=doc["Name"], app=labels.get(LABEL_APP, ""), volume=labels.get(LABEL_VOLUME, ""))


def parse(
    project: str,
    environment: str,
    containers: Iterable[dict[str, Any]],
    images: Iterable[dict[str, Any]],
    networks: Iterable[dict[str, Any]],
    volumes: Iterable[dict[str, Any]],
) -> AppFacts:
    """Keep only objects carrying the project's labels (the filters asked for that; this re-checks)."""
    cs = [parse_container(d) for d in containers if _labels(d).get(LABEL_PROJECT) == project]
    mine = tuple(c for c in cs if c.environment == environment and c.app)
    others = tuple(c for c in cs if c.environment != environment)
    imgs = tuple(
        parse_image(d)
        for d in images
        if _labels(d).get(LABEL_PROJECT) == project and _labels(d).get(LABEL_APP)
    )

    def ours(d: dict[str, Any]) -> bool:
        labels = _labels(d)
        return (
            labels.get(LABEL_PROJECT) == project
            and labels.get(LABEL_ENVIRONMENT) == environment
            and bool(labels.get(LABEL_APP))
        )

    def proxy_owned(d: dict[str, Any]) -> bool:
        labels = _labels(d)
        return (labels.get(LABEL_PROJECT) == project and labels.get(LABEL_ENVIRONMENT) == environment
                and labels.get(LABEL_ROLE) == ROLE_PROXY)

    nets = tuple(parse_network(d) for d in networks if ours(d))
    vols = tuple(parse_volume(d) for d in volumes if ours(d))
    seen = frozenset({c.app for c in mine} | {n.app for n in nets} | {v.app for v in vols})
    proxies = sorted((c for c in cs if c.environment == environment and c.role == ROLE_PROXY),
                     key=lambda c: (c.running, c.created), reverse=True)
    return AppFacts(project, environment, mine, others, imgs, nets, vols, seen,
                    proxy=proxies[0] if proxies else None,
                    proxy_network=any(proxy_owned(d) for d in networks),
                    proxy_volumes=frozenset(str(d.get("Name")) for d in volumes if proxy_owned(d)))


def list_paths(project: str, environment: str) -> list[str]:
    """The four Engine API list reads `gather` makes (the same queries the SDK sends), as unversioned paths."""
    def q(filters: dict[str, list[str]], **params: int) -> str:
        return urlencode({**params, "filters": json.dumps(filters)})

    by_project = {"label": [f"{LABEL_PROJECT}={project}"]}
    by_env = {"label": label_filters(project, environment)}
    return [
        "/containers/json?" + q(by_project, all=1),
        "/images/json?" + q(by_project),
        "/networks?" + q(by_env),
        "/volumes?" + q(by_env),
    ]


def gather_remote(remote: Any, project: str, environment: str) -> AppFacts:
    """`gather` over the Remote's one-channel reader (no Docker SDK) when it has one."""
    if not hasattr(remote, "engine_get"):
        return gather(remote.docker(), project, environment)
    containers, images, networks, volumes = remote.engine_get(list_paths(project, environment))
    vols = (volumes or {}).get("Volumes") or []
    return parse(project, environment, containers or [], images or [], networks or [], vols)


def gather(client: Any, project: str, environment: str) -> AppFacts:
    """Read the host's state through a docker.DockerClient (summaries only, no per-object inspect)."""
    api = client.api
    by_project = {"label": [f"{LABEL_PROJECT}={project}"]}
    by_env = {"label": label_filters(project, environment)}
    # four independent reads, in parallel: each rides its own channel of the one SSH connection
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="dockyard-facts") as pool:
        containers = pool.submit(api.containers, all=True, filters=by_project)
        images = pool.submit(api.images, filters=by_project)
        networks = pool.submit(api.networks, filters=by_env)
        volumes = pool.submit(api.volumes, filters=by_env)
        vols = (volumes.result() or {}).get("Volumes") or []
        return parse(project, environment, containers.result(), images.result(), networks.result(), vols)
