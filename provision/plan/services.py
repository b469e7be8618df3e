"""Pure planning for apps run as Swarm services (engine.mode: swarm): (desired ServiceConfig, observed facts)
-> Changes. Never touches the network. STATUS and decisions: provision/commands/service.py.

Per app, in the order deploy applies them (through the first host, a manager):
- network: the app's overlay network (not attachable), created when absent;
- secrets: each Swarm secret (its name carries the value's digest) created when absent; the op carries the
  env var name and the digest, never the value (the executor reads it from the secret source);
- service: absent → create; its `dockyard.config-hash` label differs → update with the whole new spec (the
  engine rolls it out start-first/stop-first and rolls back by itself when a new task fails); equal → nothing,
  so the service's UpdatedAt stays untouched. A create or update is followed by a bounded wait until the
  service converged (`service.converged`: every replica running the new spec, or the rollback finished —
  which fails the step, exit 1).
Once every service converged (a later read of the leader's facts): `plan_secret_cleanup` removes this
environment's dockyard-labelled Swarm secrets that no service references any more — neither in its Spec nor in
its PreviousSpec (what a service rollback returns to keeps its secrets), so a changed value's old secret goes
with the service's next update after the one that replaced it (a no-op deploy removes nothing).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from provision.changes import Change, Step
from provision.commands.docker import LABEL_APP, LABEL_CONFIG, LABEL_CONFIG_HASH, owner_labels
from provision.commands.service import ServiceConfig
from provision.ops import EngineCall, Wait, params
from provision.registry import RegistryAuth

CONVERGE_SLACK = 60.0  # seconds on top of replicas x (monitor + health wait) the rollout may take


@dataclass(frozen=True)
class ServiceFacts:
    """What the manager says of one service (docker-py `APIClient.inspect_service`)."""

    id: str
    version: int
    config_hash: str
    updated_at: str
    update_state: str = ""  # UpdateStatus.State: updating | completed | paused | rollback_* | ""
    config_text: str = ""  # the dockyard.config label: the "before" of --diff
    secret_refs: frozenset[str] = frozenset()  # secret names its Spec and PreviousSpec reference


def _secret_refs(spec: Mapping[str, Any] | None) -> set[str]:
    container = ((spec or {}).get("TaskTemplate") or {}).get("ContainerSpec") or {}
    return {str(ref.get("SecretName", "")) for ref in container.get("Secrets") or []} - {""}


def parse_service(attrs: Mapping[str, Any]) -> ServiceFacts:
    spec = attrs.get("Spec") or {}
    labels = spec.get("Labels") or {}
    return ServiceFacts(id=str(attrs.get("ID", "")), version=int((attrs.get("Version") or {}).get("Index", 0)),
                        config_hash=str(labels.get(LABEL_CONFIG_HASH, "")), updated_at=str(attrs.get("UpdatedAt", "")),
                        update_state=str((attrs.get("UpdateStatus") or {}).get("State", "")),
                        config_text=str(labels.get(LABEL_CONFIG, "")),
                        secret_refs=frozenset(_secret_refs(spec) | _secret_refs(attrs.get("PreviousSpec"))))


@dataclass(frozen=True)
class SecretFact:
    """One Swarm secret the leader lists (docker-py `APIClient.secrets`: metadata only, never the value)."""

    id: str
    name: str
    labels: Mapping[str, str]

    @property
    def app(self) -> str:
        return self.labels.get(LABEL_APP, "")


def parse_secret(attrs: Mapping[str, Any]) -> SecretFact:
    spec = attrs.get("Spec") or {}
    return SecretFact(id=str(attrs.get("ID", "")), name=str(spec.get("Name", "")),
                      labels={str(k): str(v) for k, v in (spec.get("Labels") or {}).items()})


@dataclass(frozen=True)
class EndpointChoice:
    """How every service of the deploy is reached: the routing mesh only when EVERY node has IPVS."""

    routing_mesh: bool
    reason: str  # one line for the output: why this choice


def endpoint_choice(ipvs: Mapping[str, bool | None]) -> EndpointChoice:
    """`ipvs`: per host label, whether its kernel has IPVS (None: the fact could not be read). A task may land
    on any node, and a VIP or an ingress port needs IPVS on each: one host without it (or unknown) means dnsrr +
    host-mode ports for all. The choice is a pure function of the facts, so the same hosts give the same
    services (and config hashes): a second deploy changes nothing."""
    lacking = [label for label, has in ipvs.items() if not has]
    if ipvs and not lacking:
        return EndpointChoice(True, "every host's kernel has IPVS: services use virtual IPs and the routing mesh "
                                    "(a published port answers on every node)")
    where = ", ".join(lacking[:5]) + (f" and {len(lacking) - 5} more" if len(lacking) > 5 else "")
    return EndpointChoice(False, f"no IPVS in the kernel of {where or 'any host'}: services use endpoint mode "
                                 "dnsrr and host-mode ports (a published port answers only on the nodes running "
                                 "one of its tasks)")


def _target(app: str, what: str) -> str:
    return f"app:{app}:{what}"


def converge_timeout(desired: ServiceConfig) -> float:
    h = desired.container.health
    per_task = desired.monitor + (h.wait if h is not None else 0.0)
    return CONVERGE_SLACK + desired.replicas * per_task


def plan_network(desired: ServiceConfig, networks: Iterable[str]) -> list[Change]:
    c = desired.container
    if c.network in set(networks):
        return []
    labels = owner_labels(c.project, c.environment, c.app)
    call = EngineCall("network.create", params(name=c.network, labels=labels, driver="overlay"))
    return [Change(_target(c.app, "network"), "create", "absent",
                   (Step(f"create overlay network {c.network}", call),))]


def plan_secrets(desired: ServiceConfig, secrets: Iterable[str]) -> list[Change]:
    have = set(secrets)
    c = desired.container
    changes = []
    for s in desired.secrets:
        if s.name in have:
            continue
        call = EngineCall("secret.create", params(name=s.name, env_name=s.env_name, digest=s.digest,
                                                  labels=s.labels(c.project, c.environment, c.app)))
        changes.append(Change(_target(c.app, f"secret:{s.env_name}"), "create", "absent (a new value)",
                              (Step(f"create swarm secret {s.name} (value from {s.env_name})", call),)))
    return changes


def plan_service(desired: ServiceConfig, facts: ServiceFacts | None, *, auth: RegistryAuth | None = None
                 ) -> list[Change]:
    """Create, update (config hash differs) or nothing (equal: the service is not touched). `auth`: the
    registry credentials (by name) the call hands the nodes for their pulls (provision.plan.push)."""
    with_auth = {"auth": auth} if auth is not None else {}
    app = desired.container.app
    spec = desired.api_kwargs({})  # secret ids: filled in by the executor from the secrets' names
    wait = Wait("service.converged", params(service=desired.name, config_hash=desired.config_hash,
                                            replicas=desired.replicas, label=f"app {app}"),
                timeout=converge_timeout(desired))
    after = desired.describe()
    if facts is None:
        create = EngineCall("service.create", params(spec=spec, **with_auth))
        return [Change(_target(app, "service"), "create", "absent", (
            Step(f"create service {desired.name} ({desired.replicas} replicas)", create),
            Step(f"wait until {desired.name} runs {desired.replicas} replicas", wait)), after=after,
            data={"config_hash": desired.config_hash[:12], "replicas": desired.replicas})]
    if facts.config_hash == desired.config_hash:
        return []
    update = EngineCall("service.update", params(id=facts.id, version=facts.version, spec=spec, **with_auth))
    return [Change(_target(app, "service"), "update", "config hash differs", (
        Step(f"update service {desired.name} ({desired.update_order}, rollback on failure)", update),
        Step(f"wait until every replica of {desired.name} runs the new version", wait)),
        before=facts.config_text or None, after=after,
        data={"config_hash": desired.config_hash[:12], "was": facts.config_hash[:12],
              "replicas": desired.replicas})]


def plan_secret_cleanup(project: str, environment: str, secrets: Iterable[SecretFact],
                        services: Iterable[ServiceFacts]) -> list[Change]:
    """Remove this environment's secrets (by their labels: only ours) that no service references. Pure; run only
    after every service of the deploy converged, from facts read then."""
    referenced = {name for svc in services for name in svc.secret_refs}
    ours = owner_labels(project, environment)
    changes = []
    for secret in sorted(secrets, key=lambda s: s.name):
        if any(secret.labels.get(k) != v for k, v in ours.items()) or not secret.app or secret.name in referenced:
            continue
        call = EngineCall("secret.remove", params(id=secret.id, name=secret.name))
        changes.append(Change(_target(secret.app, f"secret:{secret.name}"), "delete",
                              "no service references it (an older value)",
                              (Step(f"remove swarm secret {secret.name}", call),)))
    return changes


def plan_app_service(desired: ServiceConfig, facts: ServiceFacts | None, *, networks: Iterable[str],
                     secrets: Iterable[str]) -> list[Change]:
    """Everything one app needs, in order: its networks and secrets before the service that uses them."""
    return [*plan_network(desired, networks), *plan_secrets(desired, secrets), *plan_service(desired, facts)]
