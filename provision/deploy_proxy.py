"""Deploy's front-proxy stage: read what the proxy needs beyond the app facts (is its image on the host, which
routing is loaded), seed the routing table from the apps' labels, then apply the proxy plan
(provision.plan.proxy) before any app rolls out.
"""

from __future__ import annotations

import contextlib
from typing import Any

from provision.commands.proxy import admin_get, loaded_routing_id
from provision.errors import api_status
from provision.facts.apps import AppFacts
from provision.plan.proxy import DesiredProxy, plan_proxy, seed_routes
from provision.proxyops import ProxyState, admin


def _image_on_host(ctx: Any, ref: str) -> bool:
    try:
        ctx.docker().api.inspect_image(ref)
        return True
    except Exception as exc:
        if api_status(exc) == 404:
            return False
        raise


def _loaded_routing(ctx: Any, facts: AppFacts) -> str | None:
    if facts.proxy is None or not facts.proxy.running:
        return None
    with contextlib.suppress(Exception):  # a proxy that does not answer gets its routes loaded again
        return loaded_routing_id(admin(ctx, facts.proxy.name, admin_get("/config/"), wait=5.0))
    return None


def front_proxy(ctx: Any, runner: Any, desired: DesiredProxy, facts: AppFacts, *, check: bool) -> bool:
    """Ensure the proxy and its routes; False when reading the facts failed (the runner has the error)."""
    image = desired.container.image
    found: dict[str, Any] = {}
    with runner.guard("gather proxy facts"):
        found["image"] = _image_on_host(ctx, image)
        found["routing"] = _loaded_routing(ctx, facts)
        if desired.ships and not found["image"] and not check:
            # deferred: the sandbox module (docker SDK, debootstrap) loads only on this path
            from provision.sandbox import ensure_base_images

            ensure_base_images(ctx.local_docker(), ["caddy"], ctx.log)
    if "routing" not in found:
        return False
    routes = seed_routes(facts)
    ctx.proxy = ProxyState(desired.container.name, desired.settings, dict(routes))
    runner.run_task("front proxy", plan_proxy(desired, facts, image_on_host=found["image"],
                                              loaded_routing=found["routing"], routes=routes))
    return True
