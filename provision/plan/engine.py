"""The engine plan: (desired engine, EngineFacts) -> ordered tasks of Changes. Pure: no network, no clock.

Tasks, in the order the runner applies them (each one `ok` when its change list is empty):
1. `daemon.json`      written before the package is installed, so a fresh engine starts with it; notifies
                      `restart docker` only when an engine is already running (a fresh one reads it at start).
2. `docker engine`    the package (distro: docker.io / docker; docker-ce: Docker's repository + signing key);
                      an engine already present is accepted and reported, never reinstalled.
3. `init script`      hosts without systemd: the stock script's `ulimit` lines made non-fatal when the hard
                      nofile limit is below what they ask for (they abort the script under `set -e`).
4. `docker service`   enabled and started (systemd, or the init script), then waited for (bounded).
5. `docker group`     the SSH user and engine.users join `docker`; the SSH connection is reopened so the group
                      applies in this same run, and `docker ps` without sudo proves it.
Handler `restart docker` (`plan_restart`): restart with the host's service manager, then wait.
`check_daemon_json` validates the rendered daemon.json locally (InputError, exit 2) before anything is sent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provision.changes import Change, Step
from provision.commands import engine as cmd
from provision.errors import InputError, Problem, StepFailed
from provision.facts.engine import APT_SOURCE, DAEMON_JSON, DNF_REPO, EngineFacts
from provision.ops import Reconnect, Upload, Wait

RESTART = "restart docker"
WANTED_NOFILE = 1048576  # what the stock init script asks for
ENGINE_WAIT = 60.0

# daemon.json keys dockerd knows (20.10 … 27), with the JSON type it insists on. An unknown key or a wrong
# type makes dockerd refuse to start, so it is rejected here, before anything is uploaded.
_STR, _BOOL, _INT, _LIST, _OBJ = str, bool, int, list, dict
DAEMON_KEYS: dict[str, type] = {
    **dict.fromkeys(("log-driver", "log-level", "log-format", "data-root", "exec-root", "storage-driver",
                     "bip", "bip6", "bridge", "fixed-cidr", "fixed-cidr-v6", "default-gateway",
                     "default-gateway-v6", "ip", "cgroup-parent", "containerd", "containerd-namespace",
                     "containerd-plugins-namespace", "default-runtime", "default-shm-size",
                     "default-cgroupns-mode",
                     "default-ipc-mode", "host-gateway-ip", "init-path", "metrics-addr", "pidfile",
                     "seccomp-profile", "swarm-default-advertise-addr", "userland-proxy-path", "userns-remap",
                     "group", "http-proxy", "https-proxy", "no-proxy", "api-cors-header",
                     "cluster-advertise", "cluster-store", "default-isolation", "tlscacert", "tlscert",
                     "tlskey"), _STR),
    **dict.fromkeys(("live-restore", "debug", "experimental", "icc", "init", "ip-forward", "ip-masq",
                     "ip6tables", "iptables", "ipv6", "no-new-privileges", "raw-logs", "selinux-enabled",
                     "userland-proxy", "tls", "tlsverify", "cri-containerd", "ip-forward-no-drop"), _BOOL),
    **dict.fromkeys(("max-concurrent-downloads", "max-concurrent-uploads", "max-download-attempts", "mtu",
                     "oom-score-adjust", "shutdown-timeout"), _INT),
    **dict.fromkeys(("dns", "dns-opts", "dns-search", "exec-opts", "insecure-registries", "labels",
                     "registry-mirrors", "storage-opts", "authorization-plugins", "default-address-pools",
                     "allow-nondistributable-artifacts", "node-generic-resources", "hosts"), _LIST),
    **dict.fromkeys(("log-opts", "default-ulimits", "runtimes", "features", "builder", "proxies",
                     "default-network-opts", "cluster-store-opts"), _OBJ),
}
_STRING_MAPS = ("log-opts",)  # dockerd: "cannot unmarshal number into ... log-opts of type string"
_TYPE_WORD = {str: "a string", bool: "true or false", int: "a whole number", list: "a list",
              dict: "a mapping"}


def check_daemon_json(text: str, file: Path | None = None) -> dict[str, Any]:
    """Parse and type-check the rendered daemon.json the way dockerd will; InputError names the key."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError.single(f"daemon.json is not valid JSON: {exc}", file, "engine.daemon") from None
    if not isinstance(data, dict):
        raise InputError.single("daemon.json must be a JSON object", file, "engine.daemon")
    problems = []
    for key, value in data.items():
        want = DAEMON_KEYS.get(key)
        where = f"engine.daemon.{key}"
        if want is None:
            problems.append((f"{key!r} is not a daemon.json option dockerd knows (it would refuse to start)",
                             where))
        elif not isinstance(value, want) or (want is int and isinstance(value, bool)):
            problems.append((f"must be {_TYPE_WORD[want]}, got {json.dumps(value)}", where))
        elif key in _STRING_MAPS:
            for k, v in value.items():
                if not isinstance(v, str):
                    problems.append((f"must be a string (quote it: \"{v}\"); dockerd refuses other types "
                                     "here", f"{where}.{k}"))
    if problems:
        raise InputError([Problem(m, file, k) for m, k in problems])
    return data


