"""Where a host comes from. Each provider module exposes the same three functions, so the CLI's
provision/teardown/recreate/up and every SSH-using command dispatch on `playbook.provider` in one place.

    ensure_host(playbook, *, check: bool, resize: bool, reporter) -> HostInfo   # create/start; idempotent
    find_host(playbook) -> HostInfo | None                                      # read-only lookup
    destroy_host(playbook, *, check: bool, reporter) -> list[Change]            # teardown; idempotent

`ensure_host`/`destroy_host` also take `make_runner` (default `Runner`): provision.phases passes a factory
that keeps the Runners, so the phase's recap is theirs.

`HostInfo.ssh_address`/`ssh_port` are what dockyard dials (playbook `ssh.host`/`ssh.port` already applied).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from provision.providers.hostinfo import HostInfo

__all__ = ["HostInfo", "existing_host", "find_host", "provider_module"]


def existing_host(playbook: Any) -> HostInfo:
    """`provider: existing`: the host is just an address (ssh.host overrides what is dialled)."""
    address = playbook.host.address
    return HostInfo(provider="existing", host_id=address, state="running",
                    ssh_address=playbook.ssh.host or address, ssh_port=playbook.ssh.port,
                    ssh_user=playbook.ssh_user, public_address=address)


def provider_module(playbook: Any) -> ModuleType | None:
    """The module that makes and finds the playbook's host; None for `existing` (dockyard makes nothing)."""
    if playbook.provider == "aws":
        # deferred: boto3, fabric, paramiko, requests, rich load only when this path runs
        from provision.providers import aws

        return aws
    if playbook.provider == "local":
        # deferred: paramiko, rich load only when this path runs
        from provision.providers import local

        return local
    return None


def find_host(playbook: Any) -> HostInfo | None:
    """The playbook's host as it is now (a read-only lookup), or None when it does not exist."""
    module = provider_module(playbook)
    return existing_host(playbook) if module is None else module.find_host(playbook)
