"""Pure builders for an app's Docker objects: names, labels, the `docker create` argv (the health probe: in
provision.commands.health).

The container is created with the docker CLI on the host (`docker create … --env-file PATH …`, one SSH exec)
because that is the only way to hand the engine an env file without the values passing through dockyard's
argv: the Docker API has no env-file field. What that means, honestly: the engine stores the secret values in
the container's `Config.Env`, so `docker inspect` shows them to whoever may talk to the engine on the host
(root-equivalent anyway) — exactly as `docker run --env-file` does. They are never in the image (no build arg,
no layer: `docker history` is clean), nor in the argv dockyard runs or prints, the labels, the config hash
(which covers a digest of them), `--diff`, the recap or the logs.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from provision.commands.health import Health, health_for, http_probe
from provision.spec import AppSpec

__all__ = ["Health", "health_for", "http_probe"]  # the health probe's builders live in commands.health

LABEL_PROJECT = "dockyard.project"
LABEL_ENVIRONMENT = "dockyard.environment"
LABEL_APP = "dockyard.app"
LABEL_CONFIG_HASH = "dockyard.config-hash"
LABEL_BUILD_HASH = "dockyard.build-hash"
LABEL_VOLUME = "dockyard.volume"
LABEL_CONFIG = "dockyard.config"  # the secret-free describe() text: the "before" of the next --diff
LABEL_ROLE = "dockyard.role"  # "proxy": the front proxy's objects; "candidate": a published app's trial run
LABEL_DOMAINS = "dockyard.domains"  # on an app's container: the host names routed to it (comma-separated)
LABEL_PORT = "dockyard.port"  # on an app's container: the port the proxy sends requests to
LABEL_IMAGE = "dockyard.image"  # on an image app's container: the reference it runs (status shows it)
ROLE_CANDIDATE = "candidate"
ROLE_RELEASE = "release"  # the one-off container of a release command
LABEL_RELEASE = "dockyard.release"  # the release id (git short SHA[-dirty] or content hash) a container runs


def scope(project: str, environment: str) -> str:
    return f"{project}-{environment}"


def network_name(project: str, environment: str, app: str) -> str:
    return f"{project}-{environment}-{app}"


def volume_name(project: str, environment: str, app: str, volume: str) -> str:
    return f"{project}-{environment}-{app}-{volume}"


def container_name(project: str, environment: str, app: str, config_hash: str) -> str:
    # the hash in the name lets the new container run beside the old one while it proves healthy
    return f"{project}-{environment}-{app}-{config_hash[:10]}"


def owner_labels(project: str, environment: str, app: str | None = None) -> dict[str, str]:
    labels = {LABEL_PROJECT: project, LABEL_ENVIRONMENT: environment}
    if app is not None:
        labels[LABEL_APP] = app
    return labels


def label_filters(project: str, environment: str, app: str | None = None) -> list[str]:
    return [f"{k}={v}" for k, v in owner_labels(project, environment, app).items()]


def env_file_path(user: str, project: str, environment: str, app: str) -> str:
    """Where an app's secrets env file lives on the host (0600, in a 0700 directory).

    root: /var/lib/dockyard/…; another user: ~/.dockyard/… written relative (SFTP and SSH commands start in
    the home directory), so no sudo is needed to write it nor for the docker CLI to read it.
    """
    base = "/var/lib/dockyard" if user == "root" else ".dockyard"
    return f"{base}/{scope(project, environment)}/{app}.env"


def env_file_content(values: Mapping[str, str]) -> bytes:
    """docker's env-file format: one NAME=value per line, taken literally (no quotes, no expansion)."""
    lines = []
    for name in sorted(values):
        value = values[name]
        if "\n" in value or "\r" in value or "\0" in value:
            # an env file cannot carry a newline; the caller validates before anything is touched
            raise ValueError(f"secret {name} contains a newline, which an env file cannot carry")
        lines.append(f"{name}={value}\n")
    return "".join(lines).encode()


# Characters str.splitlines() (and so the --diff) breaks a line on, plus the other controls.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def one_line(value: str) -> str:
    """`value` unchanged, or as a JSON string ("a\\nb") when it holds a newline or another control
    character."""
    return json.dumps(value) if _CONTROL.search(value) else value


def _dur(seconds: float) -> str:
    ms = round(seconds * 1000)
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


