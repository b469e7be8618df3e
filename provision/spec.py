"""The playbook model: `playbooks/<environment>.yml` validated into frozen, typed objects.

This is dockyard's public contract. Loading (YAML, `extends`, line numbers, key-path errors) lives in
`provision.playbook`; this module only says what a valid playbook is.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)

from provision.units import parse_duration, parse_size

NAME_RE = r"^[a-z][a-z0-9-]{0,30}$"
ENV_NAME_RE = r"^[A-Za-z_][A-Za-z0-9_]*$"
VOLUME_NAME_RE = r"^[a-z0-9][a-z0-9_.-]{0,62}$"

IMAGE_ALIASES = ("ubuntu-24.04", "ubuntu-22.04", "debian-12", "al2023")
# The login user each alias's image ships with (what EC2 users expect; `ssh.user` overrides it).
DEFAULT_SSH_USER = {"ubuntu-24.04": "ubuntu", "ubuntu-22.04": "ubuntu", "debian-12": "admin",
                    "al2023": "ec2-user"}


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


def _duration(v: Any) -> float:
    return parse_duration(v)


def _size(v: Any) -> int:
    return parse_size(v)


def _scalar_str(v: Any) -> Any:
    """YAML gives ints/floats/bools for env values; docker wants strings (as compose does)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return str(v)
    return v


Duration = Annotated[float, BeforeValidator(_duration)]  # seconds
Size = Annotated[int, BeforeValidator(_size)]  # bytes
Port = Annotated[int, Field(ge=1, le=65535)]
ScalarStr = Annotated[str, BeforeValidator(_scalar_str)]


class HostSpec(Frozen):
    """Where the host comes from. Which keys are required depends on `provider` (checked in Playbook)."""

    # aws
    region: str | None = None
    instance_type: str = "t3.small"
    image: str = "ubuntu-24.04"
    volume_gb: int = Field(20, ge=8, le=16384)
    ssh_from: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] | None = None
    open_ports: tuple[Port, ...] = (80, 443)
    subnet_id: str | None = None
    instance_profile: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    # existing
    address: str | None = None

    @field_validator("ssh_from", mode="before")
    @classmethod
    def _cidrs(cls, v: Any) -> Any:
        if v is None:
            return v
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, list | tuple):
            raise ValueError("expected a list of CIDRs, e.g. [203.0.113.7/32]")
        out = []
        for item in v:
            try:
                out.append(ipaddress.ip_network(str(item), strict=True))
            except ValueError as exc:
                raise ValueError(f"{item!r} is not a CIDR like 203.0.113.0/24 ({exc})") from None
        return tuple(out)

    @field_validator("image")
    @classmethod
    def _image(cls, v: str) -> str:
        if v in IMAGE_ALIASES or re.fullmatch(r"ami-[0-9a-f]{8,17}", v):
            return v
        raise ValueError(f"expected one of {', '.join(IMAGE_ALIASES)} or an AMI id (ami-…), got {v!r}")


class SshSpec(Frozen):
    user: str | None = None  # default: the image's login user (aws), root (existing/local)
    key_file: Path | None = None  # default: ~/.ssh/id_ed25519 (aws/existing)
    port: Port = 22
    host: str | None = None  # overrides the address dockyard dials (e.g. a test sshd, a tunnel)
    jump: str | None = None  # bastion, "user@host:port"
    known_hosts: Path | None = None  # default: .dockyard/<environment>/known_hosts beside the playbook
    connect_timeout: Duration = 10.0


class EngineSpec(Frozen):
    source: Literal["distro", "docker-ce"] = "distro"
    daemon: dict[str, Any] = Field(default_factory=dict)  # merged over dockyard's daemon.json defaults
    users: tuple[str, ...] = ()


class HealthcheckSpec(Frozen):
    http: str | None = None  # path, e.g. /healthz, probed on the app's `port` inside the container
    cmd: tuple[str, ...] | None = None
    interval: Duration = 2.0
    timeout: Duration = 3.0
    retries: int = Field(3, ge=1, le=100)
    start_period: Duration = 0.0
    wait: Duration = 60.0  # how long deploy waits for a new container to become healthy

    @model_validator(mode="after")
    def _one_probe(self) -> HealthcheckSpec:
        if (self.http is None) == (self.cmd is None):
            raise ValueError("give exactly one of `http` (a path) or `cmd` (an argv list)")
        if self.http is not None and not self.http.startswith("/"):
            raise ValueError(f"`http` must be a path starting with '/', got {self.http!r}")
        if self.cmd is not None and not self.cmd:
            raise ValueError("`cmd` must not be empty")
        return self


class PublishSpec(Frozen):
    """`publish: 8081` or `publish: "127.0.0.1:8081"`; without an address it binds all interfaces."""

    host_ip: str = ""  # "" = all interfaces, as in compose
    host_port: Port

    def __str__(self) -> str:
        return f"{self.host_ip}:{self.host_port}" if self.host_ip else str(self.host_port)


