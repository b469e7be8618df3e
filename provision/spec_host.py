"""The playbook's host-side sections: `host` (the EC2 instance), `ssh` (how dockyard connects) and `engine`
(the Docker engine's settings). See provision.spec for the whole model.
"""

from __future__ import annotations

import base64
import ipaddress
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from provision.spec_base import (
    IMAGE_ALIASES,
    INSTANCE_TYPE_RE,
    JUMP_RE,
    LOGIN_NAME_RE,
    REGION_RE,
    Frozen,
    Int,
    Port,
    PositiveDuration,
    ScalarStr,
    SpecError,
)
from provision.units import parse_cidr


def _host_name(v: str | None) -> str | None:
    """A host name or IP address to dial: no spaces, control characters or leading '-'."""
    if v is not None and (not v.strip() or v.startswith("-") or any(c.isspace() or not c.isprintable()
                                                                     for c in v)):
        raise ValueError(f"expected a host name or IP address, got {v!r}")
    return v


class HostSpec(Frozen):
    """Where the host comes from. Which keys are required depends on `provider` (checked in Playbook)."""

    # aws
    region: str | None = None
    instance_type: str = "t3.small"
    image: str = "ubuntu-24.04"
    volume_gb: Int = Field(20, ge=8, le=16384)
    ssh_from: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] | None = None
    open_ports: tuple[Port, ...] = (80, 443)
    subnet_id: str | None = None
    instance_profile: str | None = None
    tags: dict[str, ScalarStr] = Field(default_factory=dict)
    imds_hop_limit: Int = Field(1, ge=1, le=64)  # 2 lets containers reach the instance role's credentials
    allow_ssh_from_anywhere: bool = False  # the only way to put 0.0.0.0/0 or ::/0 in ssh_from
    count: Int = Field(1, ge=1, le=10)  # instances <project>-<env>-1..N, same settings (1: <project>-<env>)
    # existing
    address: str | None = None
    addresses: tuple[str, ...] = ()  # several existing hosts, "address" or "address:ssh-port" ([v6]:port)

    @field_validator("ssh_from", mode="before")
    @classmethod
    def _cidrs(cls, v: Any) -> Any:
        if v is None:
            return v
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, list | tuple):
            raise ValueError("expected a list of CIDRs, e.g. [203.0.113.7/32]")
        out, problems = [], []
        for i, item in enumerate(v):
            try:
                out.append(parse_cidr(item))
            except ValueError as exc:
                problems.append(((i,), str(exc)))
        if problems:
            raise SpecError(problems)
        return tuple(out)

    @field_validator("image")
    @classmethod
    def _image(cls, v: str) -> str:
        if v in IMAGE_ALIASES or re.fullmatch(r"ami-[0-9a-f]{8,17}", v):
            return v
        raise ValueError(f"expected one of {', '.join(IMAGE_ALIASES)} or an AMI id (ami-…), got {v!r}")

    @field_validator("region")
    @classmethod
    def _region(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(REGION_RE, v):
            raise ValueError(f"{v!r} is not an AWS region name like eu-west-1")
        return v

    @field_validator("instance_type")
    @classmethod
    def _instance_type(cls, v: str) -> str:
        if not re.fullmatch(INSTANCE_TYPE_RE, v):
            raise ValueError(f"{v!r} is not an EC2 instance type like t3.small")
        return v

    @field_validator("address")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        return _host_name(v)

    @field_validator("addresses", mode="before")
    @classmethod
    def _addresses(cls, v: Any) -> Any:
        if v is None:
            return ()
        if not isinstance(v, list | tuple):
            raise ValueError('expected a list of addresses, e.g. ["10.0.0.5", "10.0.0.7:2222"]')
        problems: list[tuple[tuple[int | str, ...], str]] = []
        seen: dict[tuple[str, int | None], int] = {}
        for i, item in enumerate(v):
            try:
                key = split_address(item)
            except ValueError as exc:
                problems.append(((i,), str(exc)))
                continue
            if key in seen:
                problems.append(((i,), f"the same host as addresses[{seen[key]}]"))
            seen.setdefault(key, i)
        if problems:
            raise SpecError(problems)
        return tuple(v)


def split_address(item: Any) -> tuple[str, int | None]:
    """ "10.0.0.5" → ("10.0.0.5", None); "10.0.0.7:2222" → ("10.0.0.7", 2222); "[fd00::5]:22" → ("fd00::5", 22).
    A bare IPv6 address (no brackets) has no port. ValueError says what is wrong."""
    if not isinstance(item, str):
        raise ValueError('expected a string: "address" or "address:ssh-port"')
    host, port = item, None
    bracketed = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?", item)
    if bracketed:
        host, port = bracketed[1], bracketed[2]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{item!r}: brackets hold an IPv6 address, e.g. [fd00::5]:2222") from None
    elif item.count(":") == 1:
        host, port = item.split(":")
        if not port.isdigit():
            raise ValueError(f"{item!r}: the SSH port after ':' must be a number, e.g. 10.0.0.7:2222")
    elif item.count(":") > 1:
        try:
            ipaddress.IPv6Address(item)
        except ValueError:
            raise ValueError(f"{item!r} is not an address; write an IPv6 address with a port as [fd00::5]:2222"
                             ) from None
    _host_name(host)
    if not host:
        raise ValueError(f"{item!r}: the address before ':' is empty")
    if port is not None and not 1 <= int(port) <= 65535:
        raise ValueError(f"{item!r}: SSH port {port} is not in 1..65535")
    return host, int(port) if port is not None else None


class SshSpec(Frozen):
    user: str | None = None  # default: the image's login user (aws), root (existing/local)
    key_file: Path | None = None  # default: ~/.ssh/id_ed25519 (aws/existing)
    port: Port = 22
    host: str | None = None  # overrides the address dockyard dials (e.g. a test sshd, a tunnel)
    jump: str | None = None  # bastion, "user@host:port"
    known_hosts: Path | None = None  # default: .dockyard/<environment>/known_hosts beside the playbook; commit
    # a file named here (relative to the playbook) to pin host keys for CI
    host_key: tuple[str, ...] = ()  # the target's pinned key(s): "ssh-ed25519 AAAA…" or "SHA256:…"
    strict_host_keys: bool = False  # refuse trust on first use (also --strict-host-keys)
    connect_timeout: PositiveDuration = 10.0
    # session channels dockyard opens at once on its one connection (sshd's MaxSessions is 10 by default)
    max_sessions: Int = Field(8, ge=1, le=1000)

    @field_validator("host_key", mode="before")
    @classmethod
    def _host_keys(cls, v: Any) -> Any:
        if isinstance(v, str) and _host_key_problem(v):
            raise ValueError(_host_key_problem(v))  # one value: the key itself is the location, not [0]
        items = [v] if isinstance(v, str) else [] if v is None else v
        if not isinstance(items, list | tuple):
            raise ValueError('expected a host key ("ssh-ed25519 AAAA…"), a fingerprint ("SHA256:…") or a list')
        problems = [((i,), _host_key_problem(item)) for i, item in enumerate(items) if _host_key_problem(item)]
        if problems:
            raise SpecError(problems)
        return tuple(" ".join(item.split()[:2]) for item in items)

    @field_validator("user")
    @classmethod
    def _user(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(LOGIN_NAME_RE, v):
            raise ValueError(f"{v!r} is not a login name")
        return v

    @field_validator("jump")
    @classmethod
    def _jump(cls, v: str | None) -> str | None:
        match = re.fullmatch(JUMP_RE, v) if v is not None else None
        if v is not None and (match is None or not 1 <= int(match["port"] or 22) <= 65535):
            raise ValueError(f"expected a bastion as [user@]host[:port], e.g. admin@bastion.example.com:2222, "
                             f"got {v!r}")
        return v

    @field_validator("host")
    @classmethod
    def _host(cls, v: str | None) -> str | None:
        return _host_name(v)


def _host_key_problem(item: Any) -> str:
    """Empty when `item` is a usable pin: "SHA256:<43 base64 chars>" or "TYPE BASE64" whose blob says TYPE."""
    if not isinstance(item, str):
        return "expected a string"
    fields = item.split()
    if len(fields) == 1 and re.fullmatch(r"SHA256:[A-Za-z0-9+/]{43}=?", fields[0]):
        return ""
    if len(fields) >= 2 and re.fullmatch(r"ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)", fields[0]):
        try:
            blob = base64.b64decode(fields[1], validate=True)
        except ValueError:
            blob = b""
        size = int.from_bytes(blob[:4], "big") if len(blob) > 4 else 0
        if blob[4:4 + size].decode("ascii", "replace") == fields[0]:
            return ""
        return f"the key data is not a {fields[0]} key"
    return ('expected a host key like "ssh-ed25519 AAAA…" (from /etc/ssh/ssh_host_ed25519_key.pub) or a '
            'fingerprint like "SHA256:…" (ssh-keygen -lf)')


class EngineSpec(Frozen):
    source: Literal["distro", "docker-ce"] = "distro"
    mode: Literal["standalone", "swarm"] = "standalone"
    managers: Literal[1, 3] = 1  # swarm: 3 needs >= 3 hosts (a Raft majority survives one loss)
    daemon: dict[str, Any] = Field(default_factory=dict)  # merged over dockyard's daemon.json defaults
    users: tuple[str, ...] = ()

    @field_validator("users")
    @classmethod
    def _users(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [((i,), f"{name!r} is not a user name (lowercase letters, digits, '_', '.', '-'; at most 32)")
               for i, name in enumerate(v) if not re.fullmatch(LOGIN_NAME_RE, name)]
        if bad:
            raise SpecError(bad)
        return v
