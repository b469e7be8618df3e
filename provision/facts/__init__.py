"""Facts: what is there now. Each module pairs one batched read (a shell script run in ONE SSH round trip,
or one API call per kind) with a pure parser into frozen dataclasses, so plans are unit-tested on recorded
output.

- `provision.facts.engine`: OS, architecture, package manager, Docker engine, daemon.json, service, groups.
- `provision.facts.apps`: containers, images, networks, volumes carrying dockyard's labels.
- `provision.facts.aws`: the EC2 instance, security group and key pair.
"""

from __future__ import annotations


def script_sections(text: str) -> dict[str, list[str]]:
    """A facts script's output split at its `@@name` marker lines: name → its non-blank lines (right-stripped;
    indentation kept). The one reader behind the engine's and the swarm's batched facts."""
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("@@"):
            current = out.setdefault(line[2:].strip(), [])
        elif current is not None and line.strip():
            current.append(line.rstrip())
    return out