# --- the container -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ContainerConfig:
    """Everything that decides a container; its hash (the `dockyard.config-hash` label) decides recreation."""

    project: str
    environment: str
    app: str
    image: str  # <project>/<app>:<hash12>
    build_hash: str
    command: tuple[str, ...] | None = None
    env: tuple[tuple[str, str], ...] = ()
    secrets: tuple[str, ...] = ()  # names only
    secret_digests: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # name → digest (not value)
    env_file: str | None = None  # remote path, set when there are secrets
    port: int | None = None
    publish: tuple[str, int] | None = None  # (host_ip or "" for all interfaces, host port)
    volumes: tuple[tuple[str, str], ...] = ()  # (volume name, container path)
    memory: int | None = None
    cpus: float | None = None
    restart: str = "unless-stopped"
    health: Health | None = None
    read_only: bool = False
    tmpfs: tuple[str, ...] = ()
    network: str = ""
    extra_networks: tuple[str, ...] = ()  # networks of the apps this one may reach
    security_opt: tuple[str, ...] = ("no-new-privileges",)
    domains: tuple[str, ...] = ()  # host names the front proxy routes to it (first: the health check's Host)
    release_command: tuple[str, ...] = ()  # run once per new release before the switch (not in the container)
    release: str = ""  # the release id: a label, NOT in the config hash (a new commit alone changes nothing)
    pulled: bool = False  # an image app: `image` is its reference, `build_hash` the image id found on the host

    def _canonical(self) -> str:
        doc = asdict(self)
        del doc["release"]
        doc.pop("pulled")  # implied by image + build_hash (an id); left out so built apps keep their hashes
        doc["v"] = 1
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), default=list)

    @property
    def config_hash(self) -> str:
        return hashlib.sha256(self._canonical().encode()).hexdigest()

    @property
    def name(self) -> str:
        return container_name(self.project, self.environment, self.app, self.config_hash)

    @property
    def labels(self) -> dict[str, str]:
        labels = owner_labels(self.project, self.environment, self.app)
        labels[LABEL_CONFIG_HASH] = self.config_hash
        labels[LABEL_BUILD_HASH] = self.build_hash
        labels[LABEL_CONFIG] = self.describe()
        if self.release:
            labels[LABEL_RELEASE] = self.release
        if self.pulled:
            labels[LABEL_IMAGE] = self.image
        if self.domains and self.port is not None:
            labels[LABEL_DOMAINS] = ",".join(self.domains)
            labels[LABEL_PORT] = str(self.port)
        return labels

    @property
    def upstream(self) -> str | None:
        """Where the proxy sends this container's requests (its name resolves on the app's network)."""
        return f"{self.name}:{self.port}" if self.domains and self.port is not None else None

    @property
    def candidate_name(self) -> str:
        return f"{self.name}-candidate"

    def create_argv(self, *, candidate: bool = False) -> tuple[str, ...]:
        """`docker create …`: no secret value in it (secrets come from the env file). A candidate is the same
        container without its published port or network alias, labelled as such: a trial run that proves the
        version healthy before it may take the port (see plan.apps.roll_out_published)."""
        a: list[str] = ["docker", "create", "--name", self.candidate_name if candidate else self.name]
        labels = {**self.labels, **({LABEL_ROLE: ROLE_CANDIDATE} if candidate else {})}
        for key, value in sorted(labels.items()):
            a += ["--label", f"{key}={value}"]
        # --init: a tiny init as PID 1 forwards SIGTERM (busybox httpd or sh as PID 1 ignore it, so every
        # stop would wait out its timeout) and reaps zombies
        a += ["--init", "--network", self.network]
        if not candidate:
            a += ["--network-alias", self.app]
        for key, value in self.env:
            a += ["--env", f"{key}={value}"]
        if self.env_file:
            a += ["--env-file", self.env_file]
        if self.publish is not None and self.port is not None and not candidate:
            host_ip, host_port = self.publish
            bind = f"[{host_ip}]" if ":" in host_ip else host_ip
            a += ["--publish", f"{bind}:{host_port}:{self.port}" if host_ip else f"{host_port}:{self.port}"]
        for vol, target in self.volumes:
            a += ["--mount", f"type=volume,source={vol},target={target}"]
        if self.memory is not None:
            a += ["--memory", str(self.memory)]
        if self.cpus is not None:
            a += ["--cpus", f"{self.cpus:g}"]
        a += ["--restart", self.restart]
        if self.health is not None:
            h = self.health
            a += [
                "--health-cmd",
                h.test,
                "--health-interval",
                _dur(h.interval),
                "--health-timeout",
                _dur(h.timeout),
                "--health-retries",
                str(h.retries),
            ]
            if h.start_period:
                a += ["--health-start-period", _dur(h.start_period)]
        for opt in self.security_opt:
            a += ["--security-opt", opt]
        if self.read_only:
            a.append("--read-only")
        for path in self.tmpfs:
            a += ["--tmpfs", f"{path}:rw,nosuid,nodev"]
        a.append(self.image)
        if self.command:
            a += list(self.command)
        return tuple(a)

    def release_argv(self) -> tuple[str, ...]:
        """`docker run --rm …` of the release command: the app's image, env, env file (secrets), volumes, limits,
        network and security options, without its port, alias, health check or restart policy."""
        name = f"{self.name}-release"
        a: list[str] = ["docker", "run", "--rm", "--name", name]
        for key, value in sorted({**owner_labels(self.project, self.environment, self.app),
                                  LABEL_ROLE: ROLE_RELEASE}.items()):
            a += ["--label", f"{key}={value}"]
        a += ["--init", "--network", self.network]
        for key, value in self.env:
            a += ["--env", f"{key}={value}"]
        if self.env_file:
            a += ["--env-file", self.env_file]
        for vol, target in self.volumes:
            a += ["--mount", f"type=volume,source={vol},target={target}"]
        if self.memory is not None:
            a += ["--memory", str(self.memory)]
        if self.cpus is not None:
            a += ["--cpus", f"{self.cpus:g}"]
        for opt in self.security_opt:
            a += ["--security-opt", opt]
        if self.read_only:
            a.append("--read-only")
        for path in self.tmpfs:
            a += ["--tmpfs", f"{path}:rw,nosuid,nodev"]
        a += [self.image, *self.release_command]
        return tuple(a)

    def describe(self) -> str:
        """A secret-free text form for --diff (one setting per line: a value with a newline is shown
        escaped, so it cannot fake settings of its own in the line-based diff)."""
        lines = [f"image: {one_line(self.image)}"]
        if self.pulled:
            lines.append(f"image id: {self.build_hash.removeprefix('sha256:')[:12]}")
        if self.command:
            lines.append(f"command: {one_line(shlex.join(self.command))}")
        lines += [f"env {k}={one_line(v)}" for k, v in self.env]
        lines += [f"secret {name} (from env file)" for name in self.secrets]
        if self.publish is not None:
            host_ip, host_port = self.publish
            lines.append(f"publish: {host_ip or '0.0.0.0'}:{host_port} -> {self.port}")
        lines += [f"volume {v} -> {one_line(t)}" for v, t in self.volumes]
        if self.domains:
            lines.append(f"domains: {', '.join(self.domains)} (through the proxy, to port {self.port})")
        if self.release_command:
            lines.append(f"release command: {one_line(shlex.join(self.release_command))}")
        if self.memory is not None:
            lines.append(f"memory: {self.memory}")
        if self.cpus is not None:
            lines.append(f"cpus: {self.cpus:g}")
        lines.append(f"restart: {self.restart}")
        if self.health is not None:
            lines.append(f"health: every {_dur(self.health.interval)}, {self.health.retries} retries")
        lines.append(f"read-only root: {'yes' if self.read_only else 'no'}")
        lines.append(f"networks: {', '.join((self.network, *self.extra_networks))}")
        lines.append(f"config hash: {self.config_hash[:12]}")
        return "\n".join(lines) + "\n"


