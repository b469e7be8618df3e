"""Swarm mode through the CLI: deploy, up and recreate refuse (exit 2, naming the key) what they cannot deploy
as a service yet, before any host is made, torn down or touched. The 198.51.100.x addresses are never dialled
(the refusal comes first)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit.test_cli import run

pytestmark = pytest.mark.unit

SWARM = """\
project: shop
environment: prod
provider: existing
host: {addresses: ["198.51.100.10", "198.51.100.11:2222", "198.51.100.12"]}
ssh: {user: deploy, key_file: id_test}
engine: {mode: swarm, managers: 3}
"""


REFUSED = [
    ("{template: python-web, port: 8000, domains: [shop.example.com]}", (), "apps.cache.domains"),
    ("{template: python-web, port: 8000}", ("--prune",), "engine.mode"),
    ("{template: python-web, port: 8000, publish: '127.0.0.1:8080'}", (), "apps.cache.publish"),
]


@pytest.mark.parametrize(("command", "app", "args", "key"), [
    *[(command, *case) for command in [("deploy",), ("up",)] for case in REFUSED],
    *[(("recreate", "--yes"), *case) for case in REFUSED if not case[1]],  # recreate has no --prune
])
def test_swarm_commands_refuse_what_services_cannot_do_yet(tmp_path: Path, command: tuple[str, ...], app: str,
                                                           args: tuple[str, ...], key: str) -> None:
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "prod.yml").write_text(SWARM + f"apps:\n  cache: {app}\n")
    done = run(tmp_path, *command, "-e", "prod", "--json", *args)
    assert done.returncode == 2, done.stderr
    error = json.dumps(json.loads(done.stdout))
    assert key in error and "swarm" in error
    assert "Traceback" not in done.stderr


def test_swarm_deploy_takes_image_apps(tmp_path: Path) -> None:
    """No longer refused: deploy goes on to the hosts (and fails there, exit 1: this key file does not exist)."""
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "prod.yml").write_text(SWARM + "apps:\n  cache: {image: 'redis:7.2'}\n")
    done = run(tmp_path, "deploy", "-e", "prod", "--json")
    assert done.returncode == 1, done.stderr
    assert "apps.cache.image" not in done.stdout + done.stderr and "key file" in done.stderr


def test_validate_accepts_a_three_host_swarm(tmp_path: Path) -> None:
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "prod.yml").write_text(SWARM)
    done = run(tmp_path, "validate", "-e", "prod")
    assert done.returncode == 0, done.stderr
