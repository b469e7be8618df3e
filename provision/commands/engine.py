"""Pure builders for engine setup: argv tuples and small file contents (apt source, dnf repo).

Quoting happens once, at the SSH edge (`provision.remote`); nothing here touches the network.
"""

from __future__ import annotations

from provision.facts.engine import APT_KEY, APT_SOURCE, DNF_REPO, FATAL_ULIMIT, INIT_SCRIPT, OsFacts

__all__ = ["APT_SOURCE", "DNF_REPO"]

Argv = tuple[str, ...]

DOCKER_CE_PACKAGES = ("docker-ce", "docker-ce-cli", "containerd.io", "docker-buildx-plugin",
                      "docker-compose-plugin")
DISTRO_PACKAGE = {"apt": ("docker.io",), "dnf": ("docker",)}
DOCKER_DOWNLOAD = "https://download.docker.com/linux"
APT_LOCK_TIMEOUT = "300"  # cloud-init / unattended-upgrades may hold the dpkg lock on a fresh VM
DPKG_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "armhf", "s390x": "s390x", "ppc64le": "ppc64el"}


def apt_get(*args: str) -> Argv:
    return ("env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "-q", "-y",
            "-o", f"DPkg::Lock::Timeout={APT_LOCK_TIMEOUT}", *args)


def apt_update() -> Argv:
    return apt_get("update")


def apt_install(packages: tuple[str, ...]) -> Argv:
    return apt_get("install", "--no-install-recommends", *packages)


def dnf_install(packages: tuple[str, ...]) -> Argv:
    return ("dnf", "-y", "-q", "install", *packages)


def install_packages(manager: str, packages: tuple[str, ...]) -> list[Argv]:
    if manager == "apt":
        return [apt_update(), apt_install(packages)]
    if manager == "dnf":
        return [dnf_install(packages)]
    raise ValueError(f"unsupported package manager {manager!r}")


# --- Docker's own repository (engine.source: docker-ce) ------------------------------------------------


def docker_ce_apt_distro(os: OsFacts) -> str:
    return "ubuntu" if os.is_ubuntu else "debian"


def docker_ce_apt_source(os: OsFacts) -> str:
    if not os.codename:
        raise ValueError(f"{os.pretty or os.id}: /etc/os-release has no VERSION_CODENAME "
                         "(needed for Docker's apt repository)")
    arch = os.dpkg_arch or DPKG_ARCH.get(os.arch, os.arch)
    return (f"deb [arch={arch} signed-by={APT_KEY}] {DOCKER_DOWNLOAD}/{docker_ce_apt_distro(os)} "
            f"{os.codename} stable\n")


def docker_ce_apt_key_fetch(os: OsFacts) -> list[Argv]:
    return [apt_install(("ca-certificates", "curl")),
            ("install", "-m", "0755", "-d", "/etc/apt/keyrings"),
            ("curl", "-fsSL", "--retry", "3", "-o", APT_KEY,
             f"{DOCKER_DOWNLOAD}/{docker_ce_apt_distro(os)}/gpg"),
            ("chmod", "a+r", APT_KEY)]


def docker_ce_dnf_repo(os: OsFacts) -> str:
    """Fedora has its own repository; Amazon Linux 2023 and other RHEL-likes use the CentOS 9 one."""
    if os.id == "fedora":
        base, key = f"{DOCKER_DOWNLOAD}/fedora/$releasever/$basearch/stable", f"{DOCKER_DOWNLOAD}/fedora/gpg"
    else:
        base, key = f"{DOCKER_DOWNLOAD}/centos/9/$basearch/stable", f"{DOCKER_DOWNLOAD}/centos/gpg"
    return ("[docker-ce-stable]\n"
            "name=Docker CE Stable - $basearch\n"
            f"baseurl={base}\n"
            "enabled=1\n"
            "gpgcheck=1\n"
            f"gpgkey={key}\n")


# --- files, service, groups ----------------------------------------------------------------------------


def make_dir(path: str, mode: str = "0755") -> Argv:
    return ("install", "-d", "-m", mode, path)


def systemd_enable_start() -> Argv:
    return ("systemctl", "enable", "--now", "docker.service")


def systemd_restart() -> Argv:
    return ("systemctl", "restart", "docker.service")


def init_enable() -> Argv:
    return ("update-rc.d", "docker", "defaults")


def init_start() -> Argv:
    return (INIT_SCRIPT, "start")


def init_restart() -> Argv:
    return (INIT_SCRIPT, "restart")


def init_relax_ulimits() -> Argv:
    """The stock init script runs `ulimit -n 1048576` under `set -e`: where the hard limit is lower
    (containers, some VMs) it aborts before starting dockerd. Make each bare `ulimit` line non-fatal."""
    return ("sed", "-i", "-E", f"s/{FATAL_ULIMIT}/& 2>\\/dev\\/null || true/", INIT_SCRIPT)


def groupadd_docker() -> Argv:
    return ("groupadd", "-f", "docker")


def add_to_group(user: str, group: str = "docker") -> Argv:
    return ("usermod", "-aG", group, user)


def docker_server_version() -> Argv:
    return ("docker", "version", "--format", "{{.Server.Version}}")


def docker_ps() -> Argv:
    return ("docker", "ps", "-q")


# --- swarm (engine.mode: swarm; provision.swarm plans them) ---------------------------------------------

SWARM_PORT = 2377
# The join token travels on stdin (a Step shows only its digest), never in argv as dockyard sends it: this
# fixed script reads it and hands it to `docker swarm join`; $1 = own advertise address, $2 = manager addr:port.
_JOIN_SCRIPT = 'IFS= read -r token && exec docker swarm join --token "$token" --advertise-addr "$1" "$2"'


def join_address(address: str, port: int = SWARM_PORT) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def swarm_init(advertise_address: str) -> Argv:
    return ("docker", "swarm", "init", "--advertise-addr", advertise_address)


def swarm_join(advertise_address: str, manager_address: str) -> Argv:
    return ("sh", "-c", _JOIN_SCRIPT, "sh", advertise_address, join_address(manager_address))


def swarm_join_token(role: str) -> Argv:
    if role not in ("worker", "manager"):
        raise ValueError(f"a swarm role is worker or manager, got {role!r}")
    return ("docker", "swarm", "join-token", "-q", role)


def node_demote(node_id: str) -> Argv:
    return ("docker", "node", "demote", node_id)


def node_remove(node_id: str) -> Argv:
    return ("docker", "node", "rm", node_id)


def node_list() -> Argv:
    return ("docker", "node", "ls", "--format", "{{json .}}")
