"""The playbook model: `playbooks/<environment>.yml` validated into frozen, typed objects.

This is dockyard's public contract. Loading (YAML, `extends`, line numbers, key-path errors) lives in
`provision.playbook`; this module only says what a valid playbook is.

Validators that know a more precise location than the model they run on raise `SpecError`, which carries
key paths relative to that model; `provision.playbook` appends them to pydantic's location.
"""

from __future__ import annotations

import base64
import difflib
import ipaddress
import re
import shlex
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)

from provision.units import parse_cidr, parse_duration, parse_port, parse_size

NAME_RE = r"^[a-z][a-z0-9-]{0,30}$"
ENV_NAME_RE = r"^[A-Za-z_][A-Za-z0-9_]*$"
VOLUME_NAME_RE = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
TEMPLATE_NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
REGION_RE = r"^[a-z]{2}(-[a-z]+)+-\d+$"
INSTANCE_TYPE_RE = r"^[a-z][a-z0-9-]*\.[a-z0-9-]+$"
NAME_RULE = "1-31 characters: a lowercase letter, then lowercase letters, digits or '-'"
LOGIN_NAME_RE = r"[a-z_][a-z0-9_.-]{0,31}\$?"  # what useradd accepts by default
HOST_NAME_RE = r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?"  # a DNS name or IPv4 address
JUMP_RE = rf"(?:(?P<user>{LOGIN_NAME_RE})@)?(?P<host>{HOST_NAME_RE})(?::(?P<port>[0-9]{{1,5}}))?"
# A container path goes into `--mount type=volume,source=…,target=PATH`: `,` `=` quotes or spaces would add
# mount options (e.g. `source=/`), so only plain path characters pass.
CONTAINER_PATH_RE = r"(?:/[A-Za-z0-9_.@+~-]+)+"
MIN_MEMORY = 6 * 1024 * 1024  # docker refuses a memory limit below 6m

IMAGE_ALIASES = ("ubuntu-24.04", "ubuntu-22.04", "debian-12", "al2023")
# The login user each alias's image ships with (what EC2 users expect; `ssh.user` overrides it).
DEFAULT_SSH_USER = {"ubuntu-24.04": "ubuntu", "ubuntu-22.04": "ubuntu", "debian-12": "admin",
                    "al2023": "ec2-user"}
WILDCARD_IPS = ("", "0.0.0.0", "::")  # publish addresses meaning "all interfaces"

PathPart = str | int