@dataclass(frozen=True)
class EngineDesired:
    source: str  # distro | docker-ce
    daemon_json: str  # rendered, validated
    ssh_user: str
    users: tuple[str, ...] = ()  # engine.users
    wait: float = ENGINE_WAIT

    @property
    def group_members(self) -> tuple[str, ...]:
        seen = dict.fromkeys((self.ssh_user, *self.users))
        return tuple(u for u in seen if u != "root")


@dataclass
class EngineTask:
    name: str
    changes: list[Change] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # the task fails with this message (a host state dockyard refuses)


# --- steps (ops: provision.exec_ssh runs them on the Remote) --------------------------------------------


def upload(description: str, path: str, content: str, mode: int = 0o644) -> Step:
    return Step(description, Upload(path, content.encode(), mode=mode, owner="root:root", sudo=True))


def _describe(argv: tuple[str, ...]) -> str:
    """`apt-get install docker.io` rather than the env/-o noise around it."""
    words = list(argv[2:] if argv[:1] == ("env",) else argv)
    out, skip = [], False
    for w in words:
        if skip:
            skip = False
        elif w == "-o":
            skip = True
        elif w not in ("-q", "-y", "--no-install-recommends"):
            out.append(w)
    return " ".join(out)


def _argv(description: str, argv: tuple[str, ...], sudo: bool = True) -> Step:
    return Step(description, argv=argv, sudo=sudo)


# --- the plan -------------------------------------------------------------------------------------------


def _same_json(a: str | None, b: str) -> bool:
    if a is None:
        return False
    try:
        return json.loads(a) == json.loads(b)
    except json.JSONDecodeError:
        return False


def plan_daemon_json(desired: EngineDesired, facts: EngineFacts) -> EngineTask:
    task = EngineTask("daemon.json", data={"path": DAEMON_JSON})
    if _same_json(facts.daemon_json, desired.daemon_json):
        return task
    steps = (_argv("create /etc/docker", cmd.make_dir("/etc/docker")),
             upload(f"write {DAEMON_JSON} (atomically)", DAEMON_JSON, desired.daemon_json))
    task.changes.append(Change(
        "engine:daemon.json", "update" if facts.daemon_json is not None else "create",
        "content differs" if facts.daemon_json is not None else "absent", steps,
        before=facts.daemon_json, after=desired.daemon_json,
        notify=(RESTART,) if facts.running else ()))
    return task


def _install_steps(desired: EngineDesired, facts: EngineFacts) -> list[Step]:
    os, pm = facts.os, facts.os.package_manager
    if pm is None:
        raise StepFailed(f"{os.pretty or os.id or 'this OS'}: no apt-get or dnf; dockyard installs Docker on "
                         "Debian/Ubuntu (apt) and Amazon Linux 2023/Fedora (dnf)")
    if desired.source == "distro":
        packages = cmd.DISTRO_PACKAGE[pm]
        return [_argv(_describe(a), a) for a in cmd.install_packages(pm, packages)]
    steps: list[Step] = []
    if pm == "apt":
        source = cmd.docker_ce_apt_source(os)
        if not facts.apt_key:
            steps += [_argv(_describe(a), a) for a in cmd.docker_ce_apt_key_fetch(os)]
        if (facts.apt_source or "").strip() != source.strip():
            steps.append(upload(f"write {APT_SOURCE}", APT_SOURCE, source))
    else:
        steps.append(upload(f"write {DNF_REPO}", DNF_REPO, cmd.docker_ce_dnf_repo(os)))
    steps += [_argv(_describe(a), a) for a in cmd.install_packages(pm, cmd.DOCKER_CE_PACKAGES)]
    return steps


def plan_package(desired: EngineDesired, facts: EngineFacts) -> EngineTask:
    task = EngineTask("docker engine", data={"source": desired.source})
    if facts.installed:
        task.data.update(present=True, version=facts.dockerd_version, packages=dict(facts.packages))
        return task
    steps = _install_steps(desired, facts)
    what = "docker-ce (Docker's repository)" if desired.source == "docker-ce" else \
        " ".join(cmd.DISTRO_PACKAGE[facts.os.package_manager or "apt"])
    task.changes.append(Change("engine:package", "install", f"absent; installing {what}", tuple(steps),
                               data={"source": desired.source}))
    return task