class AppSpec(Frozen):
    template: str | None = None
    dockerfile: str | None = None  # a path inside `context` (compose convention)
    context: str = "."  # relative to the playbook's directory
    vars: dict[str, Any] = Field(default_factory=dict)
    build_args: dict[str, ScalarStr] = Field(default_factory=dict)
    build: Literal["host", "local"] = "host"  # local: build on this machine and ship the image
    command: tuple[str, ...] | None = None
    port: Port | None = None
    publish: PublishSpec | None = None
    env: dict[str, ScalarStr] = Field(default_factory=dict)
    secrets: tuple[str, ...] = ()
    volumes: dict[str, str] = Field(default_factory=dict)  # named volume → absolute container path
    healthcheck: HealthcheckSpec | None = None
    memory: Size | None = None
    cpus: float | None = Field(None, gt=0, le=256)
    restart: Literal["no", "always", "unless-stopped", "on-failure"] = "unless-stopped"
    reach: tuple[str, ...] = ()  # other apps of this playbook this app may connect to
    read_only: bool | None = None  # default: whatever the template says it supports

    @field_validator("command", mode="before")
    @classmethod
    def _command(cls, v: Any) -> Any:
        if isinstance(v, str):
            return tuple(shlex.split(v))
        return v

    @field_validator("publish", mode="before")
    @classmethod
    def _publish(cls, v: Any) -> Any:
        if v is None or isinstance(v, dict | PublishSpec):
            return v
        if isinstance(v, bool):
            raise ValueError("expected a port number or \"ADDRESS:PORT\"")
        if isinstance(v, int):
            return {"host_port": v}
        if isinstance(v, str):
            addr, sep, port = v.rpartition(":")
            if not port.isdigit():
                raise ValueError(f"expected a port number or \"ADDRESS:PORT\", got {v!r}")
            if sep:
                addr = addr.strip("[]")
                try:
                    ipaddress.ip_address(addr)
                except ValueError:
                    raise ValueError(f"{addr!r} is not an IP address") from None
            return {"host_ip": addr, "host_port": int(port)}
        raise ValueError("expected a port number or \"ADDRESS:PORT\"")

    @field_validator("secrets")
    @classmethod
    def _secret_names(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for name in v:
            if not re.fullmatch(ENV_NAME_RE, name):
                raise ValueError(f"{name!r} is not an environment variable name")
        if len(set(v)) != len(v):
            raise ValueError("a secret is listed twice")
        return v

    @field_validator("env")
    @classmethod
    def _env_names(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v:
            if not re.fullmatch(ENV_NAME_RE, name):
                raise ValueError(f"{name!r} is not an environment variable name")
        return v

    @field_validator("volumes")
    @classmethod
    def _volumes(cls, v: dict[str, str]) -> dict[str, str]:
        for name, target in v.items():
            if not re.fullmatch(VOLUME_NAME_RE, name):
                raise ValueError(f"volume name {name!r} must match {VOLUME_NAME_RE}")
            if not PurePosixPath(target).is_absolute():
                raise ValueError(f"volume {name!r}: container path must be absolute, got {target!r}")
        return v

    @field_validator("dockerfile")
    @classmethod
    def _dockerfile_inside(cls, v: str | None) -> str | None:
        if v is not None and (PurePosixPath(v).is_absolute() or ".." in PurePosixPath(v).parts):
            raise ValueError(f"`dockerfile` is a path inside `context` (as in compose), got {v!r}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> AppSpec:
        if (self.template is None) == (self.dockerfile is None):
            raise ValueError("give exactly one of `template` (a template name) or `dockerfile` (a path)")
        if self.publish is not None and self.port is None:
            raise ValueError("`publish` needs `port` (the container port to publish)")
        if self.healthcheck is not None and self.healthcheck.http is not None and self.port is None:
            raise ValueError("an `http` health check needs `port`")
        overlap = set(self.env) & set(self.secrets)
        if overlap:
            raise ValueError(f"{', '.join(sorted(overlap))} is both in `env` and `secrets`")
        return self


class Playbook(Frozen):
    project: Annotated[str, Field(pattern=NAME_RE)]
    environment: Annotated[str, Field(pattern=NAME_RE)]
    extends: str | None = None
    provider: Literal["aws", "local", "existing"] = "aws"
    host: HostSpec = Field(default_factory=HostSpec)
    ssh: SshSpec = Field(default_factory=SshSpec)
    engine: EngineSpec = Field(default_factory=EngineSpec)
    vars: dict[str, Any] = Field(default_factory=dict)
    apps: dict[str, AppSpec] = Field(default_factory=dict)

    # Where it was loaded from: the playbook file and the directory app contexts are relative to.
    _source: Path | None = PrivateAttr(default=None)

    @property
    def source(self) -> Path | None:
        return self._source

    @property
    def base_dir(self) -> Path:
        return self._source.parent if self._source else Path.cwd()

    @field_validator("apps")
    @classmethod
    def _app_names(cls, v: dict[str, AppSpec]) -> dict[str, AppSpec]:
        for name in v:
            if not re.fullmatch(NAME_RE, name):
                raise ValueError(f"app name {name!r} must match {NAME_RE}")
        return v

    @model_validator(mode="after")
    def _cross_checks(self) -> Playbook:
        if self.provider == "aws" and not self.host.ssh_from:
            raise ValueError("host.ssh_from is required for provider aws (a CIDR list: no silent 0.0.0.0/0)")
        if self.provider == "existing" and not self.host.address:
            raise ValueError("host.address is required for provider existing")
        seen: dict[tuple[str, int], str] = {}
        for name, app in self.apps.items():
            for other in app.reach:
                if other not in self.apps or other == name:
                    raise ValueError(f"apps.{name}.reach: {other!r} is not another app of this playbook")
            if app.publish is None:
                continue
            p = app.publish
            for (ip, port), owner in seen.items():
                if port == p.host_port and (ip == p.host_ip or "" in (ip, p.host_ip)):
                    raise ValueError(f"apps.{name}.publish: host port {p.host_port} is already published "
                                     f"by app {owner!r}")
            seen[(p.host_ip, p.host_port)] = name
        return self

    # Convenience the later stages use.
    @property
    def ssh_user(self) -> str:
        if self.ssh.user:
            return self.ssh.user
        if self.provider == "aws":
            return DEFAULT_SSH_USER.get(self.host.image, "ubuntu")
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
