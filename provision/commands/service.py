"""Pure builders for an app run as a Docker Swarm service (engine.mode: swarm): the service spec in the Engine
API's JSON shape, its overlay network and its Swarm secrets.

STATUS (branch swarm-services, issue 14 "Apps become services"; not merged yet):
- works, unit-tested: the AppSpec keys `replicas` and `placement` (swarm only: spec._swarm_checks);
  `service_of`/`service_config` → `ServiceConfig` → docker-py `create_service`/`update_service` kwargs (labels
  with a config hash, env, secrets as Swarm secrets, named volumes, limits, health check, an overlay network
  per app, replicas, placement, UpdateConfig/RollbackConfig, endpoint mode dnsrr + host-mode ports);
  provision.plan.services (network / secrets / create / update when the hash differs / nothing);
  provision.serviceops (Engine API handlers + the bounded `service.converged` wait: a rollback → exit 1);
  provision.deploy_swarm + phases.deploy.deploy_swarm_env: `dockyard deploy` in swarm mode (images built or
  shipped on EVERY host, services through the first). Unsupported yet, refused with exit 2: `image:` apps,
  `domains`, --prune.
- e2e: tests/e2e/test_swarm_services_simhost.py (3 sim hosts: 3 replicas over >= 2 nodes, a rolling update,
  a broken version rolling back with exit 1 and the old one answering, a no-op second deploy): passes
  (~2 min here).
- commands (branch swarm-ops): `logs`/`exec` reach a task on any node, `releases` and `rollback` (the
  service's rollback=previous): provision/swarm_apps.py, phases/swarm_apps.py, e2e test_swarm_ops_simhost.py.
- left: `up`/`recreate` still refuse swarm mode (cli/pipeline.py: call deploy_swarm_env after setup); image
  apps on every node; the proxy; release commands; pruning services and old secrets; `status` per service
  and per node; engine.mode detection of IPVS from
  facts (dnsrr is always used today); `security_opt` no-new-privileges (no field in the service spec here).
- tests: `PYTHONPATH=$PWD python3 -m pytest -q tests/unit/test_service_spec.py tests/unit/test_plan_services.py
  tests/unit/test_serviceops.py tests/unit/test_cli_swarm.py` (fast) and
  `PYTHONPATH=$PWD python3 -m pytest -q tests/e2e/test_swarm_services_simhost.py` (needs the sim host image).

Decisions, and why:
- Every field of the app's `ContainerConfig` is reused (same builders, same describe()); the service's config
  hash covers that container config's canonical form (without its env file: a service has none) plus the
  swarm-only fields, so the same change that recreates a container updates a service, and nothing else does.
- Secrets become Swarm secrets named `<project>-<env>-<app>-<NAME>-<digest12>` (digest of the value, never the
  value): a changed value is a new secret, hence a new name, a new hash and a rolling update; the old secret
  stays until a later clean-up. Each is mounted read-only at /run/secrets/NAME (mode 0444 inside the task: the
  image's user is unknown, and only the task sees the file) and the env var `NAME_FILE` points at it (the
  official images' `_FILE` convention). The value is never in the spec, the labels, argv or logs; the plan
  only carries the secret's name and digest, the executor reads the value from the secret source.
- Endpoint mode `dnsrr` and host-mode published ports: this kernel has no IPVS, so VIPs and the routing mesh
  fail. A published app answers on the port of each node that runs one of its tasks. With host-mode ports a
  node cannot run an old and a new task of the same app at once, so a published app updates `stop-first`
  (one task at a time: the others keep answering); an unpublished one `start-first`.
- The overlay network per app is not attachable (only services join it); `reach` joins the other apps'
  networks, as for containers. The app's name is a DNS alias on its own network.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from provision.commands.docker import (
    LABEL_APP,
    LABEL_CONFIG,
    LABEL_CONFIG_HASH,
    ContainerConfig,
    container_config,
    owner_labels,
)
from provision.spec import AppSpec

SECRETS_DIR = "/run/secrets"
NS = 1_000_000_000  # the Engine API counts durations in nanoseconds
RESTART_CONDITION = {"no": "none", "on-failure": "on-failure", "always": "any", "unless-stopped": "any"}
DEFAULT_MONITOR = 10.0  # seconds a new task must keep running before the update counts it as good


def service_name(project: str, environment: str, app: str) -> str:
    return f"{project}-{environment}-{app}"


def secret_name(project: str, environment: str, app: str, name: str, value_digest: str) -> str:
    """A Swarm secret's name: a changed value (digest) makes a new secret (Swarm secrets are immutable)."""
    return f"{project}-{environment}-{app}-{name}-{value_digest.removeprefix('sha256:')[:12]}"


