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


def host_entry(info: HostInfo) -> dict[str, Any]:
    """One host in the `hosts` list of provision/status --json (aws: one per instance of host.count)."""
    return {"index": info.data.get("index"), "name": info.data.get("name"), "id": info.host_id,
            "state": info.state, "public_address": info.public_address, "private_address": info.private_address,
            "ssh": {"address": info.ssh_address, "port": info.ssh_port, "user": info.ssh_user}}


def host_entries(info: HostInfo) -> list[dict[str, Any]]:
    """Every host a provider reported: its `hosts` list, or this one host."""
    return list(info.data.get("hosts") or [host_entry(info)])
