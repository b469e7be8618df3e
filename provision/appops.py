"""The effects behind the app plan's Steps: thin calls to the Docker SDK / docker CLI over the host's one SSH
connection. Each takes the runner's context (a `DeployContext`) first; plan/apps.py binds the rest.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from provision.channels import ConnectionLost, is_connection_loss
from provision.commands.docker import LABEL_BUILD_HASH
from provision.errors import StepFailed
from provision.progress import human_bytes
from provision.ship import ship

if TYPE_CHECKING:
    from provision.build import BuildContext
    from provision.commands.docker import ContainerConfig, Health
    from provision.facts.apps import ContainerFact

BUILD_TAIL = 25  # build log lines shown when a build fails
LOG_TAIL = 20  # container log lines shown when a new container never becomes healthy
NO_HEALTHCHECK_SETTLE = 2.0  # without a health check: still running this long after start = up
POLL = 0.5


@dataclass
class DeployContext:
    """What app steps run against: the host's Remote (SSH + Docker SDK) and the reporter."""

    remote: Any  # provision.remote.Remote
    reporter: Any = None
    verbose: bool = False
    host: str = ""
    built: list[str] = field(default_factory=list)  # tags built in this run (for reports and tests)
    _local: Any = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def run(self, argv: Any, *, sudo: bool = False, stdin: bytes | None = None) -> Any:
        return self.remote.run(argv, sudo=sudo, stdin=stdin)

    def docker(self) -> Any:
        return self.remote.docker()

    def local_docker(self) -> Any:
        """This machine's engine (builds with `build: local`, base images shipped to a sandbox host)."""
        with self._lock:
            if self._local is None:
                # deferred: docker, requests load only when this path runs
                import docker

                try:
                    self._local = docker.from_env(timeout=600)
                    self._local.ping()
                except Exception as exc:
                    self._local = None
                    raise StepFailed(f"no usable Docker engine on this machine: {exc}") from None
            return self._local

    def log(self, line: str) -> None:
        if self.reporter is not None:
            self.reporter.log(line)

    @contextlib.contextmanager
    def progress(self, message: str, *, limit: float | None = None) -> Iterator[Any]:
        """A line of the reporter's live region (each parallel app has its own); `.update(text)` changes it."""
        if self.reporter is None:
            yield _NoProgress()
            return
        with self.reporter.progress(message, limit=limit) as p:
            yield p


class _NoProgress:
    def update(self, text: str) -> None:
        pass


def _api(ctx: DeployContext) -> Any:
    return ctx.docker().api


def _status(exc: Exception) -> int | None:
    return getattr(getattr(exc, "response", None), "status_code", None)


# --- images ------------------------------------------------------------------------------------------------


def build_image(
    ctx: DeployContext,
    *,
    app: str,
    context: BuildContext,
    tag: str,
    labels: Mapping[str, str],
    redact: Callable[[str], str] = str,
) -> str:
    """Send the context as a tar and build it on the host, streaming the log (shown with -v)."""
    return _build(ctx, _api(ctx), app=app, context=context, tag=tag, labels=labels, redact=redact)


def build_local_and_ship(
    ctx: DeployContext,
    *,
    app: str,
    context: BuildContext,
    tag: str,
    labels: Mapping[str, str],
    redact: Callable[[str], str] = str,
) -> str:
    """`build: local`: build with this machine's engine, then stream the image to the host (docker save|load)."""
    image_id = _build(
        ctx, ctx.local_docker().api, app=app, context=context, tag=tag, labels=labels, redact=redact, where="locally"
    )
    what = f"{app}: shipping {tag} to the host"
    with ctx.progress(what) as progress:
        ship(ctx.local_docker(), ctx.remote, [tag], say=ctx.log, on_sent=_bytes_sent(progress, what))
    return image_id


def ship_images(ctx: DeployContext, *, refs: tuple[str, ...]) -> None:
    """Base images the host's engine cannot pull (a sandbox without a registry) go over SSH."""
    what = f"shipping {', '.join(refs)} to the host"
    with ctx.progress(what) as progress:
        ship(ctx.local_docker(), ctx.remote, list(refs), say=ctx.log, on_sent=_bytes_sent(progress, what))


