"""The parameters of a local sandbox host: a container on the local engine that behaves like a fresh VM.

Pure: given names, ports and the image, return the Docker API bodies (and the equivalent `docker run` argv
for --check / -v output). The flag set is DEVELOPERS.md's docker-in-docker without --privileged:

    --cap-add ALL --cap-drop SYS_RESOURCE --security-opt seccomp=unconfined --security-opt apparmor=unconfined
    --security-opt systempaths=unconfined --device-cgroup-rule 'a *:* rwm' --cgroupns private
    -v <volume>:/var/lib/docker -p 127.0.0.1:<free port>:22 (+ one 127.0.0.1 port per published app port)

`systempaths=unconfined` is a CLI option: on the API it is `MaskedPaths: []` and `ReadonlyPaths: []`.

Ports are chosen by the caller (free 127.0.0.1 ports at create time) and recorded in labels, so later commands
find them without a state file, and a restarted container keeps them (explicit host ports, not ephemeral).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from provision.ops import Params, params

ROLE = "sandbox-host"
LABEL_PROJECT = "dockyard.project"
LABEL_ENVIRONMENT = "dockyard.environment"
LABEL_ROLE = "dockyard.role"
LABEL_SSH_PORT = "dockyard.ssh-port"
LABEL_PORTS = "dockyard.ports"  # "8081:49153,8082:49154": sandbox port → 127.0.0.1 port
LABEL_SSH_USER = "dockyard.ssh-user"
LABEL_IMAGE = "dockyard.sandbox-image"

DOCKER_VOLUME_TARGET = "/var/lib/docker"
BIND_ADDRESS = "127.0.0.1"
ENV_USER = "DOCKYARD_USER"
ENV_AUTHORIZED_KEY = "DOCKYARD_AUTHORIZED_KEY"  # a public key: not a secret

CAP_ADD = ("ALL",)
CAP_DROP = ("SYS_RESOURCE",)
SECURITY_OPT = ("seccomp=unconfined", "apparmor=unconfined")
DEVICE_CGROUP_RULES = ("a *:* rwm",)


def container_name(project: str, environment: str) -> str:
    return f"dockyard-{project}-{environment}"


def volume_name(project: str, environment: str) -> str:
    return f"dockyard-{project}-{environment}-docker"


def owner_labels(project: str, environment: str) -> dict[str, str]:
    return {LABEL_PROJECT: project, LABEL_ENVIRONMENT: environment, LABEL_ROLE: ROLE}


def label_filters(project: str, environment: str) -> list[str]:
    """For `containers.list(filters={"label": ...})` / `volumes.list(...)`: all three must match."""
    return [f"{k}={v}" for k, v in owner_labels(project, environment).items()]


def format_ports(ports: Mapping[int, int]) -> str:
    return ",".join(f"{inner}:{outer}" for inner, outer in sorted(ports.items()))


def parse_ports(text: str | None) -> dict[int, int]:
    """The inverse of format_ports; a damaged label gives what can be read (never raises)."""
    out: dict[int, int] = {}
    for item in (text or "").split(","):
        m = re.fullmatch(r"\s*(\d{1,5}):(\d{1,5})\s*", item)
        if m:
            out[int(m.group(1))] = int(m.group(2))
    return out


def wanted_ports(publish_ports: Iterable[int]) -> tuple[int, ...]:
    """The sandbox ports to map: the apps' `publish` ports (22 is SSH's and mapped separately)."""
    return tuple(sorted({p for p in publish_ports if p != 22}))


def missing_ports(wanted: Iterable[int], mapped: Mapping[int, int]) -> tuple[int, ...]:
    return tuple(p for p in sorted(set(wanted)) if p not in mapped)


@dataclass(frozen=True)
class SandboxParams:
    project: str
    environment: str
    image: str
    ssh_port: int  # the 127.0.0.1 port mapped to the sandbox's 22
    ssh_user: str
    authorized_key: str  # "ssh-ed25519 AAAA… comment"
    ports: Mapping[int, int] = field(default_factory=dict)  # sandbox port → 127.0.0.1 port

    @property
    def name(self) -> str:
        return container_name(self.project, self.environment)

    def op_params(self) -> Params:
        """These, as hashable op params (the local engine executor rebuilds the SandboxParams from them)."""
        return params(project=self.project, environment=self.environment, image=self.image,
                      ssh_port=self.ssh_port, ssh_user=self.ssh_user, authorized_key=self.authorized_key,
                      ports=dict(self.ports))

    @property
    def volume(self) -> str:
        return volume_name(self.project, self.environment)

    @property
    def hostname(self) -> str:
        return f"{self.project}-{self.environment}"

    def labels(self) -> dict[str, str]:
        return {**owner_labels(self.project, self.environment), LABEL_SSH_PORT: str(self.ssh_port),
                LABEL_PORTS: format_ports(self.ports), LABEL_SSH_USER: self.ssh_user,
                LABEL_IMAGE: self.image}

    def environment_vars(self) -> dict[str, str]:
        return {ENV_USER: self.ssh_user, ENV_AUTHORIZED_KEY: self.authorized_key.strip()}

    def port_bindings(self) -> dict[str, list[dict[str, str]]]:
        bindings = {"22/tcp": [{"HostIp": BIND_ADDRESS, "HostPort": str(self.ssh_port)}]}
        for inner, outer in sorted(self.ports.items()):
            bindings[f"{inner}/tcp"] = [{"HostIp": BIND_ADDRESS, "HostPort": str(outer)}]
        return bindings

    def host_config(self) -> dict[str, Any]:
        """The API's HostConfig (what `docker run`'s flags become)."""
        return {
            "CapAdd": list(CAP_ADD),
            "CapDrop": list(CAP_DROP),
            "SecurityOpt": list(SECURITY_OPT),
            "MaskedPaths": [],  # --security-opt systempaths=unconfined
            "ReadonlyPaths": [],
            "DeviceCgroupRules": list(DEVICE_CGROUP_RULES),
            "CgroupnsMode": "private",
            "Mounts": [{"Type": "volume", "Source": self.volume, "Target": DOCKER_VOLUME_TARGET,
                        "ReadOnly": False}],
            "PortBindings": self.port_bindings(),
            "RestartPolicy": {"Name": "unless-stopped"},
        }

    def create_body(self) -> dict[str, Any]:
        """The body of POST /containers/create (with `HostConfig`)."""
        env = self.environment_vars()
        return {
            "Image": self.image,
            "Hostname": self.hostname,
            "Labels": self.labels(),
            "Env": [f"{k}={v}" for k, v in env.items()],
            "ExposedPorts": {port: {} for port in self.port_bindings()},
            "HostConfig": self.host_config(),
        }

    def volume_body(self) -> dict[str, Any]:
        return {"Name": self.volume, "Labels": owner_labels(self.project, self.environment)}


@dataclass(frozen=True)
class Found:
    """What the labels of an existing sandbox container say."""

    container_id: str
    state: str
    ssh_port: int | None
    ssh_user: str | None
    ports: dict[int, int]
    image: str | None


def read_labels(container_id: str, state: str, labels: Mapping[str, str]) -> Found:
    port = labels.get(LABEL_SSH_PORT, "")
    return Found(container_id=container_id, state=state,
                 ssh_port=int(port) if port.isdigit() else None,
                 ssh_user=labels.get(LABEL_SSH_USER) or None,
                 ports=parse_ports(labels.get(LABEL_PORTS)), image=labels.get(LABEL_IMAGE) or None)
