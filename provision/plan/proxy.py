"""Pure planning for the front proxy: (desired proxy, observed facts) -> Changes. Never touches the network.

In the order deploy applies them, before the apps roll out:
- image: on the host already, else pulled there (`caddy:2`) or, for `dockyard/caddy:bookworm` (offline hosts,
  the sandbox), built on this machine from Debian's caddy package and shipped like the base images;
- network and volumes: its own network (to publish 80/443) and two volumes (/data: certificates and the ACME
  account; /config: Caddy's autosaved config), labelled, never removed with the container;
- container: config-hash label equal and running → ok; otherwise replaced (a short gap on 80/443: the ports
  belong to one container at a time), then joined to every routed app's network and given the routes rebuilt
  from the apps' labels — so an upgrade or a restart never loses a route;
- routes: when the loaded config is not the one the labels describe (drift, an interrupted switch), reloaded.

An app's own switch (health-gated, then one atomic reload, then the drain) is planned with its container in
provision.plan.apps.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from provision.changes import Change, Step
from provision.commands.docker import network_name
from provision.commands.proxy import (
    ProxyContainer,
    ProxySettings,
    Route,
    describe_routes,
    proxy_labels,
    routing_id,
)
from provision.facts.apps import AppFacts
from provision.ops import Argv, EngineCall, params
from provision.spec_proxy import DEBIAN_IMAGE


@dataclass(frozen=True)
class DesiredProxy:
    container: ProxyContainer
    settings: ProxySettings  # without routes: those come from the hosts' labels and the switches
    networks: tuple[str, ...]  # every routed app's network (the proxy joins them all)

    @property
    def ships(self) -> bool:
        """Built on this machine and shipped, rather than pulled by the host."""
        return self.container.image == DEBIAN_IMAGE


def desired_proxy(pb: object) -> DesiredProxy | None:
    proxy = getattr(pb, "proxy", None)
    if proxy is None:
        return None
    project, env = pb.project, pb.environment  # type: ignore[attr-defined]
    apps = pb.apps  # type: ignore[attr-defined]
    https = (proxy.https.host_ip, proxy.https.host_port) if proxy.tls != "off" else None
    container = ProxyContainer(project, env, proxy.image_for(pb.provider),  # type: ignore[attr-defined]
                               (proxy.http.host_ip, proxy.http.host_port), https)
    drains = [a.drain for a in apps.values() if a.domains]
    settings = ProxySettings(tls=proxy.tls, email=proxy.email, grace=max(drains, default=30.0))
    networks = tuple(network_name(project, env, n) for n in sorted(apps) if apps[n].domains)
    return DesiredProxy(container, settings, networks)


def seed_routes(facts: AppFacts) -> dict[str, Route]:
    """The routing the host's labels describe: each app's live container (provision.facts.apps)."""
    out: dict[str, Route] = {}
    for app in sorted(facts.apps_seen):
        live = facts.live_container(app)
        if live is not None and live.upstream:
            out[app] = Route(app, live.domains, live.upstream)
    return out


def plan_proxy(
    desired: DesiredProxy,
    facts: AppFacts,
    *,
    image_on_host: bool,
    loaded_routing: str | None,
    routes: Mapping[str, Route],
) -> list[Change]:
    c = desired.container
    changes: list[Change] = []
    if not image_on_host:
        if desired.ships:
            step = Step(f"ship {c.image} to the host (docker save | docker load)",
                        EngineCall("image.ship", params(refs=(c.image,))))
        else:
            step = Step(f"pull {c.image} on the host", EngineCall("image.pull", params(ref=c.image)))
        changes.append(Change("proxy:image", "ship" if desired.ships else "pull", "not on the host", (step,),
                              data={"image": c.image}))
    labels = proxy_labels(c.project, c.environment)
    setup: list[Step] = []
    if not facts.proxy_network:
        setup.append(Step(f"create network {c.network}", EngineCall("network.create", params(
            name=c.network, labels=labels))))
    for volume, _target in c.volumes:
        if volume not in facts.proxy_volumes:
            setup.append(Step(f"create volume {volume}", EngineCall("volume.create", params(
                name=volume, labels=labels))))
    if setup:
        changes.append(Change("proxy:storage", "create", "absent", tuple(setup)))

    current = facts.proxy
    settings = ProxySettings(desired.settings.tls, desired.settings.email, desired.settings.grace,
                             tuple(routes[a] for a in sorted(routes)))
    after = c.describe() + describe_routes(routes.values())
    if current is None or current.config_hash != c.config_hash or not current.running:
        steps: list[Step] = []
        if current is not None:
            steps.append(Step(f"remove the old proxy container {current.name} ({current.state})",
                              EngineCall("container.remove", params(id=current.id))))
        steps.append(Step(f"create {c.name} from {c.image}", Argv(c.create_argv())))
        steps += [Step(f"join network {n}", EngineCall("container.connect", params(
            container=c.name, network=n, aliases=()))) for n in desired.networks]
        steps.append(Step(f"start {c.name}", EngineCall("container.start", params(id=c.name))))
        steps.append(Step("load the routes rebuilt from the apps' labels",
                          EngineCall("proxy.sync", params(force=True))))
        if current is None:
            action, reason = "create", "absent"
        elif current.config_hash != c.config_hash:
            action, reason = "replace", f"config hash differs ({current.config_hash[:12]} → {c.config_hash[:12]})"
        else:
            action, reason = "replace", f"not running ({current.state})"
        changes.append(Change("proxy:container", action, reason, tuple(steps), before=None if current is None
                              else "(the previous proxy)\n", after=after, data={"container": c.name}))
        return changes

    joins = [n for n in desired.networks if n not in current.networks]
    if joins:
        steps = tuple(Step(f"join network {n}", EngineCall("container.connect", params(
            container=current.name, network=n, aliases=()))) for n in joins)
        changes.append(Change("proxy:networks", "update", "routed apps' networks not joined", steps,
                              data={"networks": joins}))
    if loaded_routing != routing_id(settings):
        changes.append(Change("proxy:routes", "update", "the loaded routes differ from the apps' labels",
                              (Step("load the routes rebuilt from the apps' labels",
                                    EngineCall("proxy.sync", params(force=True))),),
                              before="(what the proxy had loaded)\n" if loaded_routing else None,
                              after=describe_routes(routes.values())))
    return changes


def route_switch(app: str, domains: Iterable[str], upstream: str) -> EngineCall:
    return EngineCall("proxy.route", params(app=app, domains=tuple(domains), upstream=upstream))


def plan_proxy_removal(facts: AppFacts) -> list[Change]:
    """`deploy --prune` of a playbook without `proxy:`: the proxy container and network go; its volumes (the
    certificates, the ACME account) stay."""
    if facts.proxy is None:
        return []
    steps = [Step(f"remove the proxy container {facts.proxy.name}",
                  EngineCall("container.remove", params(id=facts.proxy.id)))]
    if facts.proxy_network:
        steps.append(Step(f"remove network {facts.proxy.name}", EngineCall("network.remove", params(
            id=facts.proxy.name))))
    return [Change("proxy:container", "delete", "the playbook has no proxy: section", tuple(steps),
                   before="proxy\n", after=None)]
