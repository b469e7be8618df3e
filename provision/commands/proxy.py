"""Pure builders for the front proxy: its names, its `docker create` argv, the Caddy JSON config and the admin
API calls (argv run inside the proxy container through the engine: the admin API is never published).

The config is always loaded whole (`POST /load`): one atomic change, so a switch from an app's old container
to its new one is a single reload. Caddy keeps serving requests already in flight on the old config (up to the
`grace_period`, the longest `drain`), and keeps keep-alive connections working (measured: 0 failed requests
over 6 reloads under load, Caddy 2.6.2).

Draining: Caddy counts in-flight requests per upstream (`GET /reverse_proxy/upstreams`, `num_requests`), but
drops an upstream from that list as soon as no loaded config names it, even while requests to it are still
running. So the switch keeps the old upstream in the config, in a route placed after the catch-all (never
reached by a request): its counter stays visible until the drain ends, then the next load drops it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from provision.commands.docker import LABEL_CONFIG_HASH, LABEL_DOMAINS, LABEL_PORT, LABEL_ROLE, owner_labels

__all__ = ["LABEL_DOMAINS", "LABEL_PORT", "LABEL_ROLE", "ROLE_PROXY"]  # re-exported for the facts
ROLE_PROXY = "proxy"
ADMIN = "http://localhost:2019"  # inside the proxy container's own network namespace only
SERVER = "dockyard"
CATCH_ALL_BODY = "no app answers for this host name\n"


def proxy_name(project: str, environment: str) -> str:
    # '_' cannot occur in app names (spec.NAME_RE), so nothing of an app can take these names
    return f"{project}-{environment}_proxy"


def proxy_labels(project: str, environment: str) -> dict[str, str]:
    return {**owner_labels(project, environment), LABEL_ROLE: ROLE_PROXY}


@dataclass(frozen=True)
class ProxyContainer:
    """Everything that decides the proxy container; its hash (label) decides recreation. Routes are not part
    of it: they change through the admin API without touching the container."""

    project: str
    environment: str
    image: str
    http: tuple[str, int]  # (host ip or "" = all interfaces, host port) → container port 80
    https: tuple[str, int] | None  # → 443; None with tls: off

    @property
    def name(self) -> str:
        return proxy_name(self.project, self.environment)

    @property
    def network(self) -> str:
        return self.name  # its own network, for publishing; it joins each routed app's network too

    @property
    def volumes(self) -> tuple[tuple[str, str], ...]:
        """(volume, mount point): certificates and the ACME account in /data, Caddy's autosaved config in
        /config (so a plain restart resumes the last routes); both survive proxy upgrades."""
        return ((f"{self.name}-data", "/data"), (f"{self.name}-config", "/config"))

    @property
    def config_hash(self) -> str:
        doc = {**asdict(self), "v": 1}
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()

    @property
    def labels(self) -> dict[str, str]:
        return {**proxy_labels(self.project, self.environment), LABEL_CONFIG_HASH: self.config_hash}

    def create_argv(self) -> tuple[str, ...]:
        a: list[str] = ["docker", "create", "--name", self.name]
        for key, value in sorted(self.labels.items()):
            a += ["--label", f"{key}={value}"]
        a += ["--network", self.network, "--restart", "unless-stopped", "--init"]
        for (host_ip, host_port), port in ((self.http, 80), *(((self.https, 443),) if self.https else ())):
            bind = f"[{host_ip}]" if ":" in host_ip else host_ip
            a += ["--publish", f"{bind}:{host_port}:{port}" if host_ip else f"{host_port}:{port}"]
        for volume, target in self.volumes:
            a += ["--mount", f"type=volume,source={volume},target={target}"]
        a += ["--env", "XDG_CONFIG_HOME=/config", "--env", "XDG_DATA_HOME=/data"]
        # it binds 80/443 as root inside its namespace and needs nothing else
        a += ["--cap-drop", "ALL", "--cap-add", "NET_BIND_SERVICE", "--security-opt", "no-new-privileges"]
        # --resume: a restart (docker, the host's boot) comes back with the last loaded routes
        a += [self.image, "caddy", "run", "--resume"]
        return tuple(a)

    def describe(self) -> str:
        ports = [f"http: {_bind(self.http)} -> 80"] + ([f"https: {_bind(self.https)} -> 443"] if self.https else [])
        return "\n".join([f"image: {self.image}", *ports, f"config hash: {self.config_hash[:12]}"]) + "\n"


def _bind(binding: tuple[str, int]) -> str:
    host_ip, port = binding
    return f"{host_ip or '0.0.0.0'}:{port}"


@dataclass(frozen=True)
class Route:
    app: str
    domains: tuple[str, ...]
    upstream: str  # "container-name:port" (resolved by the engine's DNS on the app's network)
    draining: tuple[str, ...] = ()  # old upstreams kept visible (never routed to) until their requests end


@dataclass(frozen=True)
class ProxySettings:
    tls: str  # auto | internal | off
    email: str | None = None
    grace: float = 30.0  # seconds Caddy lets requests of a replaced config run (the longest drain)
    routes: tuple[Route, ...] = field(default=())


def _duration(seconds: float) -> str:
    return f"{max(round(seconds * 1000), 1)}ms"


def caddy_config(settings: ProxySettings) -> dict[str, Any]:
    """The whole Caddy config for these routes. Its server carries `@id` = a digest of the routing that
    matters, so the facts can tell whether the loaded config is the desired one without comparing JSON that
    Caddy re-encodes."""
    routes = sorted(settings.routes, key=lambda r: r.app)
    live: list[dict[str, Any]] = [
        {"match": [{"host": list(r.domains)}],
         "handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": r.upstream}]}],
         "terminal": True}
        for r in routes
    ]
    live.append({"handle": [{"handler": "static_response", "status_code": 404, "body": CATCH_ALL_BODY}],
                 "terminal": True})
    # after the terminal catch-all: never reached, only keeps the old upstreams' request counters alive
    live += [{"handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": d} for d in r.draining]}]}
             for r in routes if r.draining]
    tls_on = settings.tls != "off"
    server: dict[str, Any] = {"@id": routing_id(settings), "listen": [":443" if tls_on else ":80"],
                              "routes": live}
    if not tls_on:
        server["automatic_https"] = {"disable": True}
    config: dict[str, Any] = {
        "admin": {"listen": "localhost:2019"},
        "apps": {"http": {"http_port": 80, "https_port": 443, "grace_period": _duration(settings.grace),
                          "servers": {SERVER: server}}},
    }
    domains = sorted({d for r in routes for d in r.domains})
    if tls_on and domains:
        issuer = ({"module": "internal"} if settings.tls == "internal"
                  else {"module": "acme", **({"email": settings.email} if settings.email else {})})
        config["apps"]["tls"] = {"automation": {"policies": [{"subjects": domains, "issuers": [issuer]}]}}
    if settings.tls == "internal":
        # the local CA's root stays in the proxy (`dockyard proxy-ca` prints it); never into a trust store
        config["apps"]["pki"] = {"certificate_authorities": {"local": {"install_trust": False}}}
    return config


def routing_id(settings: ProxySettings) -> str:
    doc = {"tls": settings.tls, "email": settings.email, "grace": settings.grace,
           "routes": sorted((r.app, r.domains, r.upstream, r.draining) for r in settings.routes)}
    return "dockyard-" + hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def describe_routes(routes: Iterable[Route]) -> str:
    """One line per route, for --diff (no draining entries: they are transient)."""
    lines = [f"{', '.join(r.domains)} -> {r.app} ({r.upstream})" for r in sorted(routes, key=lambda r: r.app)]
    return "".join(line + "\n" for line in lines) or "(no routes)\n"


# --- the admin API, from inside the container --------------------------------------------------------------

# curl (dockyard/caddy:bookworm) or busybox wget (the official alpine-based caddy:2): GET, or POST of a JSON
# body given as an argument. No value is ever interpolated into the script: the path and body are "$1"/"$2".
_ADMIN_SCRIPT = (
    'u="' + ADMIN + '$1"; '
    'if command -v curl >/dev/null 2>&1; then '
    'if [ "$#" -gt 1 ]; then exec curl -sS --fail-with-body -H "Content-Type: application/json" '
    '--data-binary "$2" "$u"; else exec curl -sS --fail-with-body "$u"; fi; '
    'else if [ "$#" -gt 1 ]; then exec wget -q -O - --header "Content-Type: application/json" '
    '--post-data "$2" "$u"; else exec wget -q -O - "$u"; fi; fi'
)


def admin_get(path: str) -> tuple[str, ...]:
    return ("sh", "-c", _ADMIN_SCRIPT, "sh", path)


def admin_post(path: str, body: Mapping[str, Any]) -> tuple[str, ...]:
    return ("sh", "-c", _ADMIN_SCRIPT, "sh", path, json.dumps(body, sort_keys=True, separators=(",", ":")))


ROOT_CA_PATH = "/data/caddy/pki/authorities/local/root.crt"


def parse_upstreams(raw: str) -> dict[str, int]:
    """`GET /reverse_proxy/upstreams` → {dial address: requests in flight}; anything unexpected → {}."""
    try:
        doc = json.loads(raw)
    except ValueError:
        return {}
    out: dict[str, int] = {}
    if isinstance(doc, list):
        for item in doc[:1000]:
            if isinstance(item, dict) and isinstance(item.get("address"), str):
                n = item.get("num_requests")
                out[item["address"]] = n if isinstance(n, int) else 0
    return out


def loaded_routing_id(raw: str) -> str | None:
    """The `@id` of dockyard's server in `GET /config/` output, or None (no config, another config)."""
    try:
        doc = json.loads(raw)
        server = doc["apps"]["http"]["servers"][SERVER]
    except (ValueError, KeyError, TypeError):
        return None
    value = server.get("@id") if isinstance(server, dict) else None
    return value if isinstance(value, str) else None