def _bytes_sent(progress: Any, what: str) -> Callable[[int], None]:
    return lambda sent: progress.update(f"{what}: {human_bytes(sent)} sent")


def _build(
    ctx: DeployContext,
    api: Any,
    *,
    app: str,
    context: BuildContext,
    tag: str,
    labels: Mapping[str, str],
    redact: Callable[[str], str],
    where: str = "on the host",
) -> str:
    tail: deque[str] = deque(maxlen=BUILD_TAIL)
    image_id = ""
    all_labels = {**labels, LABEL_BUILD_HASH: context.content_hash}
    with ctx.progress(f"{app}: building {tag} {where}") as progress, context.tar() as fileobj:
        try:
            stream = api.build(
                fileobj=fileobj,
                custom_context=True,
                tag=tag,
                dockerfile=context.dockerfile_path,
                buildargs=dict(context.build_args),
                labels=all_labels,
                rm=True,
                forcerm=True,
                pull=False,
                decode=True,
            )
            for chunk in stream:
                if "error" in chunk:
                    detail = chunk.get("error", "").strip()
                    log = "\n".join(redact(line) for line in tail)
                    raise StepFailed(f"build of {tag} failed: {redact(detail)}" + (f"\n{log}" if log else ""))
                text = chunk.get("stream") or ""
                for line in text.splitlines():
                    if line.strip():
                        tail.append(line)
                        ctx.log(f"[{app}] {redact(line)}")
                        if line.startswith("Step "):  # "Step 3/9 : RUN …": redacted like the log line
                            progress.update(f"{app}: {redact(line)[:100]}")
                aux = chunk.get("aux") or {}
                image_id = aux.get("ID", image_id)
        except StepFailed:
            raise
        except Exception as exc:  # APIError, connection trouble (the runner reconnects and retries once)
            lost = ConnectionLost if is_connection_loss(exc) else StepFailed
            raise lost(f"build of {tag} failed: {redact(_why(exc))}") from None
    ctx.built.append(tag)
    return image_id


def _why(exc: Exception) -> str:
    """One readable line; a connection cut mid-stream (urllib3/requests/paramiko/socket) says so."""
    detail = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & {"ProtocolError", "ConnectionError", "ChunkedEncodingError", "SSHException", "EOFError"}:
        return f"the connection to the host was lost ({detail})"
    return str(exc)


def remove_image(ctx: DeployContext, *, image_id: str, tags: tuple[str, ...]) -> None:
    api = _api(ctx)
    refs = list(tags) or [image_id]
    for ref in refs:
        try:
            api.remove_image(ref)
        except Exception as exc:
            if _status(exc) == 404:
                continue
            if _status(exc) == 409:  # in use by a container (of another environment, say): keep it
                ctx.log(f"kept image {ref}: {exc}")
                return
            raise


# --- networks and volumes ----------------------------------------------------------------------------------


def ensure_network(ctx: DeployContext, *, name: str, labels: Mapping[str, str]) -> None:
    api = _api(ctx)
    if api.networks(names=[name], filters={"label": [f"{k}={v}" for k, v in labels.items()]}):
        return
    try:
        api.create_network(name, driver="bridge", labels=dict(labels), check_duplicate=True)
    except Exception as exc:
        if _status(exc) != 409:
            raise


def remove_network(ctx: DeployContext, *, network_id: str) -> None:
    try:
        _api(ctx).remove_network(network_id)
    except Exception as exc:
        if _status(exc) != 404:
            raise


def ensure_volume(ctx: DeployContext, *, name: str, labels: Mapping[str, str]) -> None:
    _api(ctx).create_volume(name, labels=dict(labels))  # idempotent on the engine


def remove_volume(ctx: DeployContext, *, name: str) -> None:
    try:
        _api(ctx).remove_volume(name)
    except Exception as exc:
        if _status(exc) != 404:
            raise


# --- containers --------------------------------------------------------------------------------------------


def upload_env_file(ctx: DeployContext, *, path: str, content: Callable[[], bytes]) -> None:
    directory = path.rsplit("/", 1)[0]
    ctx.remote.run(["mkdir", "-p", "-m", "700", directory])
    ctx.remote.run(["chmod", "700", directory])
    ctx.remote.put_file(path, content(), mode=0o600)


