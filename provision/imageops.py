"""The `image.pull` op's executor: an image pulled by the host's engine over the SSH-tunnelled Engine API,
with registry credentials in the API's auth_config (the X-Registry-Auth header, never an argv or a file);
when the host cannot pull and the plan allows it (`fallback="ship"`), the image comes from this machine's
engine instead (docker save | docker load, `ship`: the `image.ship` op's handler, given by appops), and the
output says so.

Without an `app` the op is the front proxy's (provision.proxyops.pull_image).

`image.push` (swarm mode with a registry, provision.plan.push): the first host's engine tags the built image
with the registry reference and pushes it, the credentials again only in the API's auth_config.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from provision.errors import StepFailed
from provision.proxyops import pull_image as pull_proxy_image
from provision.registry import RegistryAuth, auth_config
from provision.secrets import make_redactor

DeployContext = Any  # provision.appops.DeployContext (which imports this module)
REASON_TAIL = 300


def follow_stream(chunks: Iterable[Any], progress: Any, doing: str) -> None:
    """An engine pull or push stream, to its end: its error fails the step, its status lines show as progress."""
    for chunk in chunks:
        if isinstance(chunk, dict) and chunk.get("error"):
            raise StepFailed(str(chunk["error"]))
        status = chunk.get("status") if isinstance(chunk, dict) else None
        if status:
            progress.update(f"{doing}: {str(status)[:80]}")


def pull_image(ctx: DeployContext, *, ref: str, app: str | None = None, auth: RegistryAuth | None = None,
               fallback: str = "", ship: Callable[..., None] | None = None) -> None:
    if app is None:
        pull_proxy_image(ctx, ref=ref)
        return
    config, hidden = auth_config(auth, registry_secret_value(ctx))
    redact = make_redactor(hidden) if hidden else str
    try:
        with ctx.progress(f"{app}: pulling {ref} on the host") as progress:
            follow_stream(ctx.docker().api.pull(ref, stream=True, decode=True, auth_config=config), progress,
                          f"{app}: pulling {ref}")
    except Exception as exc:
        reason = redact(_one_line(exc))
        if fallback != "ship":
            raise StepFailed(f"{app}: cannot pull {ref} on the host: {reason}") from None
        if not _local_has(ctx, ref):
            raise StepFailed(f"{app}: cannot pull {ref} on the host ({reason}), and this machine's engine does "
                             f"not have it to ship either (docker pull it here, or fix the host's access)") from None
        _say(ctx, f"{app}: the host cannot pull {ref} ({reason}); shipping it from this machine's engine instead")
        if ship is None:
            raise StepFailed(f"{app}: cannot pull {ref} on the host ({reason}) and nothing can ship it") from None
        ship(ctx, refs=(ref,), app=app)


def push_image(ctx: DeployContext, *, app: str, source: str, ref: str, auth: RegistryAuth | None = None) -> None:
    config, hidden = auth_config(auth, registry_secret_value(ctx))
    redact = make_redactor(hidden) if hidden else str
    repository, _, tag = ref.rpartition(":")
    api = ctx.docker().api
    try:
        api.tag(source, repository, tag)
        with ctx.progress(f"{app}: pushing {ref} from the host") as progress:
            # an explicit (maybe empty) auth_config: the SDK never sends this machine's own credentials
            follow_stream(api.push(repository, tag=tag, stream=True, decode=True, auth_config=config), progress,
                          f"{app}: pushing {ref}")
    except Exception as exc:
        raise StepFailed(f"{app}: cannot push {ref} from the host: {redact(_one_line(exc))}") from None


def registry_secret_value(ctx: DeployContext) -> Callable[[str], str]:
    def value(name: str) -> str:
        if ctx.secrets is None:
            raise StepFailed(f"no secret source for the registry password ({name})")
        return str(ctx.secrets.value(name))
    return value


def _local_has(ctx: DeployContext, ref: str) -> bool:
    try:
        ctx.local_docker().images.get(ref)
    except Exception:  # no engine here, or no such image: nothing to ship
        return False
    return True


def _say(ctx: DeployContext, message: str) -> None:
    reporter = getattr(ctx, "reporter", None)
    if reporter is not None and hasattr(reporter, "warn"):
        reporter.warn(message)
    else:
        ctx.log(message)


def _one_line(exc: Exception) -> str:
    text = " ".join(str(getattr(exc, "explanation", None) or exc).split())
    return text if len(text) <= REASON_TAIL else text[:REASON_TAIL] + "…"
