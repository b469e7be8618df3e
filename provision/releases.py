"""Releases: what a deploy of an app leaves behind for a rollback, and how it is named.

A release is one container config of an app that was deployed: its container (running = the current release;
stopped = an earlier one, kept with its image for `rollback`) carries `dockyard.release`, the release id:
- the git commit of the playbook's repository (short SHA, `-dirty` when the work tree has changes), or
- without git, the app's config hash (12 characters: the build and every setting that decides the container).
The id is a label, not part of the config hash: a new commit that changes nothing of an app deploys nothing.
The last `keep_releases` (default 5) per app are kept; older ones are removed with their images.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from provision.commands.docker import ROLE_CANDIDATE, ROLE_RELEASE
from provision.errors import InputError
from provision.facts.apps import AppFacts, ContainerFact

GIT_TIMEOUT = 5.0
_RELEASE = re.compile(r"[0-9a-zA-Z][0-9a-zA-Z._-]{0,63}")


def git_release(directory: Path) -> str | None:
    """`<short sha>` or `<short sha>-dirty` of the repository holding `directory`, None outside git."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(directory), *args], capture_output=True, text=True,
                                  timeout=GIT_TIMEOUT, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    sha = git("rev-parse", "--short=10", "HEAD")
    if not sha or not _RELEASE.fullmatch(sha):
        return None
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return f"{sha}-dirty" if dirty else sha


def release_id(git: str | None, content_hash: str) -> str:
    return git or content_hash[:12]


@dataclass(frozen=True)
class Release:
    app: str
    release: str  # the id, or "-" for a container deployed before releases had ids
    container: str
    container_id: str
    image: str
    created: int
    state: str
    current: bool

    def to_json(self) -> dict[str, object]:
        return {"app": self.app, "release": self.release, "image": self.image, "created": self.created,
                "current": self.current, "container": self.container, "state": self.state}


def is_release(c: ContainerFact) -> bool:
    return c.role not in (ROLE_CANDIDATE, ROLE_RELEASE)


def releases_of(facts: AppFacts, app: str) -> list[Release]:
    """The app's releases on the host, newest first; `current` is the one running (routed, when it is)."""
    mine = [c for c in facts.containers_of(app) if is_release(c)]
    live = facts.live_container(app)
    running = [c for c in mine if c.running]
    current = live or (max(running, key=lambda c: (c.created, c.id)) if running else None)
    out = [Release(app, c.release or "-", c.name, c.id, c.image, c.created, c.state,
                   current is not None and c.id == current.id) for c in mine]
    return sorted(out, key=lambda r: (r.created, r.container_id), reverse=True)


def rollback_target(releases: Sequence[Release], to: str | None, *, source: Path | None, app: str) -> Release:
    """The named release, or the newest one that is not current; exit 2 listing what exists otherwise."""
    listed = ", ".join(f"{r.release}{' (current)' if r.current else ''}" for r in releases) or "none"
    if to:
        found = [r for r in releases if r.release == to or r.container == to]
        if not found:
            raise InputError.single(f"app {app} has no release {to!r} on the host (releases: {listed})", source,
                                    f"apps.{app}")
        return found[0]
    current = next((r for r in releases if r.current), None)
    older = [r for r in releases if not r.current and (current is None or r.created <= current.created)]
    if not older:
        raise InputError.single(f"app {app} has no earlier release to roll back to (releases: {listed})", source,
                                f"apps.{app}")
    return older[0]