def container_config(
    project: str,
    environment: str,
    app_name: str,
    app: AppSpec,
    *,
    image: str,
    build_hash: str,
    secret_digests: Mapping[str, str],
    ssh_user: str,
    read_only: bool,
    tmpfs: tuple[str, ...] = ("/tmp",),
    release_command: tuple[str, ...] = (),
    release: str = "",
) -> ContainerConfig:
    """The desired container of one app; `read_only` is resolved (app setting, else template default)."""
    publish = (app.publish.host_ip, app.publish.host_port) if app.publish is not None else None
    return ContainerConfig(
        project=project,
        environment=environment,
        app=app_name,
        image=image,
        build_hash=build_hash,
        command=app.command,
        env=tuple(sorted(app.env.items())),
        secrets=tuple(sorted(app.secrets)),
        secret_digests=tuple(sorted((n, secret_digests[n]) for n in app.secrets)),
        env_file=env_file_path(ssh_user, project, environment, app_name) if app.secrets else None,
        port=app.port,
        publish=publish,
        volumes=tuple(
            sorted((volume_name(project, environment, app_name, v), t) for v, t in app.volumes.items())
        ),
        memory=app.memory,
        cpus=app.cpus,
        restart=app.restart,
        health=health_for(app),
        read_only=read_only,
        tmpfs=tmpfs if read_only else (),
        network=network_name(project, environment, app_name),
        extra_networks=tuple(network_name(project, environment, other) for other in sorted(app.reach)),
        domains=app.domains,
        release_command=release_command,
        release=release,
    )
