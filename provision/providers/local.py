"""The `local` provider: the "instance" is a container on the local Docker engine, behaving like a fresh VM.

    ensure_host(playbook, *, check=False, resize=False, reporter=None) -> HostInfo
    find_host(playbook) -> HostInfo | None
    destroy_host(playbook, *, check=False, reporter=None) -> list[Change]

The sandbox is found by its labels (`dockyard.project`, `dockyard.environment`, `dockyard.role=sandbox-host`),
never by a state file; its SSH port and the apps' published ports are 127.0.0.1 ports chosen free at create
time and kept in its labels (`provision.commands.sandbox`). Its image and the example's base images are built
locally (`provision.sandbox`). The engine inside is installed later by `setup`, over SSH, as on EC2.

SSH: the user is the playbook's `ssh.user` (the example says `dockyard`, the image's sudo user); the key is
`ssh.key_file`, or a per-environment ed25519 key generated at `<playbook dir>/.dockyard/<env>/id_ed25519`.
The sandbox's host key is read through the local engine and pinned in the playbook's known_hosts file (no
trust-on-first-use needed; a re-created sandbox on a reused port does not trip the changed-key check).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from provision.changes import Change, Status, Step
from provision.commands.sandbox import (
    BIND_ADDRESS,
    DOCKER_VOLUME_TARGET,
    Found,
    SandboxParams,
    container_name,
    label_filters,
    missing_ports,
    read_labels,
    volume_name,
    wanted_ports,
)
from provision.errors import InputError, StepFailed
from provision.hostkeys import forget_host_keys, known_hosts_name
from provision.ops import EngineCall, Op, params
from provision.providers.hostinfo import HostInfo
from provision.report import Reporter
from provision.runner import Runner
from provision.sandbox import (
    RECIPE_LABEL,
    base_files,
    base_names,
    base_ref,
    ca_certs,
    ensure_base_images,
    ensure_sandbox_image,
    recipe_hash,
    referenced_bases,
    sandbox_files,
)
from provision.sandbox.keys import ensure_key, pin_host_key
from provision.ssh_wait import wait_for_ssh

__all__ = ["destroy_host", "ensure_host", "ensure_key", "find_host", "pin_host_key"]

SSH_WAIT = 120.0


# ------------------------------------------------------------------------------------------------- pure


def default_key_file(pb: Any) -> Path:
    return pb.base_dir / ".dockyard" / pb.environment / "id_ed25519"


def local_key_file(pb: Any) -> Path:
    """`ssh.key_file` when given, else the per-environment key dockyard generates."""
    return pb.key_file if pb.ssh.key_file is not None else default_key_file(pb)


def may_generate_key(pb: Any) -> bool:
    """Only dockyard's own per-environment key is ever generated (never one at a path the user chose)."""
    return local_key_file(pb).resolve() == default_key_file(pb).resolve()


def publish_ports(pb: Any) -> tuple[int, ...]:
    """The sandbox's ports mapped to 127.0.0.1: the apps' `publish` ports and the front proxy's."""
    proxy = tuple(b.host_port for b in pb.proxy.bindings) if getattr(pb, "proxy", None) is not None else ()
    return wanted_ports((*(app.publish.host_port for app in pb.apps.values() if app.publish is not None), *proxy))


def app_urls(pb: Any, published: Mapping[int, int]) -> dict[str, str]:
    """app → the URL to open on this machine (its `publish` port inside the sandbox, mapped to 127.0.0.1)."""
    urls = {}
    for name, app in pb.apps.items():
        if app.publish is not None and app.publish.host_port in published:
            urls[name] = f"http://{BIND_ADDRESS}:{published[app.publish.host_port]}/"
    return urls


