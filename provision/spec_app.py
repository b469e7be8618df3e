"""The playbook's `apps.<name>` section: one app (template or Dockerfile, ports, publish, health check, env,
secrets, volumes, limits). See provision.spec for the whole model.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from pathlib import PurePosixPath
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from provision.imageref import check_reference, has_digest, registry_of, same_registry
from provision.spec_base import (
    CONTAINER_PATH_RE,
    ENV_NAME_RE,
    MIN_MEMORY,
    TEMPLATE_NAME_RE,
    VOLUME_NAME_RE,
    WILDCARD_IPS,
    Duration,
    Float,
    Frozen,
    Int,
    PathPart,
    Port,
    PositiveDuration,
    ScalarStr,
    Size,
    SpecError,
)
from provision.spec_registry import RegistrySpec
from provision.units import parse_port

_HOST_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
DOMAIN_RE = rf"{_HOST_LABEL}(?:\.{_HOST_LABEL})+"  # at least two labels, no wildcard (ACME needs DNS for those)


def check_domain(value: str) -> str | None:
    """Why `value` is not a host name the proxy can route, or None."""
    if len(value) > 253 or not re.fullmatch(DOMAIN_RE, value):
        return (f"{value!r} is not a host name (lowercase letters, digits and '-' in dot-separated labels, "
                "e.g. docs.example.com; no scheme, port or path)")
    return None


# a swarm placement constraint: <attribute> ==|!= <value>, no spaces inside either side
PLACEMENT_RE = r"[A-Za-z][A-Za-z0-9_.\-]*\s*(==|!=)\s*[A-Za-z0-9_.\-:/]+"


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


def _split_words(v: Any) -> Any:
    """A command given as one string is split like a shell would (lists pass through)."""
    if isinstance(v, str):
        try:
            return tuple(shlex.split(v))
        except ValueError as exc:
            raise ValueError(f"cannot split the command into words: {exc}") from None
    return v


class AppSpec(Frozen):
    template: str | None = None
    dockerfile: str | None = None  # a path inside `context` (compose convention)
    image: str | None = None  # a prebuilt image (redis:7.2, ghcr.io/acme/api@sha256:…): pulled, never built
    pull: Literal["missing", "always", "never"] | None = None  # image apps; None = missing
    registry: RegistrySpec | None = None  # image apps: credentials of its private registry
    context: str = "."  # relative to the playbook's directory
    vars: dict[str, Any] = Field(default_factory=dict)
    build_args: dict[str, ScalarStr] = Field(default_factory=dict)
    build: Literal["host", "local"] = "host"  # local: build on this machine and ship the image
    command: tuple[ScalarStr, ...] | None = None
    # runs once per new release, before the switch, in a one-off container of the new image ([] = none, not
    # even the template's default)
    release_command: tuple[ScalarStr, ...] | None = None
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
    domains: tuple[str, ...] = ()  # host names the front proxy routes to this app (needs `proxy:`)
    drain: Duration = 30.0  # after a switch, how long requests in flight to the old container may run
    keep_releases: Int = Field(5, ge=1, le=50)  # releases (stopped containers + images) kept for rollback
    replicas: Int = Field(1, ge=1, le=100)  # engine.mode swarm: the service's task count
    placement: tuple[str, ...] = ()  # engine.mode swarm: constraints such as node.role==worker

    @field_validator("command", mode="before")
    @classmethod
    def _command(cls, v: Any) -> Any:
        v = _split_words(v)
        if isinstance(v, list | tuple) and not v:
            raise ValueError("`command` must not be empty (leave it out to use the image's)")
        return v

    @field_validator("release_command", mode="before")
    @classmethod
    def _release_command(cls, v: Any) -> Any:
        return _split_words(v)  # [] is allowed here: no release command, not even the template's

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

    @field_validator("image")
    @classmethod
    def _image(cls, v: str | None) -> str | None:
        why = check_reference(v) if v is not None else None
        if why:
            raise ValueError(why)
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

    @field_validator("domains", mode="before")
    @classmethod
    def _domains(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = [v]
        if isinstance(v, list | tuple):
            problems: list[tuple[tuple[PathPart, ...], str]] = []
            seen: list[str] = []
            for i, domain in enumerate(v):
                if not isinstance(domain, str):
                    problems.append(((i,), "expected a host name like docs.example.com"))
                    continue
                why = check_domain(domain)
                if why:
                    problems.append(((i,), why))
                elif domain in seen:
                    problems.append(((i,), f"{domain!r} is listed twice"))
                seen.append(domain)
            if problems:
                raise SpecError(problems)
        return v

    @field_validator("placement", mode="before")
    @classmethod
    def _placement(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = [v]
        if isinstance(v, list | tuple):
            bad = [((i,), "expected a swarm constraint such as node.role==worker or node.labels.zone!=a")
                   for i, c in enumerate(v) if not isinstance(c, str) or not re.fullmatch(PLACEMENT_RE, c)]
            if bad:
                raise SpecError(bad)
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
        problems += self._source_problems()
        if self.publish is not None and self.port is None:
            problems.append((("publish",), "`publish` needs `port` (the container port to publish)"))
        if self.healthcheck is not None and self.healthcheck.http is not None and self.port is None:
            problems.append((("healthcheck", "http"), "an `http` health check needs the app's `port`"))
        if self.domains and self.port is None:
            problems.append((("domains",), "`domains` needs `port` (the container port the proxy sends "
                                           "requests to)"))
        if self.domains and self.publish is not None:
            problems.append((("publish",), "an app with `domains` is reached through the proxy; drop `publish` "
                                           "(or `domains`)"))
        for i, name in enumerate(self.secrets):
            if name in self.env:
                problems.append((("secrets", i), f"{name!r} is both in `env` and `secrets`"))
        if problems:
            raise SpecError(problems)
        return self

    def _source_problems(self) -> list[tuple[tuple[PathPart, ...], str]]:
        """Exactly one of template / dockerfile / image; build settings only with a build; `pull` and
        `registry` only with an image (and the registry must be the image's)."""
        given = [k for k in ("template", "dockerfile", "image") if getattr(self, k) is not None]
        if len(given) > 1:
            both = "not both" if len(given) == 2 else "not all three"
            return [((given[-1],), f"give exactly one of `template`, `dockerfile` or `image`, {both} "
                                   f"({' and '.join(f'`{k}`' for k in given)})")]
        if not given:
            return [((), "give exactly one of `template` (a template name), `dockerfile` (a path) or `image` "
                         "(a prebuilt image such as redis:7.2)")]
        problems: list[tuple[tuple[PathPart, ...], str]] = []
        if self.image is None:
            problems += [((key,), f"`{key}` is only for `image:` apps") for key in ("pull", "registry")
                         if getattr(self, key) is not None]
            return problems
        problems += [((key,), f"`{key}` is a build setting: an `image:` app is pulled, never built (drop `{key}`)")
                     for key in ("context", "vars", "build_args", "build") if key in self.model_fields_set]
        if self.registry is not None and not same_registry(self.registry.server, registry_of(self.image)):
            problems.append((("registry", "server"), f"the image is pulled from {registry_of(self.image)}, not "
                                                     f"from {self.registry.server}"))
        if has_digest(self.image) and self.pull == "always":
            problems.append((("pull",), "an image pinned by digest never changes: `pull: always` has nothing "
                                        "to do (leave it out)"))
        elif has_digest(self.image) and self.pull == "never":
            problems.append((("pull",), "an image pinned by digest cannot be shipped (`docker load` keeps no "
                                        "registry digest): let the host pull it, or reference it by tag"))
        return problems
