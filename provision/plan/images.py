"""Pure planning for image apps (`image: redis:7.2`): get the image onto the host, never build it.

When dockyard fetches the image (decided here, from what the host and this machine hold):
- the host cannot pull (`provider: local`, the sandbox; or the app's `pull: never`): ship it from this
  machine's engine (docker save | docker load) when the host lacks it or holds another image under that name;
- `pull: missing` (the default): pull on the host only when the reference is absent there: a moved tag
  (`redis:7.2` re-pushed) is NOT fetched again until `pull: always` or a digest reference says so;
- `pull: always`: pull on every deploy (a no-op for the engine when the registry's image is the same).
A pull that fails (an offline host) falls back to shipping the image from this machine's engine when it has
it; the output says so.

The container's config hash covers the reference AND the image id found on the host after this step (the
`dockyard.build-hash` label of an image app holds that id): a tag that moved to a new image replaces the
container on that deploy; the same id changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from provision.changes import Change, Step
from provision.ops import EngineCall, params
from provision.registry import RegistryAuth

PullPolicy = Literal["missing", "always", "never"]
PENDING_ID = "pending-pull"  # check mode, image not on the host yet: the id the pull will bring is unknown


@dataclass(frozen=True)
class PulledImage:
    """The desired image of an image app (no secret in it: `auth` names the password's secret)."""

    ref: str
    pull: PullPolicy = "missing"
    auth: RegistryAuth | None = None
    ship: bool = False  # the host cannot pull (provider local, pull: never): ship it from this machine


def pulled_image(ref: str, pull: PullPolicy | None, auth: RegistryAuth | None, *, provider: str) -> PulledImage:
    policy: PullPolicy = pull or "missing"
    return PulledImage(ref, policy, auth, ship=provider == "local" or policy == "never")


def plan_pull(app: str, want: PulledImage, host_id: str | None, local_id: str | None) -> list[Change]:
    """`host_id`/`local_id`: the image id the reference names on the host / on this machine (None: absent;
    `local_id` is only looked up for images that are shipped)."""
    target = f"app:{app}:image"
    data = {"image": want.ref, "pull": want.pull}
    if want.ship:
        if local_id is None and host_id is not None:
            return []  # the host has it and this machine has nothing else to send
        if local_id is not None and local_id == host_id:
            return []
        why = "absent on the host" if host_id is None else f"the host's is {host_id[7:19]}, this machine's " \
                                                           f"{(local_id or '')[7:19]}"
        step = Step(f"ship {want.ref} from this machine's engine to the host (docker save | docker load)",
                    EngineCall("image.ship", params(app=app, refs=(want.ref,))))
        return [Change(target, "ship", why, (step,), after=f"image: {want.ref}\n", data=data)]
    if want.pull == "missing" and host_id is not None:
        return []
    reason = "absent on the host" if host_id is None else "pull: always"
    auth = f" (as {want.auth.username or 'ECR'} at {want.auth.server})" if want.auth is not None else ""
    step = Step(f"pull {want.ref} on the host{auth}; if the host cannot, ship it from this machine's engine",
                EngineCall("image.pull", params(app=app, ref=want.ref, auth=want.auth, fallback="ship")))
    return [Change(target, "pull", reason, (step,), after=f"image: {want.ref}\n", data=data)]


def image_id_after(want: PulledImage, changes: list[Change], host_id: str | None, local_id: str | None,
                   *, check: bool) -> str | None:
    """The id the container will run, known without asking the host again: None means "read the host after
    the pull" (a pull brings whatever the registry has)."""
    if not changes:
        return host_id if host_id is not None else local_id
    if want.ship:
        return local_id  # `send` checks the host holds exactly this id afterwards
    if check:
        return host_id or PENDING_ID  # a pull of an absent image: its id is unknown until it runs
    return None
