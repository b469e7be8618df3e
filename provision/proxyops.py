"""The front proxy's effects: its routing state during a deploy, the admin-API calls (run inside the proxy
container through the engine, over the host's one SSH connection) and the drain wait.

Apps roll out in parallel, so every route change goes through one `ProxyState` (a lock around "change the
table, load the whole config"): each load is the complete, current routing, never a patch that could race
another app's switch.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from provision.commands.proxy import (
    ROOT_CA_PATH,
    ProxySettings,
    Route,
    admin_get,
    admin_post,
    caddy_config,
    parse_upstreams,
)
from provision.errors import StepFailed

DeployContext = Any  # provision.appops.DeployContext (which imports this module)

ADMIN_READY_WAIT = 20.0  # a just-started proxy needs a moment before its admin API answers
OUTPUT_CAP = 256 * 1024  # bytes of admin output read back (the config and the upstream list are small)
DRAIN_POLL = 0.25


@dataclass
class ProxyState:
    """The routing table of this deploy, seeded from the apps' labels, changed by switches and prunes."""

    container: str
    settings: ProxySettings
    routes: dict[str, Route] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def current(self) -> ProxySettings:
        return replace(self.settings, routes=tuple(self.routes[a] for a in sorted(self.routes)))


def _exec(ctx: Any, container: str, argv: tuple[str, ...]) -> tuple[int, str]:
    """(exit code, output) of `argv` in `container`; `ctx`: anything with `.docker()` (a deploy context, a
    Remote)."""
    api = ctx.docker().api
    exec_id = api.exec_create(container, list(argv), stdout=True, stderr=True)["Id"]
    out = api.exec_start(exec_id)
    text = (out if isinstance(out, bytes) else b"")[:OUTPUT_CAP].decode("utf-8", "replace")
    code = api.exec_inspect(exec_id).get("ExitCode")
    return (code if isinstance(code, int) else 1), text


def admin(ctx: DeployContext, container: str, argv: tuple[str, ...], *, wait: float = 0.0) -> str:
    """One admin-API call; with `wait`, retried while the API does not answer yet (connection refused)."""
    deadline = time.monotonic() + wait
    while True:
        code, text = _exec(ctx, container, argv)
        if code == 0:
            return text
        refused = code == 7 or "refused" in text.lower()  # curl 7 / wget "Connection refused"
        if not refused or time.monotonic() >= deadline:
            detail = " ".join(text.split())[-400:]
            raise StepFailed(f"the proxy's admin API failed (exit {code}): {detail or 'no output'}")
        time.sleep(0.5)


def load(ctx: DeployContext, state: ProxyState) -> None:
    """Load the whole current routing (caller holds the state's lock)."""
    admin(ctx, state.container, admin_post("/load", caddy_config(state.current())), wait=ADMIN_READY_WAIT)


def _state(ctx: DeployContext) -> ProxyState:
    state = getattr(ctx, "proxy", None)
    if state is None:
        raise StepFailed("no proxy in this deploy (internal: a proxy op without a proxy: section)")
    return state


def route(ctx: DeployContext, *, app: str, domains: tuple[str, ...], upstream: str) -> None:
    """The switch: `app`'s domains go to `upstream`, its previous upstream keeps its counter for the drain."""
    state = _state(ctx)
    with state._lock:
        before = state.routes.get(app)
        draining = tuple(d for d in (*(before.draining if before else ()), *((before.upstream,) if before else ()))
                         if d != upstream)
        state.routes[app] = Route(app, tuple(domains), upstream, draining)
        try:
            load(ctx, state)
        except Exception:
            if before is None:
                del state.routes[app]
            else:
                state.routes[app] = before
            raise
    ctx.log(f"proxy: {', '.join(domains)} -> {upstream}")


def unroute(ctx: DeployContext, *, app: str) -> None:
    state = _state(ctx)
    with state._lock:
        if state.routes.pop(app, None) is not None:
            load(ctx, state)


def sync(ctx: DeployContext, *, force: bool = False, app: str | None = None) -> None:
    """Drop drained upstreams (all, or `app`'s once its drain is over) and load the routing when that changed
    it (`force`: load anyway, e.g. into a just-started proxy whose routes come from the apps' labels). The
    table is what this deploy loaded last, so no read of the proxy's config is needed to compare."""
    state = _state(ctx)
    with state._lock:
        before = state.current()
        state.routes = {a: replace(r, draining=()) if app in (None, a) else r for a, r in state.routes.items()}
        if force or state.current() != before:
            load(ctx, state)


def wait_drained(ctx: DeployContext, upstreams: Iterable[str], label: str, limit: float) -> None:
    """Until none of `upstreams` has a request in flight, or `limit` seconds (then the rest is cut off)."""
    state = _state(ctx)
    wanted = tuple(upstreams)
    if not wanted:
        return
    deadline = time.monotonic() + limit
    with ctx.progress(f"{label}: draining the old container", limit=limit):
        while True:
            busy = {a: n for a, n in parse_upstreams(admin(ctx, state.container, admin_get(
                "/reverse_proxy/upstreams"))).items() if a in wanted and n > 0}
            if not busy:
                return
            if time.monotonic() >= deadline:
                ctx.log(f"{label}: drain of {limit:g}s over with {sum(busy.values())} request(s) still running "
                        "on the old container; they are cut off")
                return
            time.sleep(DRAIN_POLL)


def pull_image(ctx: DeployContext, *, ref: str) -> None:
    repo, _, tag = ref.rpartition(":") if ":" in ref.rsplit("/", 1)[-1] else (ref, "", "latest")
    with ctx.progress(f"pulling {ref} on the host"):
        try:
            ctx.docker().api.pull(repo, tag=tag)
        except Exception as exc:
            raise StepFailed(f"cannot pull {ref} on the host: {exc} (offline hosts: set proxy.image: "
                             "dockyard/caddy:bookworm, built here from Debian's caddy package and shipped)") from None


def root_certificate(remote: Any, container: str) -> str:
    """The PEM of the proxy's local CA (tls: internal), read from inside the proxy container."""
    code, text = _exec(remote, container, ("cat", ROOT_CA_PATH))
    if code != 0 or "BEGIN CERTIFICATE" not in text:
        raise StepFailed("the proxy has no local CA yet (tls: internal issues it on the first deploy with domains)")
    start = text.index("-----BEGIN CERTIFICATE-----")
    end = text.find("-----END CERTIFICATE-----", start)
    if end < 0:
        raise StepFailed("the proxy's root certificate is truncated")
    return text[start:end + len("-----END CERTIFICATE-----")] + "\n"


def upstream_counts(remote: Any, container: str) -> dict[str, int]:
    """For status: the proxy's upstreams and their requests in flight ({} when it does not answer)."""
    try:
        code, text = _exec(remote, container, admin_get("/reverse_proxy/upstreams"))
    except Exception:
        return {}
    return parse_upstreams(text) if code == 0 else {}
