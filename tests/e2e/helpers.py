"""Shared helpers for the CLI end-to-end tests: run `python -m provision` (the `dockyard` program) as a user
does, read its `--json` document, poll 127.0.0.1 URLs with bounded retries, and remove leftovers by label."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

# CI's debootstrap minbase: the sandbox image is built FROM it (no registry, no second debootstrap)
SANDBOX_ENV = {"DOCKYARD_MINBASE": "dockyard-ci/bookworm-minbase:1", "DOCKYARD_SANDBOX_BASE": "debootstrap"}


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        env.pop(name, None)
    env.update(SANDBOX_ENV)
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def dockyard(env: dict[str, str], *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """One CLI run, as a user types it (`dockyard ARGS` == `python -m provision ARGS`)."""
    return subprocess.run([sys.executable, "-m", "provision", *args], cwd=ROOT, env=env, text=True,
                          capture_output=True, stdin=subprocess.DEVNULL, timeout=timeout, check=False)


def explain(done: subprocess.CompletedProcess[str]) -> str:
    return f"exit {done.returncode}\nstdout:\n{done.stdout[-6000:]}\nstderr:\n{done.stderr[-6000:]}"


def json_of(done: subprocess.CompletedProcess[str], code: int = 0) -> dict[str, Any]:
    assert done.returncode == code, explain(done)
    return json.loads(done.stdout)


def ec2_client(endpoint: str, region: str) -> Any:
    """boto3's EC2 client for the moto server (fake credentials: never a real account)."""
    import boto3

    return boto3.client("ec2", region_name=region, endpoint_url=endpoint, aws_access_key_id="testing",
                        aws_secret_access_key="testing")


def aws_resources(ec2: Any, project: str, environment: str) -> tuple[list[str], list[str], list[str]]:
    """(live instance ids, security group ids, key pair names) dockyard made for (project, environment),
    read by describe calls."""
    name = f"dockyard-{project}-{environment}"
    res = ec2.describe_instances(Filters=[
        {"Name": "tag:dockyard:project", "Values": [project]},
        {"Name": "tag:dockyard:environment", "Values": [environment]},
        {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}])
    instances = [i["InstanceId"] for r in res["Reservations"] for i in r["Instances"]]
    groups = [g["GroupId"] for g in ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [name]}])["SecurityGroups"]]
    keys = [k["KeyName"] for k in ec2.describe_key_pairs(
        Filters=[{"Name": "key-name", "Values": [name]}])["KeyPairs"]]
    return instances, groups, keys


def tasks(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for h in doc["hosts"] for t in h["tasks"]]


def get(url: str, *, attempts: int = 30, delay: float = 1.0) -> tuple[int, str]:
    """GET a 127.0.0.1 URL, retrying (bounded) while it is not answering yet."""
    assert url.startswith("http://127.0.0.1:"), url  # the network rule
    last: Exception | None = None
    for _ in range(attempts):
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                return resp.status, resp.read().decode("utf-8", "replace")
        except (urllib.error.URLError, OSError) as exc:
            last = exc
            time.sleep(delay)
    raise AssertionError(f"{url} did not answer after {attempts} attempts: {last}")


def get_once(url: str) -> int:
    """One GET: the status code, or 0 when nothing answered."""
    assert url.startswith("http://127.0.0.1:"), url
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            resp.read()
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return 0


def container_ids(env: dict[str, str], playbook: Path) -> dict[str, str | None]:
    """app → its running container id, read through `status --json`."""
    doc = json_of(dockyard(env, "status", "-p", str(playbook), "--json", timeout=120))
    return {row["app"]: row["container"] for row in doc["apps"]}


def remove_labelled(project: str) -> list[str]:
    """Remove every container, volume, network and image on the local engine labelled with this (test)
    project (images: `build: local` apps are built here before they are shipped)."""
    import docker

    client = docker.from_env(timeout=120)
    removed: list[str] = []
    try:
        flt = {"label": f"dockyard.project={project}"}
        for c in client.containers.list(all=True, filters=flt):
            with contextlib.suppress(docker.errors.APIError):
                c.remove(force=True, v=True)
                removed.append(f"container {c.name}")
        for v in client.volumes.list(filters=flt):
            with contextlib.suppress(docker.errors.APIError):
                v.remove(force=True)
                removed.append(f"volume {v.name}")
        for n in client.networks.list(filters=flt):
            with contextlib.suppress(docker.errors.APIError):
                n.remove()
                removed.append(f"network {n.name}")
        for image in client.images.list(all=True, filters=flt):
            with contextlib.suppress(docker.errors.APIError):
                client.images.remove(image.id, force=True)
                removed.append(f"image {image.short_id}")
    finally:
        client.close()
    return removed


def labelled(project: str) -> tuple[list[str], list[str], list[str]]:
    """(containers, volumes, networks) on the local engine carrying `dockyard.project=<project>`."""
    import docker

    client = docker.from_env(timeout=120)
    try:
        flt = {"label": f"dockyard.project={project}"}
        return ([c.name for c in client.containers.list(all=True, filters=flt)],
                [v.name for v in client.volumes.list(filters=flt)],
                [n.name for n in client.networks.list(filters=flt)])
    finally:
        client.close()


def copy_example(dest: Path, project: str) -> Path:
    """playbooks/local.yml and apps/ copied under `dest` (the user's repo stays untouched), project renamed."""
    import shutil

    shutil.copytree(ROOT / "apps", dest / "apps", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    text = (ROOT / "playbooks" / "local.yml").read_text()
    assert "\nproject: demo\n" in text
    (dest / "playbooks").mkdir(parents=True)
    path = dest / "playbooks" / "local.yml"
    path.write_text(text.replace("\nproject: demo\n", f"\nproject: {project}\n"))
    return path


def swarm_playbook_head(project: str, hosts: list[Any], tmp_path: Path) -> str:
    """The top of a `provider: existing` swarm playbook over sim hosts (their one key, a known_hosts in
    tmp_path); the caller appends `apps:`."""
    addresses = ", ".join(f'"{h.host}:{h.port}"' for h in hosts)
    return f"""\
project: {project}
environment: swarm
provider: existing
host:
  addresses: [{addresses}]
ssh:
  user: deploy
  key_file: {hosts[0].key_file}
  known_hosts: {tmp_path / 'known_hosts'}
engine:
  mode: swarm
"""
