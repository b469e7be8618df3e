"""Pure builders for an app run as a Docker Swarm service (engine.mode: swarm): the service spec in the Engine
API's JSON shape, its overlay network and its Swarm secrets.

STATUS (branch swarm-services, issue 14 "Apps become services"; not merged yet):
- works, unit-tested: the AppSpec keys `replicas` and `placement` (swarm only: spec._swarm_checks);
  `service_of`/`service_config` → `ServiceConfig` → docker-py `create_service`/`update_service` kwargs (labels
  with a config hash, env, secrets as Swarm secrets, named volumes, limits, health check, an overlay network
  per app, replicas, placement, UpdateConfig/RollbackConfig, the endpoint: vip + ingress-mode ports when every
  host has IPVS (provision.facts.ipvs, plan.services.endpoint_choice), else dnsrr + host-mode ports);
  provision.plan.services (network / secrets / create / update when the hash differs / nothing);
  provision.serviceops (Engine API handlers + the bounded `service.converged` wait: a rollback → exit 1);
  provision.deploy_swarm + phases.deploy.deploy_swarm_env: `dockyard deploy` in swarm mode (images built or
  shipped on EVERY host, services through the first); `image:` apps (pulled or shipped on every host, the
  first host's image id in the hash, the spec pinned to its repo@digest: `pinned_image`); the old Swarm
  secrets no service's Spec/PreviousSpec uses removed after the rollouts (plan.services.plan_secret_cleanup).
  Unsupported yet, refused with exit 2: `domains`, --prune, a publish address (swarm binds every interface).
- e2e: tests/e2e/test_swarm_services_simhost.py (3 sim hosts: 3 replicas over >= 2 nodes, a rolling update,
  a broken version rolling back with exit 1 and the old one answering, a no-op second deploy; no IPVS
  detected → dnsrr, said once; Init/ReadOnly on a task's container; an `image:` app shipped to every node;
  a changed secret's old Swarm secret kept while PreviousSpec uses it, removed by the next good deploy):
  passes (196 s here). Measured there: the sim hosts' engine drops Privileges.NoNewPrivileges (the task's
  SecurityOpt is empty).
- commands (branch swarm-ops): `logs`/`exec` reach a task on any node, `releases` and `rollback` (the
  service's rollback=previous): provision/swarm_apps.py, phases/swarm_apps.py, e2e test_swarm_ops_simhost.py.
- `up`/`recreate` (provision.phases.up_swarm): provision → every engine + the swarm → services, one
  connection per host; the e2e's first step is one `up` on three fresh sim hosts, and it ends with a node loss.
- registry (branch swarm-registry): with a top-level `registry:`, built apps are built once on the first host,
  pushed from there and run as `<server>/<project>/<app>@digest` (provision.plan.push; the pin is in the config
  hash); the service create/update of a pushed app or an image app with credentials carries them as
  X-Registry-Auth (serviceops), so a node lacking the image pulls it. e2e: tests/e2e/test_swarm_registry_simhost.py
  (2 sim hosts, Debian's docker-registry with htpasswd; passes, 38 s here).
- left: the proxy; release commands; pruning services (--prune); creating
  an ECR repository for a pushed app (it must exist); asking the registry itself whether it still has a pushed
  tag (the first host's RepoDigests decide).

Hardening parity with a standalone container (`ContainerConfig.create_argv`; tests/unit/test_service_hardening.py):
  docker create                      ServiceSpec (TaskTemplate)
  --init                             ContainerSpec.Init (API 1.38)
  --read-only                        ContainerSpec.ReadOnly
  --tmpfs P:rw,nosuid,nodev          Mounts {Type: tmpfs}: the engine gives both noexec,nosuid,nodev
  --security-opt no-new-privileges   ContainerSpec.Privileges.NoNewPrivileges — sent always, but an engine whose
                                     API predates the field (docker 20.10, API 1.41: Debian bookworm's
                                     docker.io, this machine's and the sim hosts' engine) drops it without an
                                     error: THE GAP. Such tasks run without no-new-privileges; on those hosts
                                     use engine.source: docker-ce (a current engine) where it matters.
  --memory / --cpus                  Resources.Limits.MemoryBytes / NanoCPUs
  --restart                          RestartPolicy.Condition (no → none, always/unless-stopped → any)
  --health-*                         ContainerSpec.Healthcheck (same CMD-SHELL probe and timings)
  --label / --env / --mount          ContainerSpec.Labels / Env / Mounts {Type: volume}
  --env-file (secrets)               Swarm secrets as files + NAME_FILE variables (below)
  log options                        none in either: the daemon.json defaults (json-file, rotated) apply to both
  Not set on containers either, so not set here: user, cap-drop/cap-add, pids limit, ulimits.
- tests: `PYTHONPATH=$PWD python3 -m pytest -q tests/unit/test_service_spec.py tests/unit/test_plan_services.py
  tests/unit/test_serviceops.py tests/unit/test_cli_swarm.py` (fast) and
  `PYTHONPATH=$PWD python3 -m pytest -q tests/e2e/test_swarm_services_simhost.py` (needs the sim host image).

Decisions, and why:
- Every field of the app's `ContainerConfig` is reused (same builders, same describe()); the service's config
  hash covers that container config's canonical form (without its env file: a service has none) plus the
  swarm-only fields, so the same change that recreates a container updates a service, and nothing else does.
- Secrets become Swarm secrets named `<project>-<env>-<app>-<NAME>-<digest12>` (digest of the value, never the
  value): a changed value is a new secret, hence a new name, a new hash and a rolling update; the old secret
  stays while the service's PreviousSpec (what a rollback returns to) uses it: the next update
  of the service replaces that, and the deploy making it removes the secret.
  Each is mounted read-only at /run/secrets/NAME (mode 0444 inside the task: the image's user is unknown, and
  only the task sees the file) and the env var `NAME_FILE` points at it (the official images' `_FILE`
  convention). The value is never in the spec, the labels, argv or logs; the plan
  only carries the secret's name and digest, the executor reads the value from the secret source.
- The endpoint comes from the hosts' facts: VIPs and the routing mesh need IPVS on every node (this machine's
  kernel and so its sim hosts have none: `ipvs=absent`), so only when every host has it do services get
  endpoint mode `vip` and ingress-mode ports (updates then `start-first`); else `dnsrr` and host-mode
  published ports: a published app answers on the port of each node that runs one of its tasks. The choice is
  in the hash only when it is the mesh, so the dnsrr services made before the choice existed keep their hash.
  With host-mode ports a node cannot run an old and a new task of the same app at once, so a published app
  updates `stop-first` (one task at a time: the others keep answering); an unpublished one `start-first`.
- The overlay network per app is not attachable (only services join it); `reach` joins the other apps'
  networks, as for containers. The app's name is a DNS alias on its own network.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
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
    routing_mesh: bool = False  # every node has IPVS (a fact): endpoint mode vip + ingress-mode published ports
    # an image app: `repo@sha256:…` the first host's image came with (else its reference); a built app with a
    # registry (provision.plan.push): `<server>/<project>/<app>@sha256:…` it was pushed as (in the hash)
    image_pin: str = ""

    @property
    def name(self) -> str:
        c = self.container
        return service_name(c.project, c.environment, c.app)

    @property
    def published(self) -> bool:
        return self.container.publish is not None and self.container.port is not None

    @property
    def update_order(self) -> str:
        # a host-mode port is held by one task per node: the old task must stop before the new one binds it
        return "stop-first" if self.published and not self.routing_mesh else "start-first"

    @property
    def endpoint_mode(self) -> str:
        return "vip" if self.routing_mesh else "dnsrr"

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
        if self.image_pin and not self.container.pulled:  # a built app pushed to the registry: what nodes pull
            doc["image"] = self.image_pin
        if self.routing_mesh:  # only when set: the hash of every dnsrr service made before the choice existed stays
            doc["endpoint"] = "vip"
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
        if self.image_pin:
            lines.append(f"image pinned: {self.image_pin}")
        lines += [f"placement: {c}" for c in self.placement]
        lines.append("endpoint: vip, ingress-mode ports (routing mesh)" if self.routing_mesh
                     else "endpoint: dnsrr, host-mode ports")
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
            # a tag makes every node try a pull at each task start (and maybe run a newer image than the one
            # hashed); a digest runs exactly that image, pulled only by a node that lacks it
            "Image": self.image_pin or c.image,
            # the hash on each task tells the rollout wait which tasks run the new version
            "Labels": {**owner_labels(c.project, c.environment, c.app), LABEL_CONFIG_HASH: self.config_hash},
            "Env": env,
            "Init": True,
            "ReadOnly": c.read_only,
            # the container's --security-opt no-new-privileges; an engine whose API predates the field (the
            # Engine API 1.41 of docker 20.10) drops it silently: see STATUS
            "Privileges": {"NoNewPrivileges": "no-new-privileges" in c.security_opt},
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
                          "PublishedPort": self.container.publish[1],
                          "PublishMode": "ingress" if self.routing_mesh else "host"})
        return {"Mode": self.endpoint_mode, "Ports": ports}

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


def pinned_image(ref: str, repo_digests: Sequence[str]) -> str:
    """The digest reference of `ref`'s repository among an image's RepoDigests ("" when it has none: an image
    that was built or shipped, never pulled). A reference that already holds a digest is its own pin."""
    if "@" in ref:
        return ref
    last = ref.rsplit("/", 1)[-1]
    repository = _normal(ref.rsplit(":", 1)[0] if ":" in last else ref)
    for digest in repo_digests:
        name, at, _ = digest.partition("@")
        if at and _normal(name) == repository:
            return digest
    return ""


def _normal(repository: str) -> str:
    """docker's normalisation: `redis` → `docker.io/library/redis`, `me/app` → `docker.io/me/app`."""
    first, sep, rest = repository.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        if first not in ("docker.io", "index.docker.io"):
            return repository
        repository = rest
    return f"docker.io/{repository}" if "/" in repository else f"docker.io/library/{repository}"


def service_of(container: ContainerConfig, app: AppSpec, *, routing_mesh: bool = False,
               image_pin: str = "") -> ServiceConfig:
    """The service of an app whose container config deploy already built (render, hash, image): the same
    config without its env file (secrets are Swarm secrets), plus replicas, placement, the secrets and the
    endpoint choice (`routing_mesh`: from the hosts' IPVS facts, provision.plan.services.endpoint_choice)."""
    c = replace(container, env_file=None)
    digests = dict(c.secret_digests)
    secrets = tuple(SwarmSecret(n, secret_name(c.project, c.environment, c.app, n, digests[n]), digests[n])
                    for n in c.secrets)
    return ServiceConfig(container=c, replicas=app.replicas, placement=app.placement, secrets=secrets,
                         routing_mesh=routing_mesh, image_pin=image_pin)


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
    routing_mesh: bool = False,
) -> ServiceConfig:
    """The desired service of one app, built from its settings (tests; deploy uses `service_of`)."""
    container = container_config(project, environment, app_name, app, image=image, build_hash=build_hash,
                                 secret_digests=secret_digests, ssh_user="root", read_only=read_only,
                                 release=release)
    return service_of(container, app, routing_mesh=routing_mesh)
