"""The command line as a user meets it: exit codes, messages, entry points, config layering.

Each test runs the real program in a subprocess (`python -m provision`, which is the `dockyard` console
script, or `python -m invoke` with tasks.py), in a throwaway project directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]

GOOD = """\
project: shop
provider: existing
host: {address: 198.51.100.10}
ssh: {user: deploy, key_file: id_test}
apps:
  web:
    dockerfile: Dockerfile
    context: web
    port: 8000
    publish: 8081
    healthcheck: {http: /healthz}
"""


def run(cwd: Path, *args: str, entry: str = "dockyard", env: dict[str, str] | None = None,
        core: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    if entry == "dockyard":
        argv = [sys.executable, "-m", "provision", *core, *args]
    else:
        argv = [sys.executable, "-m", "invoke", "--search-root", str(ROOT), *core, *args]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKYARD_", "INVOKE_"))}
    full_env["PYTHONPATH"] = str(ROOT)
    full_env.update(env or {})
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=60, env=full_env, check=False)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "staging.yml").write_text(GOOD)
    web = tmp_path / "playbooks" / "web"
    web.mkdir()
    (web / "Dockerfile").write_text("FROM scratch\nCOPY app.txt /\n")
    (web / "app.txt").write_text("hello\n")
    return tmp_path


@pytest.mark.parametrize("entry", ["dockyard", "invoke"])
def test_validate_prints_the_resolved_plan(project: Path, entry: str) -> None:
    done = run(project, "validate", "-e", "staging", entry=entry)
    assert done.returncode == 0, done.stderr
    assert "shop/staging" in done.stdout
    assert "deploy@198.51.100.10:22" in done.stdout
    assert "web" in done.stdout and "0.0.0.0:8081" in done.stdout


def test_both_entry_points_list_the_same_tasks(project: Path) -> None:
    via_dockyard = run(project, "--list", entry="dockyard")
    via_invoke = run(project, "--list", entry="invoke")
    assert via_dockyard.returncode == via_invoke.returncode == 0

    def names(out: str) -> list[str]:
        return sorted(line.split()[0] for line in out.splitlines()[1:] if line.startswith("  ") and line.split())

    assert names(via_dockyard.stdout) == names(via_invoke.stdout)
    assert "validate" in names(via_dockyard.stdout) and "render" in names(via_dockyard.stdout)


def test_invalid_playbook_exits_2_with_file_key_path_and_no_traceback(project: Path) -> None:
    path = project / "playbooks" / "staging.yml"
    path.write_text(GOOD.replace("healthcheck: {http: /healthz}", "healthcheck: {http: healthz}"))
    done = run(project, "validate", "-e", "staging")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr + done.stdout
    assert str(path) in done.stderr
    assert "apps.web.healthcheck" in done.stderr


def test_json_error_document(project: Path) -> None:
    (project / "playbooks" / "staging.yml").write_text(GOOD.replace("port: 8000", "port: 99999"))
    done = run(project, "validate", "-e", "staging", "--json")
    assert done.returncode == 2
    doc = json.loads(done.stdout)
    assert doc["ok"] is False and doc["exit_code"] == 2
    assert any(e["key_path"].startswith("apps.web.port") for e in doc["errors"])


def test_validate_json_document(project: Path) -> None:
    done = run(project, "validate", "-e", "staging", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    (pb,) = doc["playbooks"]
    assert pb["project"] == "shop" and pb["environment"] == "staging"
    assert pb["apps"]["web"]["publish"] == "0.0.0.0:8081"


def test_unknown_environment_lists_the_available_ones(project: Path) -> None:
    done = run(project, "validate", "-e", "prod")
    assert done.returncode == 2
    assert "staging" in done.stderr


def test_render_prints_the_dockerfile_and_rejects_unknown_apps(project: Path) -> None:
    done = run(project, "render", "-e", "staging", "--app", "web")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "FROM scratch\nCOPY app.txt /\n"
    missing = run(project, "render", "-e", "staging", "--app", "nope")
    assert missing.returncode == 2 and "nope" in missing.stderr and "web" in missing.stderr


def test_environment_variable_and_config_file_layers(project: Path) -> None:
    # DOCKYARD_ENV picks the playbook when -e is not given ...
    done = run(project, "validate", env={"DOCKYARD_ENV": "staging", "DOCKYARD_JSON": "1"})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["playbooks"][0]["environment"] == "staging"
    # ... a config file's `dockyard:` section does the same (invoke.yaml beside tasks.py, or -f FILE) ...
    (project / "invoke.yaml").write_text("dockyard:\n  env: nosuch\n")
    from_file = run(project, "validate", entry="invoke", core=("-f", str(project / "invoke.yaml")))
    assert from_file.returncode == 2 and "nosuch" in from_file.stderr
    # ... and the flag beats both.
    flag = run(project, "validate", "-e", "staging", entry="invoke", env={"DOCKYARD_ENV": "nosuch"})
    assert flag.returncode == 0, flag.stderr


@pytest.mark.parametrize("how", ["flag", "env", "config"])
def test_an_error_is_one_json_document_whichever_layer_asks_for_json(project: Path, how: str) -> None:
    (project / "playbooks" / "staging.yml").write_text(GOOD.replace("port: 8000", "port: 99999"))
    if how == "flag":
        done = run(project, "validate", "-e", "staging", "--json")
    elif how == "env":
        done = run(project, "validate", "-e", "staging", env={"DOCKYARD_JSON": "1"})
    else:
        (project / "invoke.yaml").write_text("dockyard:\n  json: true\n")
        done = run(project, "validate", "-e", "staging", entry="invoke",
                   core=("-f", str(project / "invoke.yaml")))
    assert done.returncode == 2, done.stderr
    doc = json.loads(done.stdout)  # exactly one document (json.loads refuses trailing text)
    assert doc["ok"] is False and doc["exit_code"] == 2
    assert doc["error"]["kind"] == "invalid input" and "apps.web.port" in doc["error"]["message"]
    assert "apps.web.port" in done.stderr  # the human message still goes to stderr
    plain = run(project, "validate", "-e", "staging")
    assert plain.returncode == 2 and plain.stdout == ""