def plan_sandbox(found: Found | None, desired: SandboxParams, *, resize: bool
                 ) -> tuple[list[Change], list[str]]:
    """(changes, warnings) that make the sandbox container exist and run. Pure.

    `desired` carries the ports to use if a container must be created; a found container keeps its own.
    """
    name, warnings = desired.name, []
    sandbox = desired.op_params()
    start = Step(f"start container {name}", EngineCall("container.start", params(id=name)))
    create = (
        Step(f"create volume {desired.volume} on {DOCKER_VOLUME_TARGET}", EngineCall("volume.create", sandbox)),
        Step(f"create container {name} ({desired.image}, ssh 127.0.0.1:{desired.ssh_port})",
             EngineCall("container.create", sandbox)),
        start,
    )
    data = {"ssh_port": desired.ssh_port, "ports": dict(desired.ports), "image": desired.image}
    if found is None:
        return [Change("local:sandbox", "create", "absent", create, data=data)], warnings
    missing = missing_ports(desired.ports, found.ports)
    if found.image and found.image != desired.image:
        warnings.append(f"sandbox {name} runs {found.image}; `recreate` to move it to {desired.image}")
    if missing:
        what = ", ".join(map(str, missing))
        if not resize:
            warnings.append(f"sandbox {name} does not map port(s) {what} of the playbook's apps; not "
                            "applied: re-run with --resize (re-creates the container, keeping its engine "
                            "volume)")
        else:
            steps = (Step(f"remove container {name} (its volume stays)",
                          EngineCall("container.remove", params(id=found.container_id))), *create)
            return [Change("local:sandbox", "replace", f"port(s) {what} not mapped", steps,
                           before=_ports_text(found.ports), after=_ports_text(desired.ports), data=data)
                    ], warnings
    if found.state == "running":
        return [], warnings
    return [Change("local:sandbox", "start", f"container is {found.state}",
                   (start,))], warnings


def _ports_text(ports: Mapping[int, int]) -> str:
    return "".join(f"{inner} -> 127.0.0.1:{outer}\n" for inner, outer in sorted(ports.items()))


def desired_params(pb: Any, found: Found | None, image: str, public_key: str, free: Iterable[int]
                   ) -> SandboxParams:
    """The container to create: a found one's ports are kept, new ports come from `free` (pure)."""
    free = iter(free)
    mapped = dict(found.ports) if found else {}
    ports = {p: mapped.get(p) or next(free) for p in publish_ports(pb)}
    ssh_port = (found.ssh_port if found and found.ssh_port else None) or next(free)
    return SandboxParams(project=pb.project, environment=pb.environment, image=image, ssh_port=ssh_port,
                         ssh_user=pb.ssh_user, authorized_key=public_key, ports=ports)


def host_info(pb: Any, found: Found | None, key_file: Path, via: str | None = None) -> HostInfo:
    if found is None:
        return HostInfo(provider="local", host_id="", state="absent", ssh_address=BIND_ADDRESS, ssh_port=0,
                        ssh_user=pb.ssh_user, data={"key_file": str(key_file)})
    data: dict[str, Any] = {"container": container_name(pb.project, pb.environment),
                            "volume": volume_name(pb.project, pb.environment), "image": found.image,
                            "key_file": str(key_file), "urls": app_urls(pb, found.ports)}
    if via:
        data["image_built_from"] = via
    return HostInfo(provider="local", host_id=found.container_id, state=found.state, ssh_address=BIND_ADDRESS,
                    ssh_port=found.ssh_port or 0, ssh_user=found.ssh_user or pb.ssh_user,
                    public_address=BIND_ADDRESS, private_address=None, published=dict(found.ports), data=data)


# -------------------------------------------------------------------------------------- the executor