def _ns(seconds: float) -> int:
    return round(seconds * NS)


@dataclass(frozen=True)
class SwarmSecret:
    """One secret of a service: the env var name, the Swarm secret's name (with the value's digest)."""

    env_name: str
    name: str
    digest: str

    @property
    def path(self) -> str:
        return f"{SECRETS_DIR}/{self.env_name}"

    def labels(self, project: str, environment: str, app: str) -> dict[str, str]:
        return owner_labels(project, environment, app)


@dataclass(frozen=True)
class ServiceConfig:
    """Everything that decides a service: the app's container config plus the swarm-only settings."""

    container: ContainerConfig
    replicas: int = 1
    placement: tuple[str, ...] = ()
    secrets: tuple[SwarmSecret, ...] = ()

    @property
    def name(self) -> str:
        c = self.container
        return service_name(c.project, c.environment, c.app)

    @property
    def published(self) -> bool:
        return self.container.publish is not None and self.container.port is not None

    @property
    def update_order(self) -> str:
        return "stop-first" if self.published else "start-first"

    @property
    def monitor(self) -> float:
        """How long a new task must run (and, with a health check, have had time to turn healthy)."""
        h = self.container.health
        if h is None:
            return DEFAULT_MONITOR
        return max(DEFAULT_MONITOR, h.start_period + h.interval * (h.retries + 1))

    def _canonical(self) -> str:
        container = json.loads(self.container._canonical())
        doc = {"container": container, "replicas": self.replicas, "placement": list(self.placement),
               "secrets": [[s.env_name, s.name] for s in self.secrets], "v": 1}
        return json.dumps(doc, sort_keys=True, separators=(",", ":"))

    @property
    def config_hash(self) -> str:
        return hashlib.sha256(self._canonical().encode()).hexdigest()

    @property
    def labels(self) -> dict[str, str]:
        labels = dict(self.container.labels)
        labels[LABEL_CONFIG_HASH] = self.config_hash
        labels[LABEL_CONFIG] = self.describe()
        return labels

    def describe(self) -> str:
        """The container's describe() with the swarm settings (secret-free: names, never values)."""
        lines = [line for line in self.container.describe().splitlines()
                 if not line.startswith(("config hash:", "secret ", "restart:"))]
        lines += [f"secret {s.env_name} (swarm secret at {s.path}, ${s.env_name}_FILE)" for s in self.secrets]
        lines.append(f"restart: {RESTART_CONDITION[self.container.restart]}")
        lines.append(f"replicas: {self.replicas}")
        lines += [f"placement: {c}" for c in self.placement]
        lines.append(f"update: {self.update_order}, rollback on failure, monitor {self.monitor:g}s")
        lines.append(f"config hash: {self.config_hash[:12]}")
        return "\n".join(lines) + "\n"

    # --- the Engine API's ServiceSpec ----------------------------------------------------------------------

    def container_spec(self, secret_ids: Mapping[str, str]) -> dict[str, Any]:
        """TaskTemplate.ContainerSpec; `secret_ids` maps each Swarm secret's name to its id (known only once the
        secret exists: a plan leaves it "" and the executor fills it in with `with_secret_ids`)."""
        c = self.container
        env = [f"{k}={v}" for k, v in c.env] + [f"{s.env_name}_FILE={s.path}" for s in self.secrets]
        spec: dict[str, Any] = {
            "Image": c.image,
            # the hash on each task tells the rollout wait which tasks run the new version
            "Labels": {**owner_labels(c.project, c.environment, c.app), LABEL_CONFIG_HASH: self.config_hash},
            "Env": env,
            "Init": True,
            "ReadOnly": c.read_only,
            "Mounts": [
                *({"Type": "volume", "Source": vol, "Target": target,
                   "VolumeOptions": {"Labels": owner_labels(c.project, c.environment, c.app)}}
                  for vol, target in c.volumes),
                *({"Type": "tmpfs", "Target": path} for path in c.tmpfs),
            ],
            "Secrets": [{"File": {"Name": s.env_name, "UID": "0", "GID": "0", "Mode": 0o444},
                         "SecretID": secret_ids.get(s.name, ""), "SecretName": s.name} for s in self.secrets],
        }
        if c.command:
            spec["Args"] = list(c.command)
        if c.health is not None:
            h = c.health
            spec["Healthcheck"] = {"Test": ["CMD-SHELL", h.test], "Interval": _ns(h.interval),
                                   "Timeout": _ns(h.timeout), "Retries": h.retries,
                                   "StartPeriod": _ns(h.start_period)}
        return spec

    def task_template(self, secret_ids: Mapping[str, str]) -> dict[str, Any]:
        c = self.container
        limits: dict[str, int] = {}
        if c.memory is not None:
            limits["MemoryBytes"] = c.memory
        if c.cpus is not None:
            limits["NanoCPUs"] = round(c.cpus * NS)
        networks = [{"Target": c.network, "Aliases": [c.app]}, *({"Target": n} for n in c.extra_networks)]
        return {
            "ContainerSpec": self.container_spec(secret_ids),
            "Resources": {"Limits": limits},
            "RestartPolicy": {"Condition": RESTART_CONDITION[c.restart], "Delay": _ns(1)},
            "Placement": {"Constraints": list(self.placement)},
            "Networks": networks,
        }

    def endpoint_spec(self) -> dict[str, Any]:
        ports = []
        if self.published:
            assert self.container.publish is not None
            ports.append({"Protocol": "tcp", "TargetPort": self.container.port,
                          "PublishedPort": self.container.publish[1], "PublishMode": "host"})
        return {"Mode": "dnsrr", "Ports": ports}

    def update_config(self) -> dict[str, Any]:
        return {"Parallelism": 1, "Delay": 0, "FailureAction": "rollback", "Monitor": _ns(self.monitor),
                "MaxFailureRatio": 0, "Order": self.update_order}

    def rollback_config(self) -> dict[str, Any]:
        return {"Parallelism": 1, "Delay": 0, "FailureAction": "pause", "Monitor": _ns(self.monitor),
                "MaxFailureRatio": 0, "Order": self.update_order}

    def api_kwargs(self, secret_ids: Mapping[str, str]) -> dict[str, Any]:
        """The keyword arguments of docker-py's `APIClient.create_service` (and `update_service`, with the
        service's id and version added): every field given, so an update replaces the whole spec."""
        return {
            "name": self.name,
            "labels": self.labels,
            "task_template": self.task_template(secret_ids),
            "mode": {"Replicated": {"Replicas": self.replicas}},
            "update_config": self.update_config(),
            "rollback_config": self.rollback_config(),
            "endpoint_spec": self.endpoint_spec(),
        }


