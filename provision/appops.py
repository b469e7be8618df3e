"""The Engine API executor: carries out the app plan's ops (provision.ops) over the host's one SSH connection.

`DeployContext.execute(op)` dispatches: an `EngineCall` to its handler here (one thin Docker SDK call each; the
local-engine ones, `image.build` with where=local and `image.ship`, use this machine's engine), a
`Wait("container.healthy")` to `wait_healthy`, a `Guarded` roll-out to `run_guarded` (it runs the plan's ops, and
on a failure the plan's undo ops, then raises one line), everything else to the SSH executor. Handlers decide
nothing the plan could have decided.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from provision.channels import ConnectionLost, is_connection_loss
from provision.commands.docker import LABEL_BUILD_HASH, env_file_content
from provision.errors import StepFailed, api_status
from provision.exec_ssh import SshExecutor
from provision.imageops import pull_image, push_image
from provision.ops import ENGINE_OPS, EngineCall, FrozenMap, Guarded, Op, SecretFile, Wait, thaw
from provision.progress import human_bytes
from provision.proxyops import ProxyState, route, sync, unroute, wait_drained
from provision.secrets import make_redactor
from provision.serviceops import SERVICE_HANDLERS, wait_converged, wait_rolled_back
from provision.ship import send

if TYPE_CHECKING:
    from provision.build import BuildContext, BuildSource
    from provision.commands.docker import Health

BUILD_TAIL = 25  # build log lines shown when a build fails
LOG_TAIL = 20  # container log lines shown when a new container never becomes healthy
POLL = 0.5


@dataclass
class DeployContext:
    """What app steps run against: the host's Remote (SSH + Docker SDK) and the reporter."""

    remote: Any  # provision.remote.Remote
    reporter: Any = None
    secrets: Any = None  # provision.secrets.SecretSource: env files and redaction read values from it
    verbose: bool = False
    host: str = ""
    built: list[str] = field(default_factory=list)  # tags built in this run (for reports and tests)
    proxy: ProxyState | None = None  # the front proxy's routing table (playbooks with `proxy:`)
    _local: Any = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def run(self, argv: Any, *, sudo: bool = False, stdin: bytes | None = None) -> Any:
        return self.remote.run(argv, sudo=sudo, stdin=stdin)

    def execute(self, op: Op) -> Any:
        if isinstance(op, EngineCall):
            return ENGINE_HANDLERS[op.op](self, **{k: thaw_param(v) for k, v in op.params})
        if isinstance(op, Wait) and op.probe == "container.healthy":
            return wait_healthy(self, op.get("container"), op.get("health"), op.get("label"), op.timeout)
        if isinstance(op, Wait) and op.probe == "proxy.drained":
            return wait_drained(self, op.get("upstreams"), op.get("label"), op.timeout)
        if isinstance(op, Wait) and op.probe == "service.converged":
            return wait_converged(self, timeout=op.timeout, **{k: v for k, v in op.params})
        if isinstance(op, Wait) and op.probe == "service.rolled_back":
            return wait_rolled_back(self, timeout=op.timeout, **{k: v for k, v in op.params})
        if isinstance(op, Guarded):
            return run_guarded(self, op)
        return SshExecutor(self.remote, secret_file=self.secret_file).execute(op)

    def secret_file(self, wanted: SecretFile) -> bytes:
        if self.secrets is None:
            raise StepFailed(f"no secret source for {', '.join(wanted.names)}")
        return env_file_content({name: self.secrets.value(name) for name in wanted.names})

    def redactor(self, names: Iterable[str]) -> Callable[[str], str]:
        names = tuple(names)
        if not names or self.secrets is None:
            return str
        return make_redactor(self.secrets.value(n) for n in names)

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


# --- images ------------------------------------------------------------------------------------------------


