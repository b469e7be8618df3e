"""The local half of deploy: render + hash + container config per app, and every input problem before any
effect (no engine, no SSH)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from provision.appops import DeployContext
from provision.deploy import desired_apps, select
from provision.errors import InputError
from provision.facts.apps import parse
from provision.ops import Upload
from provision.phases.deploy import deploy_host
from provision.plan.apps import plan_container
from provision.playbook import load_playbook
from provision.secrets import SecretSource, make_redactor

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "apps"
SECRET = "very-secret-value-123"


def playbook(tmp_path: Path, **web_over):
    shutil.copytree(FIXTURES / "flask", tmp_path / "flask", dirs_exist_ok=True)
    shutil.copytree(FIXTURES / "static", tmp_path / "static", dirs_exist_ok=True)
    web = {"template": "python-web", "context": "flask", "port": 8000, "secrets": ["DB_PASSWORD"],
           "vars": {"base_image": "py:1"}, **web_over}
    doc = {"project": "shop", "environment": "prod", "provider": "existing", "host": {"address": "192.0.2.1"},
           "apps": {"web": web,
                    "site": {"template": "static-site", "context": "static", "port": 8080,
                             "vars": {"base_image": "static:1"}, "reach": ["web"]}}}
    path = tmp_path / "prod.yml"
    path.write_text(yaml.safe_dump(doc))
    return load_playbook(path)


def test_desired_apps_render_hash_and_configure(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"DB_PASSWORD={SECRET}\n")
    pb = playbook(tmp_path)
    web, site = desired_apps(pb, ["web", "site"], SecretSource(pb, environ={}), "root")
    assert web.image == f"shop/web:{web.build_hash[:12]}"
    assert web.container.read_only is True  # python-web supports it
    assert web.container.env_file == "/var/lib/dockyard/shop-prod/web.env"
    # the env file and the redaction are read from the secret source by deploy's executor, never by the plan
    ctx = DeployContext(remote=None, secrets=SecretSource(pb, environ={}))
    env_upload = next(s.op for c in plan_container(web, parse("shop", "prod", [], [], [], [])) for s in c.steps
                      if isinstance(s.op, Upload))
    assert ctx.secret_file(env_upload.content) == f"DB_PASSWORD={SECRET}\n".encode()
    assert ctx.redactor(web.container.secrets)(f"log line with {SECRET}") == "log line with ***"
    text = web.container.describe() + " ".join(web.container.create_argv()) + repr(web.container)
    assert SECRET not in text
    assert site.container.extra_networks == ("shop-prod-web",)
    # the same input gives the same hashes (nothing time- or machine-dependent)
    again = desired_apps(pb, ["web"], SecretSource(pb, environ={}), "root")[0]
    assert (again.build_hash, again.container.config_hash) == (web.build_hash, web.container.config_hash)


def test_changed_secret_changes_only_the_config_hash(tmp_path: Path) -> None:
    pb = playbook(tmp_path)
    a = desired_apps(pb, ["web"], SecretSource(pb, environ={"DB_PASSWORD": "one"}), "root")[0]
    b = desired_apps(pb, ["web"], SecretSource(pb, environ={"DB_PASSWORD": "two"}), "root")[0]
    assert a.build_hash == b.build_hash
    assert a.container.config_hash != b.container.config_hash


def test_read_only_can_be_turned_off(tmp_path: Path) -> None:
    pb = playbook(tmp_path, read_only=False)
    web = desired_apps(pb, ["web"], SecretSource(pb, environ={"DB_PASSWORD": "x"}), "admin")[0]
    assert web.container.read_only is False and web.container.tmpfs == ()
    assert web.container.env_file == ".dockyard/shop-prod/web.env"  # a non-root user: under its home


def test_every_input_problem_at_once(tmp_path: Path) -> None:
    pb = playbook(tmp_path, vars={"base_image": "py:1", "workers": 0})  # the template rejects workers: 0
    with pytest.raises(InputError) as err:
        desired_apps(pb, ["web", "site"], SecretSource(pb, environ={}), "root")
    text = str(err.value)
    assert "DB_PASSWORD" in text and "apps.web.secrets" in text
    assert "workers" in text
    assert len(err.value.problems) == 2


def test_select_apps(tmp_path: Path) -> None:
    pb = playbook(tmp_path)
    sel = select(pb, ["site"])
    assert sel.apps == ("site",) and sel.networks == ("site", "web")  # site reaches web: its network too
    with pytest.raises(InputError, match="nope"):
        select(pb, ["nope"])


def test_prune_volumes_needs_prune(tmp_path: Path) -> None:
    pb = playbook(tmp_path)
    with pytest.raises(InputError, match="--prune"):
        deploy_host(pb, prune_volumes=True)


def test_redactor_longest_first() -> None:
    redact = make_redactor(["abc", "abcdef", "x"])  # values shorter than 3 are not redacted (too noisy)
    assert redact("abcdef abc x") == "*** *** x"
