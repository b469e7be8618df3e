"""Pure planning for built apps in swarm mode with a top-level `registry:`: build once, push, let every node pull.

The rule (Kamal's: an app is pushed to the playbook's registry): engine.mode swarm AND a top-level `registry:`
→ each BUILT app (template or dockerfile, never `image:`) is built once (on the first host, or here and shipped
to the first host for `build: local`), tagged `<server>/<project>/<app>:<build-hash-12>` (`registry_ref`: the
local tag with the server in front; the build hash covers the Dockerfile, context and build args, so an
unchanged build gives the same reference run after run), pushed from the first host's engine with the
registry's credentials in the Engine API's auth_config (never an argv, a log line, the recap), and the service
runs `<server>/<project>/<app>@sha256:<digest>` (the pushed manifest's digest, read from the first host's
RepoDigests), created/updated with the same credentials as its X-Registry-Auth header so each node pulls it.
The other hosts get no build and no shipping. Without a top-level registry, or in standalone mode: today's
build/ship on every host, unchanged.

The push is planned when the first host's image under that reference has no digest from the registry (never
pushed from there); an image pushed before is not pushed again, so a no-op deploy stays a no-op (the pin, and
so the service's config hash, is the same).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from provision.changes import Change, Step
from provision.commands.service import pinned_image
from provision.ops import EngineCall, params
from provision.plan.desired import DesiredApp
from provision.registry import RegistryAuth
from provision.spec_registry import ecr_region


def push_auth(pb: Any) -> RegistryAuth | None:
    """The registry built apps are pushed to (with its credentials, by name), or None: no push."""
    if pb.engine.mode != "swarm" or pb.registry is None:
        return None
    spec = pb.registry
    if spec.password_secret is None:  # ECR without user/password (the spec allows only that)
        return RegistryAuth(spec.server, ecr_region=ecr_region(spec.server) or "")
    return RegistryAuth(spec.server, spec.username or "", spec.password_secret)


def registry_ref(server: str, image: str) -> str:
    """`<server>/<project>/<app>:<hash12>` from the local tag `<project>/<app>:<hash12>`."""
    return f"{server.removeprefix('https://').rstrip('/')}/{image}"


def push_pin(ref: str, repo_digests: Sequence[str] | None) -> str:
    """The digest reference the service runs ("" when the first host's image was never pushed there)."""
    return pinned_image(ref, list(repo_digests or ())) if "@" not in ref else ref


def plan_push(desired: DesiredApp, auth: RegistryAuth, repo_digests: Sequence[str] | None) -> list[Change]:
    """`repo_digests`: the first host's image under the registry reference (None: no such image there)."""
    ref = registry_ref(auth.server, desired.image)
    if push_pin(ref, repo_digests):
        return []
    who = f"as {auth.username or 'ECR'} at {auth.server}"
    call = EngineCall("image.push", params(app=desired.name, source=desired.image, ref=ref, auth=auth))
    return [Change(f"app:{desired.name}:push", "push",
                   "not pushed from the first host yet" if repo_digests is None
                   else "the first host's image has no digest from the registry",
                   (Step(f"tag {desired.image} as {ref} and push it from the first host ({who})", call),),
                   after=f"image: {ref}\n", data={"image": ref, "build_hash": desired.build_hash})]