def build_image(
    ctx: DeployContext,
    *,
    app: str,
    source: BuildSource,
    tag: str,
    labels: Mapping[str, str],
    where: str = "host",
    redact: tuple[str, ...] = (),
) -> str:
    """Send the context as a tar and build it on the host (where=local: with this machine's engine), streaming
    the log (shown with -v)."""
    api = ctx.local_docker().api if where == "local" else _api(ctx)
    return _build(ctx, api, app=app, context=source.context, tag=tag, labels=labels,
                  redact=ctx.redactor(redact), where="locally" if where == "local" else "on the host")


def ship_images(ctx: DeployContext, *, refs: tuple[str, ...], app: str | None = None) -> None:
    """Images this machine has and the host lacks (a `build: local` image, bases a sandbox cannot pull) go
    over SSH (docker save | docker load)."""
    what = f"{app}: shipping {', '.join(refs)} to the host" if app else f"shipping {', '.join(refs)} to the host"
    with ctx.progress(what) as progress:
        send(ctx.local_docker(), ctx.remote, list(refs), say=ctx.log, on_sent=_bytes_sent(progress, what))


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


def remove_image(ctx: DeployContext, *, image_id: str, tags: Iterable[str]) -> None:
    api = _api(ctx)
    refs = list(tags) or [image_id]
    for ref in refs:
        try:
            api.remove_image(ref)
        except Exception as exc:
            if api_status(exc) == 404:
                continue
            if api_status(exc) == 409:  # in use by a container (of another environment, say): keep it
                ctx.log(f"kept image {ref}: {exc}")
                return
            raise


# --- networks and volumes ----------------------------------------------------------------------------------


def ensure_network(ctx: DeployContext, *, name: str, labels: Mapping[str, str], driver: str = "bridge") -> None:
    api = _api(ctx)
    if api.networks(names=[name], filters={"label": [f"{k}={v}" for k, v in labels.items()]}):
        return
    try:
        api.create_network(name, driver=driver, labels=dict(labels), check_duplicate=True)
    except Exception as exc:
        if api_status(exc) != 409:
            raise


def remove_network(ctx: DeployContext, *, id: str) -> None:
    try:
        _api(ctx).remove_network(id)
    except Exception as exc:
        if api_status(exc) != 404:
            raise


def ensure_volume(ctx: DeployContext, *, name: str, labels: Mapping[str, str]) -> None:
    _api(ctx).create_volume(name, labels=dict(labels))  # idempotent on the engine


def remove_volume(ctx: DeployContext, *, name: str) -> None:
    try:
        _api(ctx).remove_volume(name)
    except Exception as exc:
        if api_status(exc) != 404:
            raise


# --- containers --------------------------------------------------------------------------------------------


def remove_container(ctx: DeployContext, *, id: str, ignore_errors: bool = False,
                     stop_timeout: int = 10) -> None:
    api = _api(ctx)
    try:
        with contextlib.suppress(Exception):
            api.stop(id, timeout=stop_timeout)
        api.remove_container(id, force=True)
    except Exception as exc:
        if not ignore_errors and api_status(exc) != 404:
            raise


def rename_container(ctx: DeployContext, *, id: str, name: str) -> None:
    _api(ctx).rename(id, name)


def connect_container(ctx: DeployContext, *, container: str, network: str, aliases: Iterable[str]) -> None:
    _api(ctx).connect_container_to_network(container, network, aliases=list(aliases))


def stop_container(ctx: DeployContext, *, id: str, timeout: int = 10) -> None:
    _api(ctx).stop(id, timeout=timeout)


def start_container(ctx: DeployContext, *, id: str) -> None:
    _api(ctx).start(id)