def with_secret_ids(kwargs: Mapping[str, Any], secret_ids: Mapping[str, str]) -> dict[str, Any]:
    """A copy of `api_kwargs` output with each secret reference's SecretID set from its SecretName (the
    executor's lookup of the secrets it created or found)."""
    out = json.loads(json.dumps(kwargs))
    for ref in out["task_template"]["ContainerSpec"].get("Secrets", []):
        ref["SecretID"] = secret_ids[ref["SecretName"]]
    return out


def overlay_network(project: str, environment: str, app: str, name: str) -> dict[str, Any]:
    """docker-py `networks.create` arguments of an app's overlay network (services only: not attachable)."""
    return {"name": name, "driver": "overlay", "attachable": False,
            "labels": {**owner_labels(project, environment), LABEL_APP: app}}


def service_of(container: ContainerConfig, app: AppSpec) -> ServiceConfig:
    """The service of an app whose container config deploy already built (render, hash, image): the same
    config without its env file (secrets are Swarm secrets), plus replicas, placement and the secrets."""
    c = replace(container, env_file=None)
    digests = dict(c.secret_digests)
    secrets = tuple(SwarmSecret(n, secret_name(c.project, c.environment, c.app, n, digests[n]), digests[n])
                    for n in c.secrets)
    return ServiceConfig(container=c, replicas=app.replicas, placement=app.placement, secrets=secrets)


def service_config(
    project: str,
    environment: str,
    app_name: str,
    app: AppSpec,
    *,
    image: str,
    build_hash: str,
    secret_digests: Mapping[str, str],
    read_only: bool,
    release: str = "",
) -> ServiceConfig:
    """The desired service of one app, built from its settings (tests; deploy uses `service_of`)."""
    container = container_config(project, environment, app_name, app, image=image, build_hash=build_hash,
                                 secret_digests=secret_digests, ssh_user="root", read_only=read_only,
                                 release=release)
    return service_of(container, app)