def docker_client() -> Any:
    # deferred: docker, requests load only when this path runs
    import docker

    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except Exception as exc:  # any failure means "no usable local engine"
        raise StepFailed(f"provider local needs a Docker engine on this machine: {exc}") from None
    return client


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports on 127.0.0.1 (held open together so they differ)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind((BIND_ADDRESS, 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def lookup(client: Any, project: str, environment: str) -> Found | None:
    found = client.containers.list(all=True, filters={"label": label_filters(project, environment)})
    if len(found) > 1:
        names = ", ".join(c.name for c in found)
        raise StepFailed(f"more than one sandbox container for {project}/{environment}: {names}; remove the "
                         "extra ones with `teardown`")
    if not found:
        return None
    c = found[0]
    return read_labels(c.id, c.status, c.labels or {})


@dataclass
class LocalContext:
    """The local engine executor: carries out the sandbox plan's EngineCall ops (`execute`)."""

    client: Any
    say: Any = None  # where image builds report progress

    def execute(self, op: Op) -> None:
        p = dict(op.params) if isinstance(op, EngineCall) else {}
        if isinstance(op, EngineCall) and op.op in ("volume.create", "container.create"):
            sandbox = SandboxParams(**{**p, "ports": {int(k): v for k, v in p["ports"]}})
            return self.create_volume(sandbox) if op.op == "volume.create" else self.create_container(sandbox)
        if isinstance(op, EngineCall) and op.op == "image.build":
            return self.build(p["what"], p.get("names", ()), self.say)
        handlers = {"container.start": self.start, "container.remove": self.remove_container,
                    "volume.remove": self.remove_volume}
        if not isinstance(op, EngineCall) or op.op not in handlers:
            raise TypeError(f"the local engine executor does not run {op!r}")
        return handlers[op.op](p.get("id") or p["name"])

    def create_volume(self, p: SandboxParams) -> None:
        # deferred: docker, requests load only when this path runs
        import docker

        try:
            self.client.volumes.get(p.volume)
        except docker.errors.NotFound:
            body = p.volume_body()
            self.client.volumes.create(name=body["Name"], labels=body["Labels"])

    def create_container(self, p: SandboxParams) -> None:
        body = p.create_body()
        self.client.api.create_container(
            image=body["Image"], name=p.name, hostname=body["Hostname"], labels=body["Labels"],
            environment=body["Env"], ports=[int(k.split("/")[0]) for k in body["ExposedPorts"]],
            host_config=body["HostConfig"])

    def start(self, name: str) -> None:
        # deferred: docker, requests load only when this path runs
        import docker

        try:
            self.client.containers.get(name).start()
        except docker.errors.APIError as exc:
            busy = "address already in use" in str(exc)
            hint = " (another program took the port: `recreate` picks new ones)" if busy else ""
            raise StepFailed(f"cannot start {name}: {exc.explanation or exc}{hint}") from None

    def remove_container(self, container_id: str) -> None:
        # deferred: docker, requests load only when this path runs
        import docker

        with contextlib.suppress(docker.errors.NotFound):
            self.client.containers.get(container_id).remove(force=True, v=False)

    def remove_volume(self, name: str) -> None:
        # deferred: docker, requests load only when this path runs
        import docker

        with contextlib.suppress(docker.errors.NotFound):
            self.client.volumes.get(name).remove(force=True)

    def build(self, what: str, names: tuple[str, ...], say: Any) -> None:
        if what == "sandbox":
            ensure_sandbox_image(self.client, say)
        else:
            ensure_base_images(self.client, names, say)


# ------------------------------------------------------------------------------------------------ flows


def _reporter(reporter: Any) -> Any:
    if reporter is not None:
        return reporter
    return Reporter()


def _check_provider(pb: Any) -> None:
    if pb.provider != "local":
        raise InputError.single(f"provider is {pb.provider!r}, not local", file=pb.source,
                                key_path="provider")


def _image_changes(client: Any, pb: Any) -> tuple[str, list[Change]]:
    certs = ca_certs()
    sandbox_ref = f"dockyard/sandbox:{recipe_hash(sandbox_files(certs))}"
    changes = []
    if not _has(client, sandbox_ref, recipe_hash(sandbox_files(certs)), RECIPE_LABEL):
        changes.append(Change("local:sandbox-image", "build", "absent",
                              (Step(f"build {sandbox_ref}", EngineCall("image.build", params(what="sandbox"))),)))
    values = [pb.vars, *(a.vars for a in pb.apps.values()), *(a.build_args for a in pb.apps.values())]
    wanted = referenced_bases(values, base_names())
    todo = tuple(n for n in wanted if not _has(client, base_ref(n), recipe_hash(base_files(n, certs)),
                                               RECIPE_LABEL))
    if todo:
        refs = ", ".join(base_ref(n) for n in todo)
        changes.append(Change("local:base-images", "build", "absent", (
            Step(f"build {refs}", EngineCall("image.build", params(what="bases", names=todo))),)))
    return sandbox_ref, changes


def _has(client: Any, ref: str, recipe: str, label: str) -> bool:
    # deferred: docker, requests load only when this path runs
    import docker

    try:
        return (client.images.get(ref).labels or {}).get(label) == recipe
    except docker.errors.ImageNotFound:
        return False


def ensure_host(pb: Any, *, check: bool = False, resize: bool = False, reporter: Any = None,
                client: Any = None, make_runner: Callable[..., Runner] = Runner,
                ssh_timeout: float = SSH_WAIT) -> HostInfo:
    """Create or start the sandbox container for (project, environment) and wait until SSH answers."""
    _check_provider(pb)
    reporter = _reporter(reporter)
    client = client or docker_client()
    key_file = local_key_file(pb)
    if check and not key_file.exists():
        public_key = "ssh-ed25519 (generated at apply time)"
    else:
        public_key = ensure_key(key_file, generate=may_generate_key(pb))
    runner = make_runner(f"{pb.project}-{pb.environment}", LocalContext(client, reporter.info), check=check,
                         reporter=reporter)
    sandbox_ref, image_changes = _image_changes(client, pb)
    for change in image_changes:
        result = runner.run_task(change.target.replace("local:", "local "), [change])
        if result.status is Status.FAILED:
            raise StepFailed(f"{change.target}: {result.message}")
    found = lookup(client, pb.project, pb.environment)
    desired = desired_params(pb, found, sandbox_ref, public_key, free_ports(len(publish_ports(pb)) + 1))
    changes, warnings = plan_sandbox(found, desired, resize=resize)
    for warning in warnings:
        reporter.warn(warning)
    result = runner.run_task("local sandbox", changes)
    if result.status is Status.FAILED:
        raise StepFailed(f"local sandbox: {result.message}")
    if check:
        return host_info(pb, found, key_file) if found else replace(
            host_info(pb, None, key_file), published=dict(desired.ports), ssh_port=desired.ssh_port)
    found = lookup(client, pb.project, pb.environment)
    if found is None or found.ssh_port is None:
        raise StepFailed(f"the sandbox container {desired.name} is gone or has no SSH port label")
    with reporter.progress(f"waiting for SSH on 127.0.0.1:{found.ssh_port}") as bar:
        wait_for_ssh(BIND_ADDRESS, found.ssh_port, timeout=ssh_timeout, interval=0.5, connect_timeout=5.0,
                     what=f"sandbox {desired.name}", progress=bar.update)
    pin_host_key(client, found.container_id, pb.known_hosts_file, found.ssh_port)
    # the apps' URLs are not printed here: nothing answers on them before deploy (`up` prints them after it)
    return host_info(pb, found, key_file)


def find_host(pb: Any, *, client: Any = None) -> HostInfo | None:
    _check_provider(pb)
    found = lookup(client or docker_client(), pb.project, pb.environment)
    return host_info(pb, found, local_key_file(pb)) if found else None


def plan_teardown(container_ids: list[str], volumes: list[str], name: str) -> list[Change]:
    """Remove the sandbox container(s), then its volume(s): only objects carrying its labels (pure)."""
    changes = []
    if container_ids:
        changes.append(Change("local:sandbox", "delete", "teardown", tuple(
            Step(f"remove container {name} ({cid[:12]})",
                 EngineCall("container.remove", params(id=cid)))
            for cid in container_ids)))
    if volumes:
        changes.append(Change("local:volume", "delete", "teardown", tuple(
            Step(f"remove volume {v}", EngineCall("volume.remove", params(name=v))) for v in volumes)))
    return changes


def destroy_host(pb: Any, *, check: bool = False, reporter: Any = None, client: Any = None,
                 make_runner: Callable[..., Runner] = Runner) -> list[Change]:
    """Remove the sandbox container and its volumes (found by labels). Idempotent."""
    _check_provider(pb)
    reporter = _reporter(reporter)
    client = client or docker_client()
    filters = {"label": label_filters(pb.project, pb.environment)}
    containers = client.containers.list(all=True, filters=filters)
    ports = [read_labels(c.id, c.status, c.labels or {}).ssh_port for c in containers]
    volumes = [v.name for v in client.volumes.list(filters=filters)]
    changes = plan_teardown([c.id for c in containers], volumes, container_name(pb.project, pb.environment))
    runner = make_runner(f"{pb.project}-{pb.environment}", LocalContext(client), check=check, reporter=reporter)
    result = runner.run_task("local sandbox (teardown)", changes)
    if result.status is Status.FAILED:
        raise StepFailed(f"local sandbox: {result.message}")
    if not check:
        forget_host_keys(pb.known_hosts_file, [known_hosts_name(BIND_ADDRESS, p) for p in ports if p])
    return changes