def remove_container(ctx: DeployContext, *, container_id: str, stop_timeout: int = 10) -> None:
    api = _api(ctx)
    try:
        with contextlib.suppress(Exception):
            api.stop(container_id, timeout=stop_timeout)
        api.remove_container(container_id, force=True)
    except Exception as exc:
        if _status(exc) != 404:
            raise


def container_logs(ctx: DeployContext, container_id: str, lines: int = LOG_TAIL) -> str:
    try:
        raw = _api(ctx).logs(container_id, stdout=True, stderr=True, tail=lines)
    except Exception as exc:  # the logs are a courtesy; the failure is what matters
        return f"(no logs: {exc})"
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def wait_healthy(ctx: DeployContext, container_id: str, health: Health | None, label: str) -> None:
    """Until the engine says healthy (or, without a health check, the container keeps running briefly)."""
    api = _api(ctx)
    limit = health.wait if health is not None else NO_HEALTHCHECK_SETTLE
    started = time.monotonic()
    deadline = started + limit
    waiting = f"{label}: waiting for the health check" if health is not None else f"{label}: checking it keeps running"
    with ctx.progress(waiting, limit=limit):
        while True:
            state = api.inspect_container(container_id)["State"]
            status = state.get("Status")
            if status in ("exited", "dead") or (status == "restarting"):
                raise StepFailed(f"{label}: the new container stopped (exit code {state.get('ExitCode')})")
            if health is None:
                if time.monotonic() >= deadline:
                    return
            else:
                h = (state.get("Health") or {}).get("Status")
                if h == "healthy":
                    return
                if h == "unhealthy":
                    raise StepFailed(f"{label}: the new container is unhealthy{_last_probe(state)}")
                if time.monotonic() >= deadline:
                    raise StepFailed(
                        f"{label}: the new container was not healthy within {limit:g}s{_last_probe(state)}"
                    )
            time.sleep(POLL)


def _last_probe(state: Mapping[str, Any]) -> str:
    log = (state.get("Health") or {}).get("Log") or []
    if not log:
        return ""
    last = log[-1]
    output = " ".join(str(last.get("Output", "")).split())[-300:]
    return f" (last health check: exit {last.get('ExitCode')}" + (f", {output}" if output else "") + ")"


def roll_out(
    ctx: DeployContext,
    *,
    config: ContainerConfig,
    old: tuple[ContainerFact, ...],
    stop_first: tuple[str, ...],
    redact: Callable[[str], str] = str,
) -> None:
    """Start the new container; once healthy remove the old ones. If it never gets healthy: remove it, keep
    (restart, when they had to stop for the port) the old ones, show its last log lines, fail."""
    api = _api(ctx)
    label = f"{config.app}"
    for o in old:
        if o.name == config.name:  # same config, running but unhealthy: keep it aside under another name
            api.rename(o.id, f"{o.name}-prev-{int(time.time())}")
    with contextlib.suppress(Exception):  # a leftover of an interrupted run with the same name
        api.remove_container(config.name, force=True)
    result = ctx.remote.run(list(config.create_argv()))
    new_id = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else config.name
    stopped: list[str] = []
    try:
        for network in config.extra_networks:
            api.connect_container_to_network(new_id, network, aliases=[config.app])
        for cid in stop_first:
            api.stop(cid, timeout=10)
            stopped.append(cid)
        api.start(new_id)
        wait_healthy(ctx, new_id, config.health, label)
    except Exception as exc:
        logs = redact(container_logs(ctx, new_id)).rstrip()
        with contextlib.suppress(Exception):
            api.remove_container(new_id, force=True)
        restarted = []
        for cid in stopped:
            with contextlib.suppress(Exception):
                api.start(cid)
                restarted.append(cid)
        kept = ", ".join(o.name for o in old) or "none"
        reason = str(exc) if isinstance(exc, StepFailed) else f"{type(exc).__name__}: {exc}"
        if "docker-init" in reason:  # containers run with --init: the engine's tini is missing
            reason += " (the engine has no docker-init: install the tini package, or Docker's docker-ce)"
        message = f"{redact(reason)}; removed it, kept the old container ({kept})"
        if logs:
            message += f"\nlast log lines of {config.name}:\n{logs}"
        raise StepFailed(message) from None
    for o in old:
        remove_container(ctx, container_id=o.id)
