"""What a provider says about the host it made or found (see provision.providers for the contract)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class HostInfo:
    provider: str  # aws | local | existing
    host_id: str  # instance id, container id, or the address for `existing`
    state: str  # running | stopped | pending | …
    ssh_address: str
    ssh_port: int
    ssh_user: str
    public_address: str | None = None
    private_address: str | None = None
    # For `local`: the 127.0.0.1 ports the apps' published ports are mapped to (container port → host port).
    published: dict[int, int] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)  # provider-specific details for --json
