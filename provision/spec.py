"""The playbook model: `playbooks/<environment>.yml` validated into frozen, typed objects.

This is dockyard's public contract. Loading (YAML, `extends`, line numbers, key-path errors) lives in
`provision.playbook`; this module only says what a valid playbook is.

Validators that know a more precise location than the model they run on raise `SpecError`, which carries
key paths relative to that model; `provision.playbook` appends them to pydantic's location.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator

from provision.spec_app import AppSpec, HealthcheckSpec, PublishSpec
from provision.spec_base import (
    DEFAULT_SSH_USER,
    LOCAL_SSH_USER,
    LOGIN_NAME_RE,
    NAME_RE,
    NAME_RULE,
    Frozen,
    Name,
    PathPart,
    SpecError,
)
from provision.spec_host import EngineSpec, HostSpec, SshSpec
from provision.spec_proxy import ProxySpec
from provision.spec_registry import RegistrySpec

# The model's public names, wherever they are defined (spec_base, spec_host, spec_app): import them from here.
__all__ = [
    "LOGIN_NAME_RE", "NAME_RE", "AppSpec", "EngineSpec", "HealthcheckSpec", "HostSpec", "Playbook", "ProxySpec",
    "PublishSpec", "RegistrySpec",
    "SpecError", "SshSpec",
]


class Playbook(Frozen):
    project: Name
    environment: Name
    extends: str | None = None
    provider: Literal["aws", "local", "existing"] = "aws"
    host: HostSpec = Field(default_factory=HostSpec)
    ssh: SshSpec = Field(default_factory=SshSpec)
    engine: EngineSpec = Field(default_factory=EngineSpec)
    vars: dict[str, Any] = Field(default_factory=dict)
    proxy: ProxySpec | None = None
    registry: RegistrySpec | None = None  # credentials for image apps pulling from this server
    apps: dict[str, AppSpec] = Field(default_factory=dict)

    # Where it was loaded from: the playbook file and the directory app contexts are relative to.
    _source: Path | None = PrivateAttr(default=None)

    @property
    def source(self) -> Path | None:
        return self._source

    @property
    def base_dir(self) -> Path:
        return self._source.parent if self._source else Path.cwd()

    @field_validator("apps", mode="before")
    @classmethod
    def _app_names(cls, v: Any) -> Any:
        if isinstance(v, dict):
            bad = [((name,), f"app name {name!r} is not valid ({NAME_RULE})") for name in v
                   if not isinstance(name, str) or not re.fullmatch(NAME_RE, name)]
            if bad:
                raise SpecError(bad)
        return v

    @model_validator(mode="after")
    def _cross_checks(self) -> Playbook:
        problems: list[tuple[tuple[PathPart, ...], str]] = []
        if self.provider == "aws" and not self.host.ssh_from:
            problems.append((("host", "ssh_from"), "required for provider aws: the CIDRs that may reach "
                                                   "SSH, e.g. [203.0.113.7/32] (no silent 0.0.0.0/0)"))
        if self.provider == "aws":
            problems += _aws_exposure(self)
        if self.host.count > 1 and self.provider != "aws":
            problems.append((("host", "count"), f"more than one instance needs provider aws, not {self.provider}"))
        if self.provider == "existing" and not self.host.address and not self.host.addresses:
            problems.append((("host", "address"), "required for provider existing: the host's name or IP "
                                                  "(or host.addresses for several hosts)"))
        problems += _swarm_checks(self)
        problems += _proxy_checks(self)
        seen: list[tuple[PublishSpec, str]] = [(b, "the proxy") for b in (self.proxy.bindings if self.proxy else ())]
        for name, app in self.apps.items():
            for i, other in enumerate(app.reach):
                if other == name:
                    problems.append((("apps", name, "reach", i), "an app cannot list itself in `reach`"))
                elif other not in self.apps:
                    close = _close(other, list(self.apps))
                    problems.append((("apps", name, "reach", i),
                                     f"{other!r} is not an app of this playbook{close}"))
            if app.publish is None:
                continue
            for pub, owner in seen:
                if pub.overlaps(app.publish):
                    overlap = f" ({pub} overlaps {app.publish})" if str(pub) != str(app.publish) else ""
                    problems.append((("apps", name, "publish"),
                                     f"host port {app.publish.host_port} is already published by {owner}{overlap}"))
                    break
            seen.append((app.publish, f"app {name!r}"))
        if problems:
            raise SpecError(problems)
        return self

    # Convenience the later stages use.
    @property
    def ssh_user(self) -> str:
        if self.ssh.user:
            return self.ssh.user
        if self.provider == "aws":
            return DEFAULT_SSH_USER.get(self.host.image, "ubuntu")
        if self.provider == "local":
            return LOCAL_SSH_USER
        return "root"

    @property
    def key_file(self) -> Path:
        path = self.ssh.key_file or Path("~/.ssh/id_ed25519")
        path = path.expanduser()
        return path if path.is_absolute() else self.base_dir / path

    @property
    def known_hosts_file(self) -> Path:
        if self.ssh.known_hosts:
            kh = self.ssh.known_hosts.expanduser()
            return kh if kh.is_absolute() else self.base_dir / kh
        return self.base_dir / ".dockyard" / self.environment / "known_hosts"

    def app_context(self, name: str) -> Path:
        return (self.base_dir / self.apps[name].context).resolve()


def _proxy_checks(pb: Playbook) -> list[tuple[tuple[PathPart, ...], str]]:
    """`domains` need a `proxy:`; a host name belongs to one app."""
    problems: list[tuple[tuple[PathPart, ...], str]] = []
    owners: dict[str, str] = {}
    for name, app in pb.apps.items():
        if app.domains and pb.proxy is None:
            problems.append((("apps", name, "domains"), "`domains` are served by the front proxy: add a `proxy:` "
                                                        "section (e.g. `proxy: {tls: internal}`)"))
        for i, domain in enumerate(app.domains):
            if domain in owners:
                problems.append((("apps", name, "domains", i), f"{domain!r} is already a domain of app "
                                                               f"{owners[domain]!r}"))
            owners.setdefault(domain, name)
    return problems


def _swarm_checks(pb: Playbook) -> list[tuple[tuple[PathPart, ...], str]]:
    """`host.addresses` (several existing hosts) is exclusive with `host.address` and needs a swarm;
    `engine.managers: 3` needs 3 hosts."""
    problems: list[tuple[tuple[PathPart, ...], str]] = []
    several = len(pb.host.addresses)
    if pb.host.addresses and pb.provider != "existing":
        problems.append((("host", "addresses"), f"only for provider existing (provider is {pb.provider})"))
    if pb.host.addresses and pb.host.address:
        problems.append((("host", "addresses"), "give either host.address (one host) or host.addresses, not both"))
    if several > 1 and pb.engine.mode != "swarm":
        problems.append((("host", "addresses"), "several hosts form one environment only as a swarm: set "
                                                "engine.mode: swarm"))
    if pb.engine.managers == 3 and pb.provider == "existing" and several < 3:
        problems.append((("engine", "managers"), f"3 managers need at least 3 hosts (host.addresses has "
                                                 f"{several})"))
    if pb.host.count > 1 and pb.engine.mode != "swarm":
        problems.append((("host", "count"), "several instances form one environment only as a swarm: set "
                                            "engine.mode: swarm"))
    if pb.engine.managers == 3 and pb.provider == "aws" and pb.host.count < 3:
        problems.append((("engine", "managers"), f"3 managers need at least 3 hosts (host.count is {pb.host.count})"))
    if pb.engine.mode != "swarm":
        for name, app in pb.apps.items():
            problems += [(("apps", name, key), f"`{key}` is a swarm setting: it needs engine.mode: swarm")
                         for key in ("replicas", "placement") if key in app.model_fields_set]
    return problems


def _aws_exposure(pb: Playbook) -> list[tuple[tuple[PathPart, ...], str]]:
    """What would open SSH to the world: the SSH port in open_ports, or ssh_from anywhere without opting in."""
    problems: list[tuple[tuple[PathPart, ...], str]] = []
    for i, port in enumerate(pb.host.open_ports):
        if port == pb.ssh.port:
            problems.append((("host", "open_ports", i), f"port {port} is the SSH port (ssh.port): open_ports are "
                                                        "open to the world; SSH is opened only to host.ssh_from"))
    for i, net in enumerate(pb.host.ssh_from or ()):
        if net.prefixlen == 0 and not pb.host.allow_ssh_from_anywhere:
            problems.append((("host", "ssh_from", i), f"{net} opens SSH to the whole internet: list the CIDRs that "
                                                      "need it, or set host.allow_ssh_from_anywhere: true"))
    return problems


def _close(word: str, choices: list[str]) -> str:
    match = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""