def run_once(ctx: DeployContext, *, argv: tuple[str, ...], label: str, name: str,
             redact: tuple[str, ...] = ()) -> None:
    """A one-off container (`docker run --rm`, the release command): its exit code decides; on failure the
    (redacted) tail of its output is the message. A leftover of an interrupted run is removed first."""
    remove_container(ctx, id=name, ignore_errors=True)
    with ctx.progress(f"{label}: running the release command"):
        result = ctx.remote.run(argv, check=False, timeout=3600)
    if result.exit_code != 0:
        clean = ctx.redactor(redact)
        output = "\n".join(clean((result.stdout or "") + (result.stderr or "")).rstrip().splitlines()[-LOG_TAIL:])
        raise StepFailed(f"{label}: the release command failed (exit {result.exit_code}); the new release was "
                         "not started, the old one keeps serving" + (f"\nlast output lines:\n{output}" if output
                                                                      else ""))


def container_logs(ctx: DeployContext, container_id: str, lines: int = LOG_TAIL) -> str:
    try:
        raw = _api(ctx).logs(container_id, stdout=True, stderr=True, tail=lines)
    except Exception as exc:  # the logs are a courtesy; the failure is what matters
        return f"(no logs: {exc})"
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def wait_healthy(ctx: DeployContext, container_id: str, health: Health | None, label: str, limit: float) -> None:
    """Until the engine says healthy (or, without a health check, the container keeps running `limit`s). With
    `health` None the container's own state decides whether it has a check (a rollback starts a stopped
    release whose check the plan does not know)."""
    api = _api(ctx)
    started = time.monotonic()
    deadline = started + limit
    waiting = f"{label}: waiting for the health check" if health is not None else f"{label}: checking it keeps running"
    with ctx.progress(waiting, limit=limit):
        while True:
            state = api.inspect_container(container_id)["State"]
            status = state.get("Status")
            if status in ("exited", "dead") or (status == "restarting"):
                raise StepFailed(f"{label}: the new container stopped (exit code {state.get('ExitCode')})")
            if health is None and not state.get("Health"):
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


def run_guarded(ctx: DeployContext, guarded: Guarded) -> None:
    """The plan's ops in order; if one fails: the log tail of `logs_of`, the plan's undo ops (their errors
    ignored: the first failure is what matters), one message naming both."""
    try:
        for op in guarded.ops:
            ctx.execute(op)
    except Exception as exc:
        redact = ctx.redactor(guarded.redact)
        logs = redact(container_logs(ctx, guarded.logs_of)).rstrip() if guarded.logs_of else ""
        for op in guarded.on_failure:
            with contextlib.suppress(Exception):
                ctx.execute(op)
        reason = str(exc) if isinstance(exc, StepFailed) else f"{type(exc).__name__}: {exc}"
        if "docker-init" in reason:  # containers run with --init: the engine's tini is missing
            reason += " (the engine has no docker-init: install the tini package, or Docker's docker-ce)"
        message = redact(reason) + (f"; {guarded.note}" if guarded.note else "")
        if logs:
            message += f"\nlast log lines of {guarded.logs_of}:\n{logs}"
        raise StepFailed(message) from None


def thaw_param(value: Any) -> Any:
    """Frozen maps (labels) back to dicts for the SDK; other values (tuples, frozen dataclasses) as they are."""
    return thaw(value) if isinstance(value, FrozenMap) else value


ENGINE_HANDLERS: dict[str, Callable[..., Any]] = {
    "network.create": ensure_network, "network.remove": remove_network,
    "volume.create": ensure_volume, "volume.remove": remove_volume,
    "image.build": build_image, "image.remove": remove_image, "image.ship": ship_images,
    "container.remove": remove_container, "container.rename": rename_container,
    "container.connect": connect_container, "container.stop": stop_container, "container.start": start_container,
    "container.logs": lambda ctx, *, id, lines=LOG_TAIL: container_logs(ctx, id, lines),
    "image.pull": lambda ctx, **kw: pull_image(ctx, ship=ship_images, **kw),  # ship: an image app's fallback
    "image.push": push_image,
    "proxy.route": route, "proxy.unroute": unroute, "proxy.sync": sync,
    "container.run_once": run_once,
    **SERVICE_HANDLERS,
}
assert set(ENGINE_HANDLERS) == ENGINE_OPS - {"container.create"}  # an app's container: `docker create` (Argv)
