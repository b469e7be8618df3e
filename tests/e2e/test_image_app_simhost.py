"""An `image:` app on a host that cannot pull: `dockyard up` on a fresh sim host (stock sshd, no engine, no
registry) with an app whose image is a locally made one (the CI static image tagged `<unique>/redis-like:1`)
and `pull: never`. The image is shipped from this machine's engine (never built, never pulled: nothing goes
to a registry), the app serves from its volume on a writable root (image apps are not read-only by default),
`status` shows the reference as its version, and a second deploy changes nothing (same container id).

Traffic: only the sim host's SSH and its published app port on 127.0.0.1.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.e2e.helpers import cli_env, dockyard, get, json_of, tasks
from tests.images import image_ref
from tests.simhost import SimHost, start_simhost, stop_simhost

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

PORT = 6380  # the app's published port inside the sim host (mapped to a 127.0.0.1 port here)


def _container_id(host: SimHost, project: str) -> str:
    code, out = host.exec(f"docker ps -q --no-trunc --filter label=dockyard.project={project} "
                          "--filter label=dockyard.app=cache")
    assert code == 0, out
    ids = out.split()
    assert len(ids) == 1, out
    return ids[0]


def test_image_app_is_shipped_to_a_host_that_cannot_pull_and_a_redeploy_is_a_no_op(tmp_path: Path,
                                                                                   unique: str) -> None:
    ref = f"{unique}/redis-like:1"
    subprocess.run(["docker", "tag", image_ref("static"), ref], check=True, capture_output=True)
    local_id = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", ref], check=True,
                              capture_output=True, text=True).stdout.strip()
    host = start_simhost(f"{unique}-simhost", tmp_path / "simhost", extra_ports=(PORT,))
    env = cli_env()
    playbook = tmp_path / "playbooks" / "image.yml"
    playbook.parent.mkdir()
    playbook.write_text(f"""\
project: {unique}
environment: image
provider: existing
host: {{address: sim-host}}
ssh:
  user: {host.user}
  key_file: {host.key_file}
  host: 127.0.0.1
  port: {host.port}
  known_hosts: {tmp_path / 'known_hosts'}
engine:
  source: distro
apps:
  cache:
    image: {ref}
    pull: never
    command: [sh, -c, 'echo "redis-like of {unique}" > /data/index.html && exec busybox httpd -f -p {PORT} -h /data']
    port: {PORT}
    publish: {PORT}
    volumes: {{data: /data}}
    healthcheck: {{http: /}}
    memory: 64m
""")
    try:
        assert host.exec(f"docker image inspect {ref} 2>/dev/null || echo absent")[1].strip().endswith("absent")
        up = json_of(dockyard(env, "up", "-p", str(playbook), "--json"))
        assert up["ok"] is True and up["failed"] == 0
        image = next(t for t in tasks(up) if t["task"] == "app cache: image")
        assert image["status"] == "changed"
        assert [s["op"]["op"] for c in image["changes"] for s in c["steps"]] == ["image.ship"]  # never pulled
        code, out = host.exec(f"docker image inspect -f '{{{{.Id}}}}' {ref}")
        assert code == 0 and out.strip() == local_id, out  # shipped: the very image made here
        status, body = get(f"http://127.0.0.1:{host.published(PORT)}/")
        assert status == 200 and f"redis-like of {unique}" in body
        before = _container_id(host, unique)
        shown = json_of(dockyard(env, "status", "-p", str(playbook), "--json", timeout=120))
        row = next(r for r in shown["apps"] if r["app"] == "cache")
        assert row["version"] == ref, row
        again = json_of(dockyard(env, "deploy", "-p", str(playbook), "--json"))
        assert again["ok"] is True and again["changed"] == 0, [
            (t["task"], t["status"]) for t in tasks(again) if t["status"] != "ok"]
        assert _container_id(host, unique) == before  # untouched
    finally:
        stop_simhost(host)
        subprocess.run(["docker", "rmi", ref], capture_output=True)  # the tag only: the image is CI's
