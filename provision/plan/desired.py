"""What deploy wants for one app, computed locally (render, context hash, container config) before any
fact is read; the planners in provision.plan compare it with the host's facts."""

from __future__ import annotations

from dataclasses import dataclass

from provision.build import BuildContext
from provision.commands.docker import ContainerConfig
from provision.plan.images import PulledImage


@dataclass(frozen=True)
class DesiredApp:
    name: str
    image: str  # tag <project>/<app>:<hash12> (an image app: its reference)
    build: BuildContext | None  # None: an image app (`pulled`), never built
    container: ContainerConfig
    volumes: tuple[tuple[str, str], ...]  # (volume name, short name)
    build_where: str = "host"  # "local": build on this machine and ship the image (AppSpec.build)
    drain: float = 30.0  # routed apps: how long the old container's in-flight requests may run after a switch
    keep_releases: int = 5  # the current release plus this many minus one stopped earlier ones are kept
    pulled: PulledImage | None = None  # an image app: pulled or shipped (provision.plan.images), not built

    @property
    def build_hash(self) -> str:
        """The build's content hash (an image app: the image id on the host, once known)."""
        return self.build.content_hash if self.build is not None else self.container.build_hash
