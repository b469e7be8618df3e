"""Swarm mode through the CLI: up/recreate refuse (exit 2, naming engine.mode) before touching any host, as
they do not deploy apps as swarm services yet; deploy does, and refuses (exit 2, naming the key) what it cannot
deploy as a service yet. The 198.51.100.x addresses are never dialled (the refusal comes first)."""

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


@pytest.mark.parametrize("command", ["up", "recreate"])
def test_app_commands_refuse_swarm_mode_with_exit_2_naming_engine_mode(tmp_path: Path, command: str) -> None:
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "prod.yml").write_text(SWARM)
    done = run(tmp_path, command, "-e", "prod", "--json", *(["--yes"] if command == "recreate" else []))
    assert done.returncode == 2, done.stderr
    error = json.loads(done.stdout)
    assert "engine.mode" in json.dumps(error) and "not supported yet" in json.dumps(error)
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(("app", "args", "key"), [
    ("{template: python-web, port: 8000, domains: [shop.example.com]}", (), "apps.cache.domains"),
    ("{template: python-web, port: 8000}", ("--prune",), "engine.mode"),
    ("{template: python-web, port: 8000, publish: '127.0.0.1:8080'}", (), "apps.cache.publish"),
])
def test_swarm_deploy_refuses_what_services_cannot_do_yet(tmp_path: Path, app: str, args: tuple[str, ...],
                                                          key: str) -> None:
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "prod.yml").write_text(SWARM + f"apps:\n  cache: {app}\n")
    done = run(tmp_path, "deploy", "-e", "prod", "--json", *args)
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
