"""Engine facts: everything `setup` needs to know about a host, read in ONE SSH round trip.

`facts_script(users)` is a POSIX sh script (run with sudo: `docker version` and the init script need root)
printing `@@section` headers; `parse_engine_facts(text)` turns its output into `EngineFacts`. Both are pure,
so plans are unit-tested on recorded output (tests/unit/test_plan_engine.py). `gather_engine_facts(remote,
users)` is the thin effect.
"""

from __future__ import annotations

import base64
import binascii
import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from provision.errors import StepFailed
from provision.facts import script_sections
from provision.spec import LOGIN_NAME_RE

DAEMON_JSON = "/etc/docker/daemon.json"
INIT_SCRIPT = "/etc/init.d/docker"
APT_SOURCE = "/etc/apt/sources.list.d/docker.list"
APT_KEY = "/etc/apt/keyrings/docker.asc"
DNF_REPO = "/etc/yum.repos.d/docker-ce.repo"
FATAL_ULIMIT = r"^[[:space:]]*ulimit [^|]*$"  # an `ulimit` line without `|| …`: aborts the `set -e` script

_SCRIPT = r"""export LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
sec() { printf '\n@@%s\n' "$1"; }
sec os-release; cat /etc/os-release 2>/dev/null
sec arch; uname -m
sec dpkg-arch; dpkg --print-architecture 2>/dev/null
sec uid; id -u
sec hard-nofile; ulimit -Hn 2>/dev/null
sec package-manager; for m in apt-get dnf yum; do command -v $m >/dev/null 2>&1 && echo $m; done
sec docker; command -v docker 2>/dev/null
sec dockerd; command -v dockerd 2>/dev/null
sec dockerd-version; dockerd --version 2>/dev/null
sec packages
if command -v dpkg-query >/dev/null 2>&1; then
  dpkg-query -W -f='${Package} ${db:Status-Abbrev} ${Version}\n' docker.io docker-ce moby-engine 2>/dev/null
elif command -v rpm >/dev/null 2>&1; then
  rpm -q --qf '%{NAME} ii %{VERSION}\n' docker docker-ce moby-engine 2>/dev/null | grep ' ii '
fi
sec systemd; [ -d /run/systemd/system ] && echo yes
sec unit
if [ -d /run/systemd/system ]; then
  echo "enabled=$(systemctl is-enabled docker.service 2>/dev/null)"
  echo "active=$(systemctl is-active docker.service 2>/dev/null)"
fi
sec init-script
if [ -x @INIT@ ]; then echo present; grep -cE '@FATAL@' @INIT@ 2>/dev/null; fi
sec init-enabled; ls /etc/rc2.d/ 2>/dev/null | grep -E '^S[0-9]*docker$'
sec daemon-json; [ -f @DAEMON@ ] && base64 < @DAEMON@ | tr -d '\n'
sec docker-group; getent group docker
sec users
for u in @USERS@; do if id -u "$u" >/dev/null 2>&1; then echo "$u yes"; else echo "$u no"; fi; done
sec engine
pid=$(pidof dockerd 2>/dev/null | cut -d' ' -f1)
if [ -n "$pid" ]; then
  echo "pid=$pid"
  echo "start=$(cut -d' ' -f22 /proc/$pid/stat 2>/dev/null)"
  echo "cmdline=$(tr '\000' ' ' < /proc/$pid/cmdline 2>/dev/null)"
  if command -v docker >/dev/null 2>&1; then
    v=$(timeout 10 docker version --format '{{.Server.Version}}' 2>/dev/null) && echo "server=$v"
  fi
fi
sec apt-repo; [ -f @APTSRC@ ] && cat @APTSRC@; [ -f @APTKEY@ ] && echo "key=present"
sec dnf-repo; [ -f @DNFREPO@ ] && echo present
sec end
"""


def facts_script(users: Iterable[str]) -> str:
    names = sorted(set(users))
    for name in names:
        if not re.fullmatch(LOGIN_NAME_RE, name):
            raise ValueError(f"{name!r} is not a user name")
    return (_SCRIPT.replace("@USERS@", " ".join(shlex.quote(u) for u in names) or "''")
            .replace("@INIT@", INIT_SCRIPT).replace("@FATAL@", FATAL_ULIMIT).replace("@DAEMON@", DAEMON_JSON)
            .replace("@APTSRC@", APT_SOURCE).replace("@APTKEY@", APT_KEY).replace("@DNFREPO@", DNF_REPO))


@dataclass(frozen=True)
class OsFacts:
    id: str = ""
    id_like: tuple[str, ...] = ()
    version_id: str = ""
    codename: str = ""
    pretty: str = ""
    arch: str = ""  # uname -m
    dpkg_arch: str = ""
    package_manager: str | None = None  # apt | dnf | None

    @property
    def is_ubuntu(self) -> bool:
        return self.id == "ubuntu" or "ubuntu" in self.id_like


