"""Deploy's part for image apps (`image: redis:7.2`): their desired container (no render, no build context),
the image ids the host and this machine hold (one SSH round trip; this machine's engine only for images
that are shipped), and the image task, after which the container's config hash is complete (it covers the
image id, see provision.plan.images).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from provision import ship
from provision.commands.docker import container_config, volume_name
from provision.errors import StepFailed
from provision.plan.apps import DesiredApp
from provision.plan.images import PulledImage, image_id_after, plan_pull, pulled_image
from provision.plan.push import push_auth
from provision.registry import auth_for, secret_names
from provision.spec import Playbook


def registry_secrets(playbook: Playbook, names: Iterable[str]) -> dict[str, str]:
    """{secret name: key path} of the registry passwords the image apps among `names` need."""
    out: dict[str, str] = {}
    names = list(names)
    if any(playbook.apps[n].image is None for n in names):  # built apps are pushed in swarm mode with a registry
        for secret in secret_names(push_auth(playbook)):
            out[secret] = "registry.password_secret"
    for name in names:
        app = playbook.apps[name]
        if app.image is None:
            continue
        for secret in secret_names(auth_for(app.image, app.registry, playbook.registry)):
            where = "registry" if app.registry is None else f"apps.{name}.registry"
            out.setdefault(secret, f"{where}.password_secret")
    return out


def desired_image_app(playbook: Playbook, name: str, secret_digests: dict[str, str], ssh_user: str
                      ) -> DesiredApp:
    """An image app's desired state; the container's `build_hash` (the image id) is filled by `image_task`.
    It runs as the image's own user; its root filesystem is writable unless `read_only: true`."""
    app = playbook.apps[name]
    assert app.image is not None
    read_only = bool(app.read_only)
    cfg = container_config(playbook.project, playbook.environment, name, app, image=app.image, build_hash="",
                           secret_digests=secret_digests, ssh_user=ssh_user, read_only=read_only,
                           tmpfs=("/tmp",))
    pulled = pulled_image(app.image, app.pull, auth_for(app.image, app.registry, playbook.registry),
                          provider=playbook.provider)
    volumes = tuple((volume_name(playbook.project, playbook.environment, name, v), v) for v in sorted(app.volumes))
    return DesiredApp(name, app.image, None, replace(cfg, pulled=True), volumes, drain=app.drain, pulled=pulled)


def image_ids(ctx: Any, desired: Iterable[DesiredApp]) -> tuple[dict[str, str], dict[str, str]]:
    """(host ids, this machine's ids) of the image apps' references: the host's in one SSH round trip; this
    machine's only for the images that are shipped (absent references are left out)."""
    pulled = [d.pulled for d in desired if d.pulled is not None]
    refs = list(dict.fromkeys(p.ref for p in pulled))
    host = ship.remote_ids(ctx.remote, refs) if refs else {}
    shipped = list(dict.fromkeys(p.ref for p in pulled if p.ship))
    return host, local_image_ids(ctx, shipped) if shipped else {}


def local_image_ids(ctx: Any, refs: list[str]) -> dict[str, str]:
    client = ctx.local_docker()
    out: dict[str, str] = {}
    for ref in refs:
        try:
            out[ref] = client.images.get(ref).id
        except Exception:  # not here: the plan ships nothing, or says the image is missing everywhere
            continue
    return out


def image_task(runner: Any, ctx: Any, d: DesiredApp, host_ids: dict[str, str], local_ids: dict[str, str]
               ) -> DesiredApp:
    """Run the app's image task (pull / ship / nothing), then give its container the image id it runs."""
    want: PulledImage = d.pulled  # type: ignore[assignment]
    host_id, local_id = host_ids.get(want.ref), local_ids.get(want.ref)
    if want.ship and host_id is None and local_id is None:
        with runner.guard(f"app {d.name}: image"):
            raise StepFailed(f"{want.ref}: neither the host nor this machine's engine has it, and the host cannot "
                             "pull it (provider local or pull: never): docker pull or build it here first")
        return d
    changes = plan_pull(d.name, want, host_id, local_id)
    runner.run_task(f"app {d.name}: image", changes)
    image_id = image_id_after(want, changes, host_id, local_id, check=runner.check)
    if image_id is None and not runner.failed:
        with runner.guard(f"app {d.name}: image id"):
            image_id = ship.remote_ids(ctx.remote, [want.ref]).get(want.ref)
            if image_id is None:
                raise StepFailed(f"{want.ref} is not on the host after the pull")
    return with_image_id(d, image_id or "")


def with_image_id(d: DesiredApp, image_id: str) -> DesiredApp:
    return replace(d, container=replace(d.container, build_hash=image_id))
