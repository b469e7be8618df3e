"""Pure command building for engine setup: apt and dnf (no Amazon Linux image here), repos, init script."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from provision.commands import engine as cmd
from provision.facts.engine import OsFacts

pytestmark = pytest.mark.unit

DEBIAN = OsFacts(id="debian", version_id="12", codename="bookworm", arch="x86_64", dpkg_arch="amd64",
                 package_manager="apt")
UBUNTU_ARM = OsFacts(id="ubuntu", id_like=("debian",), codename="noble", arch="aarch64",
                     package_manager="apt")
AL2023 = OsFacts(id="amzn", id_like=("fedora",), version_id="2023", arch="aarch64", package_manager="dnf")
FEDORA = OsFacts(id="fedora", version_id="40", arch="x86_64", package_manager="dnf")


def test_apt_install_is_noninteractive_and_waits_for_the_lock():
    argv = cmd.apt_install(("docker.io",))
    assert argv[:3] == ("env", "DEBIAN_FRONTEND=noninteractive", "apt-get")
    assert "DPkg::Lock::Timeout=300" in argv and argv[-2:] == ("--no-install-recommends", "docker.io")
    assert cmd.install_packages("apt", ("docker.io",)) == [cmd.apt_update(), argv]


def test_dnf_install_distro_and_docker_ce():
    distro = cmd.install_packages("dnf", cmd.DISTRO_PACKAGE["dnf"])
    assert distro == [("dnf", "-y", "-q", "install", "docker")]
    assert cmd.dnf_install(cmd.DOCKER_CE_PACKAGES) == (
        "dnf", "-y", "-q", "install", "docker-ce", "docker-ce-cli", "containerd.io", "docker-buildx-plugin",
        "docker-compose-plugin")
    with pytest.raises(ValueError):
        cmd.install_packages("apk", ("docker",))


def test_docker_ce_dnf_repo_files():
    al = cmd.docker_ce_dnf_repo(AL2023)
    assert "baseurl=https://download.docker.com/linux/centos/9/$basearch/stable" in al
    assert "gpgcheck=1" in al and "gpgkey=https://download.docker.com/linux/centos/gpg" in al
    fed = cmd.docker_ce_dnf_repo(FEDORA)
    assert "baseurl=https://download.docker.com/linux/fedora/$releasever/$basearch/stable" in fed
    assert fed.startswith("[docker-ce-stable]\n") and fed.endswith("\n")


def test_docker_ce_apt_source_lines():
    assert cmd.docker_ce_apt_source(DEBIAN) == (
        "deb [arch=amd64 signed-by=/etc/apt/keyrings/docker.asc] https://download.docker.com/linux/debian "
        "bookworm stable\n")
    # no dpkg arch recorded: derived from uname -m
    assert cmd.docker_ce_apt_source(UBUNTU_ARM).startswith("deb [arch=arm64 ")
    assert " https://download.docker.com/linux/ubuntu noble stable" in cmd.docker_ce_apt_source(UBUNTU_ARM)
    with pytest.raises(ValueError, match="VERSION_CODENAME"):
        cmd.docker_ce_apt_source(OsFacts(id="debian", package_manager="apt"))


def test_docker_ce_apt_key_fetch():
    steps = cmd.docker_ce_apt_key_fetch(DEBIAN)
    assert ("install", "-m", "0755", "-d", "/etc/apt/keyrings") in steps
    curl = next(s for s in steps if s[0] == "curl")
    assert curl[-1] == "https://download.docker.com/linux/debian/gpg"
    assert "/etc/apt/keyrings/docker.asc" in curl


def test_service_commands():
    assert cmd.systemd_enable_start() == ("systemctl", "enable", "--now", "docker.service")
    assert cmd.init_start() == ("/etc/init.d/docker", "start")
    assert cmd.add_to_group("deploy") == ("usermod", "-aG", "docker", "deploy")


STOCK = """\
case "$1" in
	start)
		ulimit -n 1048576
		# Having non-zero limits causes performance problems
		if [ "$BASH" ]; then
			ulimit -u unlimited
		else
			ulimit -p unlimited
		fi
		;;
esac
"""


def test_init_script_ulimits_made_non_fatal_and_idempotent(tmp_path):
    sed = shutil.which("sed")
    assert sed, "GNU sed is part of the base system"
    script = tmp_path / "docker"
    script.write_text(STOCK)
    argv = list(cmd.init_relax_ulimits())
    assert argv[:3] == ["sed", "-i", "-E"] and argv[-1] == "/etc/init.d/docker"
    subprocess.run([*argv[:-1], str(script)], check=True)
    once = script.read_text()
    assert "\t\tulimit -n 1048576 2>/dev/null || true\n" in once
    assert "\t\t\tulimit -p unlimited 2>/dev/null || true\n" in once
    assert "# Having non-zero limits" in once  # comments untouched
    subprocess.run([*argv[:-1], str(script)], check=True)
    assert script.read_text() == once  # a second setup changes nothing
    # the patched line really is non-fatal under `set -e` with a low hard limit; the stock one aborts
    low = "set -e; ulimit -Sn 256; ulimit -Hn 512; "
    patched = subprocess.run(["sh", "-c", low + "ulimit -n 1048576 2>/dev/null || true; echo on"],
                             capture_output=True, text=True)
    assert patched.stdout == "on\n"
    stock = subprocess.run(["sh", "-c", low + "ulimit -n 1048576; echo on"], capture_output=True, text=True)
    assert stock.returncode != 0 and stock.stdout == ""