@dataclass(frozen=True)
class EngineFacts:
    os: OsFacts
    uid: int | None = None
    hard_nofile: int | None = None
    docker_cli: str | None = None
    dockerd: str | None = None
    dockerd_version: str | None = None
    packages: dict[str, str] = field(default_factory=dict)  # installed package → version
    systemd: bool = False
    unit_enabled: str = ""
    unit_active: str = ""
    init_script: bool = False
    init_fatal_ulimits: int = 0
    init_enabled: bool = False
    daemon_json: str | None = None
    docker_group: bool = False
    docker_group_members: tuple[str, ...] = ()
    users: dict[str, bool] = field(default_factory=dict)  # user → exists
    engine_pid: int | None = None
    engine_start: str | None = None  # process start time (clock ticks since boot): changes on restart
    engine_cmdline: str = ""
    server_version: str | None = None  # set when the engine answered `docker version`
    apt_source: str | None = None
    apt_key: bool = False
    dnf_repo: bool = False

    @property
    def installed(self) -> bool:
        return self.dockerd is not None

    @property
    def running(self) -> bool:
        return self.engine_pid is not None

    @property
    def answers(self) -> bool:
        return self.server_version is not None

    @property
    def service_manager(self) -> str | None:
        if self.systemd:
            return "systemd"
        if self.init_script:
            return "init"
        return None

    @property
    def tcp_listener(self) -> str | None:
        m = re.search(r"(?:-H|--host)[= ](tcp://\S+)", self.engine_cmdline)
        return m.group(1) if m else None

    def in_docker_group(self, user: str) -> bool:
        return user == "root" or user in self.docker_group_members

    def summary(self) -> dict[str, Any]:
        return {"os": self.os.pretty or self.os.id, "arch": self.os.arch, "engine": self.dockerd_version,
                "server": self.server_version, "service_manager": self.service_manager,
                "engine_start": self.engine_start}


def _os_release(lines: list[str]) -> dict[str, str]:
    data = {}
    for line in lines:
        key, sep, value = line.partition("=")
        if sep:
            try:
                parts = shlex.split(value)
            except ValueError:
                parts = [value.strip("\"'")]
            data[key.strip()] = parts[0] if parts else ""
    return data


def _kv(lines: list[str]) -> dict[str, str]:
    return {k: v for k, _, v in (line.partition("=") for line in lines)}


def _first(lines: list[str] | None) -> str | None:
    return lines[0].strip() if lines else None


def parse_engine_facts(text: str) -> EngineFacts:
    s = script_sections(text)
    if "end" not in s:
        raise StepFailed("gathering engine facts: the facts script did not finish (output truncated)")
    rel = _os_release(s.get("os-release", []))
    managers = s.get("package-manager", [])
    pm = "apt" if "apt-get" in managers else "dnf" if ("dnf" in managers or "yum" in managers) else None
    os_facts = OsFacts(id=rel.get("ID", ""), id_like=tuple(rel.get("ID_LIKE", "").split()),
                       version_id=rel.get("VERSION_ID", ""),
                       codename=rel.get("VERSION_CODENAME", "") or rel.get("UBUNTU_CODENAME", ""),
                       pretty=rel.get("PRETTY_NAME", ""), arch=_first(s.get("arch")) or "",
                       dpkg_arch=_first(s.get("dpkg-arch")) or "", package_manager=pm)
    packages = {}
    for line in s.get("packages", []):
        parts = line.split()
        if len(parts) >= 3 and parts[1].startswith("ii"):
            packages[parts[0]] = parts[2]
    unit = _kv(s.get("unit", []))
    init = s.get("init-script", [])
    daemon_json = None
    if s.get("daemon-json"):
        try:
            raw = base64.b64decode("".join(s["daemon-json"]), validate=True)
            daemon_json = raw.decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            raise StepFailed("gathering engine facts: cannot decode /etc/docker/daemon.json") from None
    group = _first(s.get("docker-group"))
    members: tuple[str, ...] = ()
    if group:
        fields = group.split(":")
        members = tuple(m for m in (fields[3].split(",") if len(fields) > 3 else []) if m)
    users = {}
    for line in s.get("users", []):
        name, _, exists = line.partition(" ")
        users[name] = exists.strip() == "yes"
    engine = _kv(s.get("engine", []))
    apt = s.get("apt-repo", [])
    nofile = _first(s.get("hard-nofile"))
    uid = _first(s.get("uid"))
    return EngineFacts(
        os=os_facts,
        uid=int(uid) if uid and uid.isdigit() else None,
        hard_nofile=int(nofile) if nofile and nofile.isdigit() else None,
        docker_cli=_first(s.get("docker")), dockerd=_first(s.get("dockerd")),
        dockerd_version=_first(s.get("dockerd-version")), packages=packages,
        systemd=_first(s.get("systemd")) == "yes",
        unit_enabled=unit.get("enabled", ""), unit_active=unit.get("active", ""),
        init_script=bool(init) and init[0] == "present",
        init_fatal_ulimits=int(init[1]) if len(init) > 1 and init[1].isdigit() else 0,
        init_enabled=bool(s.get("init-enabled")),
        daemon_json=daemon_json, docker_group=group is not None, docker_group_members=members, users=users,
        engine_pid=int(engine["pid"]) if engine.get("pid", "").isdigit() else None,
        engine_start=engine.get("start") or None, engine_cmdline=engine.get("cmdline", "").strip(),
        server_version=engine.get("server") or None,
        apt_source="\n".join(line for line in apt if not line.startswith("key=")) or None,
        apt_key="key=present" in apt, dnf_repo=_first(s.get("dnf-repo")) == "present",
    )


def gather_engine_facts(remote: Any, users: Iterable[str]) -> EngineFacts:
    """One round trip: the facts script through `sudo -n sh -s` (plain `sh -s` for root)."""
    result = remote.run_script(facts_script(users), sudo=True, check=False, timeout=60)
    if result.exit_code != 0 and "@@end" not in result.stdout:
        detail = result.stderr.strip().splitlines()[-1:] or [f"exit {result.exit_code}"]
        hint = " (the SSH user needs passwordless sudo)" if "sudo" in result.stderr else ""
        raise StepFailed(f"gathering engine facts failed{hint}: {detail[0]}")
    return parse_engine_facts(result.stdout)