class SpecError(ValueError):
    """One or more problems found by a validator, each at a key path relative to the validated value."""

    def __init__(self, problems: list[tuple[tuple[PathPart, ...], str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(msg for _, msg in problems))

    @classmethod
    def at(cls, path: tuple[PathPart, ...], message: str) -> SpecError:
        return cls([(path, message)])


# The sandbox host's non-root sudo user (provision/sandbox/Dockerfile), as a cloud image has its login user.
LOCAL_SSH_USER = "dockyard"


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


def _no_bool(v: Any) -> Any:
    if isinstance(v, bool):
        raise ValueError(f"expected a number, got {str(v).lower()}")
    return v


def _name(v: str) -> str:
    if not re.fullmatch(NAME_RE, v):
        raise ValueError(f"{v!r} is not a valid name ({NAME_RULE})")
    return v


def _host_name(v: str | None) -> str | None:
    """A host name or IP address to dial: no spaces, control characters or leading '-'."""
    if v is not None and (not v.strip() or v.startswith("-") or any(c.isspace() or not c.isprintable()
                                                                     for c in v)):
        raise ValueError(f"expected a host name or IP address, got {v!r}")
    return v


def _positive(v: float) -> float:
    if v <= 0:
        raise ValueError("must be longer than 0s")
    return v


Duration = Annotated[float, BeforeValidator(_duration)]  # seconds
PositiveDuration = Annotated[float, BeforeValidator(_duration), AfterValidator(_positive)]
Size = Annotated[int, BeforeValidator(_size)]  # bytes
Port = Annotated[int, BeforeValidator(parse_port)]
Int = Annotated[int, BeforeValidator(_no_bool)]
Float = Annotated[float, BeforeValidator(_no_bool)]
ScalarStr = Annotated[str, BeforeValidator(_scalar_str)]
Name = Annotated[str, AfterValidator(_name)]


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


class HealthcheckSpec(Frozen):
    http: str | None = None  # path, e.g. /healthz, probed on the app's `port` inside the container
    cmd: tuple[ScalarStr, ...] | None = None
    interval: PositiveDuration = 2.0
    timeout: PositiveDuration = 3.0
    retries: Int = Field(3, ge=1, le=100)
    start_period: Duration = 0.0
    wait: PositiveDuration = 60.0  # how long deploy waits for a new container to become healthy

    @field_validator("http")
    @classmethod
    def _http(cls, v: str | None) -> str | None:
        if v is not None and (not v.startswith("/") or any(c.isspace() for c in v)):
            raise ValueError(f"`http` must be a URL path starting with '/', e.g. /healthz, got {v!r}")
        return v

    @field_validator("cmd")
    @classmethod
    def _cmd(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if v is not None and not v:
            raise ValueError("`cmd` must not be empty")
        return v

    @model_validator(mode="after")
    def _one_probe(self) -> HealthcheckSpec:
        if self.http is not None and self.cmd is not None:
            raise SpecError.at(("cmd",), "give exactly one of `http` (a path) or `cmd` (an argv list), "
                                         "not both")
        if self.http is None and self.cmd is None:
            raise ValueError("give exactly one of `http` (a path) or `cmd` (an argv list)")
        return self


class PublishSpec(Frozen):
    """`publish: 8081` or `publish: "127.0.0.1:8081"`; without an address it binds all interfaces."""

    host_ip: str = ""  # "" = all interfaces, as in compose
    host_port: Port

    @field_validator("host_ip")
    @classmethod
    def _ip(cls, v: str) -> str:
        if v:
            try:
                ipaddress.ip_address(v)
            except ValueError:
                raise ValueError(f"{v!r} is not an IP address (publish on e.g. 127.0.0.1)") from None
        return v

    @property
    def all_interfaces(self) -> bool:
        return self.host_ip in WILDCARD_IPS

    def overlaps(self, other: PublishSpec) -> bool:
        """Would both bindings fight over the same host socket?"""
        if self.host_port != other.host_port:
            return False
        if "" in (self.host_ip, other.host_ip) or self.host_ip == other.host_ip:
            return True
        if self.all_interfaces or other.all_interfaces:  # 0.0.0.0 clashes with IPv4, :: with IPv6
            a, b = ipaddress.ip_address(self.host_ip), ipaddress.ip_address(other.host_ip)
            return a.version == b.version
        return False

    def __str__(self) -> str:
        if not self.host_ip:
            return str(self.host_port)
        ip = f"[{self.host_ip}]" if ":" in self.host_ip else self.host_ip
        return f"{ip}:{self.host_port}"


def _parse_publish(v: Any) -> Any:
    if v is None or isinstance(v, dict | PublishSpec):
        return v
    if isinstance(v, bool):
        raise ValueError("expected a port number or \"ADDRESS:PORT\"")
    if isinstance(v, int):
        return {"host_port": v}
    if isinstance(v, str):
        addr, sep, port = v.strip().rpartition(":")
        if not port.isdigit():
            raise ValueError(f"expected a port number or \"ADDRESS:PORT\", got {v!r}")
        if sep:
            addr = addr.strip("[]")
            try:
                ipaddress.ip_address(addr)
            except ValueError:
                raise ValueError(f"{addr!r} is not an IP address (publish on e.g. 127.0.0.1:8080)") from None
        return {"host_ip": addr, "host_port": parse_port(port)}
    raise ValueError("expected a port number or \"ADDRESS:PORT\"")


class AppSpec(Frozen):
    template: str | None = None
    dockerfile: str | None = None  # a path inside `context` (compose convention)
    context: str = "."  # relative to the playbook's directory
    vars: dict[str, Any] = Field(default_factory=dict)
    build_args: dict[str, ScalarStr] = Field(default_factory=dict)
    build: Literal["host", "local"] = "host"  # local: build on this machine and ship the image
    command: tuple[ScalarStr, ...] | None = None
    port: Port | None = None
    publish: PublishSpec | None = None
    env: dict[str, ScalarStr] = Field(default_factory=dict)
    secrets: tuple[str, ...] = ()
    volumes: dict[str, str] = Field(default_factory=dict)  # named volume → absolute container path
    healthcheck: HealthcheckSpec | None = None
    memory: Size | None = None
    cpus: Float | None = Field(None, gt=0, le=256)
    restart: Literal["no", "always", "unless-stopped", "on-failure"] = "unless-stopped"
    reach: tuple[str, ...] = ()  # other apps of this playbook this app may connect to
    read_only: bool | None = None  # default: whatever the template says it supports

    @field_validator("command", mode="before")
    @classmethod
    def _command(cls, v: Any) -> Any:
        if isinstance(v, str):
            try:
                v = tuple(shlex.split(v))
            except ValueError as exc:
                raise ValueError(f"cannot split the command into words: {exc}") from None
        if isinstance(v, list | tuple) and not v:
            raise ValueError("`command` must not be empty (leave it out to use the image's)")
        return v

    @field_validator("publish", mode="before")
    @classmethod
    def _publish(cls, v: Any) -> Any:
        return _parse_publish(v)

    @field_validator("restart", mode="before")
    @classmethod
    def _restart(cls, v: Any) -> Any:
        return "no" if v is False else v  # YAML 1.1 reads an unquoted `no` as false

    @field_validator("template")
    @classmethod
    def _template(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(TEMPLATE_NAME_RE, v):
            raise ValueError(f"{v!r} is not a template name like python-web")
        return v

    @field_validator("context")
    @classmethod
    def _context(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("`context` must not be empty (use '.' for the playbook's directory)")
        if not v.isprintable():
            raise ValueError("`context` must not contain control characters")
        return v

    @field_validator("secrets")
    @classmethod
    def _secret_names(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        problems: list[tuple[tuple[PathPart, ...], str]] = []
        for i, name in enumerate(v):
            if not re.fullmatch(ENV_NAME_RE, name):
                problems.append(((i,), f"{name!r} is not an environment variable name"))
            elif name in v[:i]:
                problems.append(((i,), f"secret {name!r} is listed twice"))
        if problems:
            raise SpecError(problems)
        return v

    @field_validator("env")
    @classmethod
    def _env_names(cls, v: dict[str, str]) -> dict[str, str]:
        bad = [((name,), f"{name!r} is not an environment variable name (letters, digits, '_'; "
                         "not starting with a digit)") for name in v if not re.fullmatch(ENV_NAME_RE, name)]
        if bad:
            raise SpecError(bad)
        return v

    @field_validator("build_args")
    @classmethod
    def _build_arg_names(cls, v: dict[str, str]) -> dict[str, str]:
        bad = [((name,), f"{name!r} is not a build argument name") for name in v
               if not re.fullmatch(ENV_NAME_RE, name)]
        if bad:
            raise SpecError(bad)
        return v

    @field_validator("volumes")
    @classmethod
    def _volumes(cls, v: dict[str, str]) -> dict[str, str]:
        problems: list[tuple[tuple[PathPart, ...], str]] = []
        targets: dict[str, str] = {}
        for name, target in v.items():
            if not re.fullmatch(VOLUME_NAME_RE, name):
                problems.append(((name,), f"volume name {name!r} must be lowercase letters, digits, '_', "
                                          "'.' or '-' (starting with a letter or digit)"))
            elif not PurePosixPath(target).is_absolute():
                problems.append(((name,), f"container path must be absolute (e.g. /var/lib/app), "
                                          f"got {target!r}"))
            elif PurePosixPath(target) == PurePosixPath("/"):
                problems.append(((name,), "a volume cannot be mounted over '/'"))
            elif (not re.fullmatch(CONTAINER_PATH_RE, target.removesuffix("/"))
                  or any(part in (".", "..") for part in target.split("/"))):
                problems.append(((name,), "container path must be a plain absolute path (letters, digits, "
                                          "'_', '.', '-', '@', '+', '~' between single '/'; no '..', "
                                          "',', '=', ':', quotes or spaces)"))
            elif str(PurePosixPath(target)) in targets:
                problems.append(((name,), f"{target!r} is already the mount point of volume "
                                          f"{targets[str(PurePosixPath(target))]!r}"))
            else:
                targets[str(PurePosixPath(target))] = name
        if problems:
            raise SpecError(problems)
        return v

    @field_validator("dockerfile")
    @classmethod
    def _dockerfile_inside(cls, v: str | None) -> str | None:
        if v is not None and (not v.strip() or PurePosixPath(v).is_absolute()
                              or ".." in PurePosixPath(v).parts or not v.isprintable()):
            raise ValueError(f"`dockerfile` is a path inside `context` (as in compose), got {v!r}")
        return v

    @field_validator("memory")
    @classmethod
    def _memory(cls, v: int | None) -> int | None:
        if v is not None and v < MIN_MEMORY:
            raise ValueError(f"docker needs a memory limit of at least 6m, got {v} bytes")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> AppSpec:
        problems: list[tuple[tuple[PathPart, ...], str]] = []
        if self.template is not None and self.dockerfile is not None:
            problems.append((("dockerfile",), "give exactly one of `template` or `dockerfile`, not both"))
        elif self.template is None and self.dockerfile is None:
            problems.append(((), "give exactly one of `template` (a template name) or `dockerfile` (a path)"))
        if self.publish is not None and self.port is None:
            problems.append((("publish",), "`publish` needs `port` (the container port to publish)"))
        if self.healthcheck is not None and self.healthcheck.http is not None and self.port is None:
            problems.append((("healthcheck", "http"), "an `http` health check needs the app's `port`"))
        for i, name in enumerate(self.secrets):
            if name in self.env:
                problems.append((("secrets", i), f"{name!r} is both in `env` and `secrets`"))
        if problems:
            raise SpecError(problems)
        return self


class Playbook(Frozen):
    project: Name
    environment: Name
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
        if self.provider == "existing" and not self.host.address:
            problems.append((("host", "address"), "required for provider existing: the host's name or IP"))
        seen: list[tuple[PublishSpec, str]] = []
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
                    problems.append((("apps", name, "publish"),
                                     f"host port {app.publish.host_port} is already published by app "
                                     f"{owner!r}" + (f" ({pub} overlaps {app.publish})"
                                                     if str(pub) != str(app.publish) else "")))
                    break
            seen.append((app.publish, name))
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
