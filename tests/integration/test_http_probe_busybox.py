"""The http health probe, run by `/bin/sh` inside the static-site base image (Debian bookworm's busybox 1.35, as
the sandbox's dockyard/static:bookworm) against busybox httpd in the same container.

Debian's busybox 1.35 `wget` segfaults (exit 139) whenever it is given `-T` (a timeout), before it sends
anything. The probe's `busybox wget` branch never passes `-T`, but its `wget` branch does, and an image whose
`wget` IS that busybox (a symlink, `busybox --install`) takes that branch: the app then never turns healthy.
"""

from __future__ import annotations

import subprocess

import pytest

from provision.commands.docker import http_probe
from tests.images import image_ref

pytestmark = pytest.mark.integration

PORT = 8080
# the server (busybox httpd, backgrounds itself), then the probe under test given as $1; prints the probe's exit
SCRIPT = ("set -u; mkdir -p /tmp/www /tmp/bin; echo ok > /tmp/www/index.html; "
          "if [ \"$2\" = applet ]; then ln -s \"$(command -v busybox)\" /tmp/bin/wget; fi; "
          f"PATH=/tmp/bin:$PATH busybox httpd -p 127.0.0.1:{PORT} -h /tmp/www || exit 90; "
          "i=0; until busybox wget -q -O /dev/null http://127.0.0.1:8080/ 2>/dev/null; do "
          "i=$((i+1)); [ $i -lt 50 ] || exit 91; sleep 0.1; done; "
          "PATH=/tmp/bin:$PATH sh -c \"$1\"; echo \"probe-exit=$?\"")


def run_probe(docker_client, unique: str, path: str, wget: str) -> str:
    """The probe's exit code as the container printed it (`wget`: "applet" puts busybox on PATH as `wget`)."""
    image = image_ref("static", docker_client)
    done = subprocess.run(
        ["docker", "run", "--rm", "--name", f"{unique}-probe", "--network", "none", "--read-only",
         "--tmpfs", "/tmp", "--user", "65534:65534", image, "sh", "-c", SCRIPT, "sh",
         http_probe(PORT, path, 3), wget],
        capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, (done.returncode, done.stdout, done.stderr)
    lines = [line for line in done.stdout.splitlines() if line.startswith("probe-exit=")]
    assert len(lines) == 1, (done.stdout, done.stderr)
    return lines[0].split("=", 1)[1]


@pytest.mark.parametrize("wget", ["none", "applet"])
def test_probe_passes_in_the_busybox_image(docker_client, unique: str, wget: str) -> None:
    assert run_probe(docker_client, unique, "/", wget) == "0"


@pytest.mark.parametrize("wget", ["none", "applet"])
def test_probe_fails_on_a_404_without_crashing(docker_client, unique: str, wget: str) -> None:
    code = run_probe(docker_client, unique, "/missing", wget)
    assert code not in ("0", "139")
