"""Swarm mode with a registry, on TWO sim hosts: the built app is built once (here, `build: local`), shipped to
the first host only, pushed from there to a registry, and the service runs `<registry>/<project>/site@digest`:
the second node pulls it itself and never gets a build or a shipped image.

The registry is Debian's `docker-registry` (tests/images/registry: no Docker Hub) in a container this test
creates on the default bridge; the sim hosts reach it at its 172.17.x address, told so by
`engine.daemon: {insecure-registries: [...]}`. It asks for htpasswd credentials (user `ci`, a throwaway
password given as the secret REGISTRY_PASSWORD): the push uses them through the Engine API's auth_config and
the second node's pull through the service's X-Registry-Auth header; the password appears in no output.
A second `up` changes nothing. Swarm runs only inside the sim hosts; traffic from here only to 127.0.0.1.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.helpers import cli_env, dockyard, explain, get, json_of, remove_labelled, swarm_playbook_head
from tests.images import image_ref
from tests.simhost import SimHost, start_simhosts, stop_simhost

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]

PORT = 18080
ANSWER_WAIT = 120.0


def answers(host: SimHost, text: str) -> bool:
    deadline = time.monotonic() + ANSWER_WAIT
    while time.monotonic() < deadline:
        try:
            code, body = get(f"http://127.0.0.1:{host.published(PORT)}/", attempts=1, delay=0)
        except AssertionError:  # nothing answered yet
            code, body = 0, ""
        if code == 200 and text in body:
            return True
        time.sleep(2)
    return False


def start_registry(name: str, password: str, workdir: Path) -> str:
    """The registry container (default bridge, nothing published; htpasswd user `ci`); its bridge address."""
    import bcrypt  # paramiko's dependency: the htpasswd file's bcrypt hash

    workdir.mkdir(parents=True, exist_ok=True)
    htpasswd = workdir / "htpasswd"
    htpasswd.write_text(f"ci:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(prefix=b'2a')).decode()}\n")
    for argv in (["docker", "create", "--name", name, "--label", f"dockyard-test.registry={name}",
                  image_ref("registry")],
                 ["docker", "cp", str(htpasswd), f"{name}:/etc/docker/registry/htpasswd"],
                 ["docker", "start", name]):
        subprocess.run(argv, check=True, capture_output=True, timeout=120)
    out = subprocess.run(["docker", "inspect", "-f", "{{.NetworkSettings.IPAddress}}", name], check=True,
                         capture_output=True, text=True, timeout=60).stdout.strip()
    assert out, f"registry {name} has no bridge address"
    return out


def inspect(host: SimHost, what: str, ref: str) -> dict:
    code, out = host.exec(f"docker {what} inspect {ref}")
    assert code == 0, out
    return json.loads(out)[0]


def test_a_built_app_is_pushed_once_and_pulled_by_every_node(tmp_path: Path, unique: str) -> None:
    workdir = tmp_path / "simhost"
    hosts: list[SimHost] = []
    registry_name = f"{unique}-registry"
    site = tmp_path / "apps" / "site"
    site.mkdir(parents=True)
    password = f"{unique}-registry-password"
    try:
        registry = f"{start_registry(registry_name, password, tmp_path / 'registry')}:5000"
        hosts.extend(start_simhosts(unique, workdir, 2, extra_ports=(PORT,)))
        (site / "index.html").write_text(f"<h1>{unique} pushed</h1>\n")
        playbook = tmp_path / "playbooks" / "swarm.yml"
        playbook.parent.mkdir()
        playbook.write_text(f"""\
{swarm_playbook_head(unique, hosts, tmp_path)}  daemon: {{insecure-registries: ["{registry}"]}}
registry:
  server: "{registry}"
  username: ci
  password_secret: REGISTRY_PASSWORD
apps:
  site:
    template: static-site
    context: ../apps/site
    vars: {{base_image: "{image_ref('static')}"}}
    build: local
    port: 8080
    publish: {PORT}
    replicas: 2
    memory: 64m
""")
        env = cli_env(REGISTRY_PASSWORD=password)
        first = dockyard(env, "up", "-p", str(playbook), "--json")
        doc = json_of(first)
        assert all(h["failed"] == 0 for h in doc["hosts"]), explain(first)
        assert password not in first.stdout + first.stderr
        name = f"{unique}-swarm-site"
        spec = inspect(hosts[0], "service", name)["Spec"]
        image = spec["TaskTemplate"]["ContainerSpec"]["Image"]
        assert image.startswith(f"{registry}/{unique}/site@sha256:"), image
        # every node runs a task (host-mode port: one per node) of the pushed image and answers
        assert all(answers(h, "pushed") for h in hosts)
        second = hosts[1]
        pulled = inspect(second, "image", image)
        assert image in pulled["RepoDigests"], pulled["RepoDigests"]
        # the second node never got the build's local tag: nothing was built or shipped there
        code, tags = second.exec("docker images --format '{{.Repository}}:{{.Tag}}'")
        assert code == 0, tags
        assert not [t for t in tags.split() if t.startswith(f"{unique}/site:")], tags
        code, tags = hosts[0].exec("docker images --format '{{.Repository}}:{{.Tag}}'")
        assert [t for t in tags.split() if t.startswith(f"{unique}/site:")], tags  # the first host built/got it

        again = dockyard(env, "up", "-p", str(playbook), "--json")
        assert [(h["changed"], h["failed"]) for h in json_of(again)["hosts"]] == [(0, 0)] * 2, explain(again)
        assert inspect(hosts[0], "service", name)["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] == image
    finally:
        for host in hosts:
            stop_simhost(host)
        subprocess.run(["docker", "rm", "-f", "-v", registry_name], capture_output=True, timeout=120)
        remove_labelled(unique)