def _needs_relaxed_ulimits(facts: EngineFacts) -> bool:
    limit_too_low = facts.hard_nofile is None or facts.hard_nofile < WANTED_NOFILE
    if not limit_too_low or facts.systemd:
        return False
    if facts.init_script:  # installed, or a wrapper/diversion already in place (the local sandbox image)
        return facts.init_fatal_ulimits > 0
    # not there yet: Debian's docker.io will ship the init script with bare ulimit lines
    return not facts.installed and facts.os.package_manager == "apt"


def plan_init_script(facts: EngineFacts) -> EngineTask:
    task = EngineTask("init script")
    if _needs_relaxed_ulimits(facts):
        task.changes.append(Change(
            "engine:init-script", "update",
            f"its ulimit lines abort under a hard nofile limit of {facts.hard_nofile}",
            (_argv("make the ulimit lines of /etc/init.d/docker non-fatal", cmd.init_relax_ulimits()),)))
    return task


def plan_service(desired: EngineDesired, facts: EngineFacts) -> EngineTask:
    task = EngineTask("docker service", data={"manager": "systemd" if facts.systemd else "init",
                                              "engine_start": facts.engine_start})
    wait = _wait_step(desired.wait)
    steps: list[Step] = []
    if facts.systemd:
        if not facts.installed or facts.unit_enabled != "enabled" or facts.unit_active != "active":
            steps.append(_argv("systemctl enable --now docker", cmd.systemd_enable_start()))
    elif facts.init_script or not facts.installed:
        if not facts.installed or not facts.init_enabled:
            steps.append(_argv("update-rc.d docker defaults", cmd.init_enable()))
        if not facts.running:
            steps.append(_argv("/etc/init.d/docker start", cmd.init_start()))
    elif not facts.running:
        task.error = ("dockerd is installed but neither systemd nor /etc/init.d/docker manages it; "
                      "start it yourself (dockyard does not guess)")
        return task
    if steps or (facts.running and not facts.answers):
        reason = "not installed yet" if not facts.installed else \
            "not running" if not facts.running else "not enabled" if steps else "running but not answering"
        task.changes.append(Change("engine:service", "start", reason, (*steps, wait)))
    if facts.tcp_listener:
        task.error = (f"dockerd listens on {facts.tcp_listener}: anyone who reaches it is root on the host; "
                      "remove the -H tcp:// flag (dockyard talks to the engine over SSH only)")
    return task


def plan_group(desired: EngineDesired, facts: EngineFacts) -> EngineTask:
    members = desired.group_members
    task = EngineTask("docker group", data={"members": list(members)})
    missing = [u for u in members if not facts.in_docker_group(u)] if facts.installed else list(members)
    if not missing:
        return task
    steps: list[Step] = []
    if not facts.docker_group:
        steps.append(_argv("groupadd -f docker", cmd.groupadd_docker()))
    steps += [_argv(f"add {u} to the docker group", cmd.add_to_group(u)) for u in missing]
    if desired.ssh_user in missing:
        steps += [Step("reconnect so the new group applies to this session", Reconnect()),
                  _argv(f"docker ps as {desired.ssh_user}, without sudo", cmd.docker_ps(), sudo=False)]
    unknown = [u for u in missing if facts.users.get(u) is False]
    reason = f"{', '.join(missing)} not in the docker group"
    if unknown:
        reason += f" ({', '.join(unknown)}: no such user on the host)"
    task.changes.append(Change("engine:group", "update", reason, tuple(steps), data={"added": missing}))
    return task


def plan_engine(desired: EngineDesired, facts: EngineFacts) -> list[EngineTask]:
    """The whole engine phase, in order. Raises StepFailed when the host cannot be set up (unknown OS)."""
    return [plan_daemon_json(desired, facts), plan_package(desired, facts), plan_init_script(facts),
            plan_service(desired, facts), plan_group(desired, facts)]


def plan_restart(facts: EngineFacts, wait: float = ENGINE_WAIT) -> list[Change]:
    """The `restart docker` handler (live-restore keeps containers running across it)."""
    argv = cmd.systemd_restart() if facts.systemd else cmd.init_restart()
    return [Change("engine:service", "restart", "daemon.json changed",
                   (_argv(" ".join(argv), argv),
                    _wait_step(wait)))]


def _wait_step(wait: float) -> Step:
    return Step(f"wait until the engine answers (at most {wait:g}s)", Wait("engine.answers", timeout=wait))
