"""provision.render: template lookup, variable precedence, error messages, the built-in templates' shape."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from provision.errors import InputError
from provision.playbook import load_playbook
from provision.render import (
    BUILTIN_DIR,
    list_templates,
    render_dockerfile,
    template_info,
)
from provision.spec import Playbook

pytestmark = pytest.mark.unit

BUILTINS = ["django", "generic", "node-web", "python-web", "static-site"]


def make_playbook(root: Path, apps: dict[str, Any], top_vars: dict[str, Any] | None = None,
                  in_playbooks_dir: bool = True) -> Playbook:
    doc: dict[str, Any] = {"project": "shop", "environment": "staging", "provider": "local", "apps": apps}
    if top_vars is not None:
        doc["vars"] = top_vars
    path = root / ("playbooks" if in_playbooks_dir else "") / "staging.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return load_playbook(path)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def problem(exc: pytest.ExceptionInfo[InputError]):
    assert len(exc.value.problems) == 1, exc.value.problems
    return exc.value.problems[0]


# --- lookup ------------------------------------------------------------------------------------------------

def test_builtins_are_found_through_the_package(tmp_path: Path) -> None:
    assert BUILTIN_DIR.resolve() == (Path(__file__).resolve().parents[2] / "templates").resolve()
    assert list_templates(None) == BUILTINS
    pb = make_playbook(tmp_path, {})
    assert list_templates(pb) == BUILTINS


def test_project_templates_next_to_playbooks_dir_are_listed_and_used(tmp_path: Path) -> None:
    write(tmp_path / "templates/dockerfiles/worker.Dockerfile.j2", "FROM {{ base }}\n")
    pb = make_playbook(tmp_path, {"w": {"template": "worker", "vars": {"base": "alpine:3"}}})
    assert list_templates(pb) == sorted([*BUILTINS, "worker"])
    out = render_dockerfile(pb, "w")
    assert out.text == "FROM alpine:3\n"
    assert out.template == "worker" and out.source == tmp_path / "templates/dockerfiles/worker.Dockerfile.j2"
    assert out.read_only is False and out.writable == ()  # no metadata: no read-only claim


def test_project_overrides_a_builtin_and_the_playbook_dir_wins(tmp_path: Path) -> None:
    write(tmp_path / "templates/dockerfiles/python-web.Dockerfile.j2", "FROM outer-{{ app }}\n")
    pb = make_playbook(tmp_path, {"web": {"template": "python-web", "port": 8000}})
    assert render_dockerfile(pb, "web").text == "FROM outer-web\n"
    # a templates/ directory beside the playbook file itself is searched first
    write(tmp_path / "playbooks/templates/dockerfiles/python-web.Dockerfile.j2", "FROM inner-{{ app }}\n")
    assert render_dockerfile(pb, "web").text == "FROM inner-web\n"
    assert list_templates(pb) == BUILTINS  # overriding does not add a name


def test_playbook_not_in_a_playbooks_dir_uses_templates_beside_it(tmp_path: Path) -> None:
    write(tmp_path / "templates/dockerfiles/site.Dockerfile.j2", "FROM x\n")
    pb = make_playbook(tmp_path, {"s": {"template": "site"}}, in_playbooks_dir=False)
    assert render_dockerfile(pb, "s").text == "FROM x\n"
    # ... but not a templates/ dir one level up when the playbook is not in playbooks/
    write(tmp_path.parent / "templates/dockerfiles/other.Dockerfile.j2", "FROM y\n")
    assert "other" not in list_templates(pb)


def test_override_extends_the_builtin_and_keeps_its_metadata_when_copied(tmp_path: Path) -> None:
    write(tmp_path / "templates/dockerfiles/python-web.Dockerfile.j2",
          '{% extends "builtin/dockerfiles/python-web.Dockerfile.j2" %}\n'
          '{% block cmd %}\nCMD ["python3", "-m", "myapp"]\n{% endblock %}\n')
    meta = (BUILTIN_DIR / "dockerfiles/python-web.meta.yml").read_text()
    write(tmp_path / "templates/dockerfiles/python-web.meta.yml", meta)
    pb = make_playbook(tmp_path, {"web": {"template": "python-web", "port": 8000}})
    out = render_dockerfile(pb, "web")
    assert out.text.rstrip().endswith('CMD ["python3", "-m", "myapp"]')
    assert "gunicorn" not in out.text.splitlines()[-1]
    assert "FROM python:3.12-slim" in out.text and "USER 10001:10001" in out.text
    assert out.read_only is True


# --- variables ---------------------------------------------------------------------------------------------

def test_variable_precedence_defaults_builtins_playbook_app(tmp_path: Path) -> None:
    write(tmp_path / "templates/dockerfiles/show.Dockerfile.j2",
          "a={{ a }}\nb={{ b }}\nc={{ c }}\nd={{ d }}\nport={{ port }}\napp={{ app }}\n"
          "project={{ project }}\nenvironment={{ environment }}\n")
    write(tmp_path / "templates/dockerfiles/show.meta.yml",
          "vars:\n  a: {default: meta}\n  b: {default: meta}\n  c: {default: meta}\n  d: meta-short\n"
          "  port: {default: 1}\n")
    pb = make_playbook(tmp_path, {"web": {"template": "show", "port": 8000, "vars": {"c": "app", "port": 9}}},
                       top_vars={"b": "top", "c": "top", "project": "top-project"})
    out = render_dockerfile(pb, "web")
    got = dict(line.split("=", 1) for line in out.text.splitlines())
    assert got == {"a": "meta", "b": "top", "c": "app", "d": "meta-short", "port": "9", "app": "web",
                   "project": "top-project", "environment": "staging"}
    assert out.variables["c"] == "app" and out.variables["port"] == 9


def test_builtin_template_vars_from_top_level_and_app(tmp_path: Path) -> None:
    pb = make_playbook(tmp_path, {
        "a": {"template": "python-web", "port": 8000},
        "b": {"template": "python-web", "port": 8001,
              "vars": {"workers": 5, "wsgi": "mysite.wsgi:application"}},
    }, top_vars={"workers": 3, "base_image": "python:3.11-slim"})
    a, b = render_dockerfile(pb, "a"), render_dockerfile(pb, "b")
    assert "FROM python:3.11-slim\n" in a.text and "FROM python:3.11-slim\n" in b.text
    assert _cmd(a.text)[-1] == "app:app" and _flag(_cmd(a.text), "--workers") == "3"
    assert _cmd(b.text)[-1] == "mysite.wsgi:application" and _flag(_cmd(b.text), "--workers") == "5"
    assert _flag(_cmd(b.text), "--bind") == "0.0.0.0:8001"


def test_app_command_becomes_the_exec_form_cmd(tmp_path: Path) -> None:
    pb = make_playbook(tmp_path, {
        "w": {"template": "generic", "command": "sh -c 'echo \"hi there\"; sleep 1'"},
        "n": {"template": "node-web", "port": 3000, "vars": {"start": "npm start"}},
        "g": {"template": "generic"},
    })
    assert _cmd(render_dockerfile(pb, "w").text) == ["sh", "-c", 'echo "hi there"; sleep 1']
    assert _cmd(render_dockerfile(pb, "n").text) == ["npm", "start"]
    assert "CMD" not in render_dockerfile(pb, "g").text  # no command: the base image's


def test_volume_mount_points_are_created_for_the_app_user(tmp_path: Path) -> None:
    pb = make_playbook(tmp_path, {"web": {"template": "python-web", "port": 8000,
                                          "volumes": {"data": "/var/lib/app", "media": "/srv/~media"}}})
    text = render_dockerfile(pb, "web").text
    assert "RUN mkdir -p '/srv/~media' /var/lib/app \\\n && chown 10001:10001 '/srv/~media' " \
           "/var/lib/app\n" in text
    assert text.index("chown 10001:10001") < text.index("USER 10001:10001")


def test_values_are_shell_quoted_in_run_lines(tmp_path: Path) -> None:
    pb = make_playbook(tmp_path, {"web": {"template": "python-web", "port": 8000,
                                          "vars": {"apt_packages": ["libpq5", "x;rm -rf /"]}}})
    text = render_dockerfile(pb, "web").text
    assert "--no-install-recommends libpq5 'x;rm -rf /'" in text


# --- errors ------------------------------------------------------------------------------------------------

def test_missing_variable_names_template_variable_app_and_key_path(tmp_path: Path) -> None:
    pb = make_playbook(tmp_path, {"web": {"template": "python-web"}})  # python-web needs `port`
    with pytest.raises(InputError) as exc:
        render_dockerfile(pb, "web")
    p = problem(exc)
    assert p.file == pb.source and p.key_path == "apps.web.vars.port"
    assert "template 'python-web'" in p.message and "variable 'port'" in p.message
    assert "app 'web'" in p.message and "set apps.web.port" in p.message
    assert re.search(r"python-web\.Dockerfile\.j2:\d+", p.message), p.message


def test_missing_variable_in_a_project_template_points_at_its_line(tmp_path: Path) -> None:
    tpl = write(tmp_path / "templates/dockerfiles/mine.Dockerfile.j2", "FROM x\n\nRUN echo {{ greeting }}\n")
    pb = make_playbook(tmp_path, {"job": {"template": "mine"}})
    with pytest.raises(InputError) as exc:
        render_dockerfile(pb, "job")
    p = problem(exc)
    assert p.key_path == "apps.job.vars.greeting"
    assert f"{tpl}:3" in p.message and "'greeting'" in p.message and "'job'" in p.message
    assert "Traceback" not in str(exc.value)


def test_unknown_template_lists_available_and_suggests(tmp_path: Path) -> None:
    pb = make_playbook(tmp_path, {"web": {"template": "pyhton-web"}})
    with pytest.raises(InputError) as exc:
        render_dockerfile(pb, "web")
    p = problem(exc)
    assert p.file == pb.source and p.key_path == "apps.web.template"
    assert "unknown template 'pyhton-web'" in p.message and "did you mean 'python-web'?" in p.message
    assert "generic, node-web, python-web, static-site" in p.message


def test_template_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    tpl = write(tmp_path / "templates/dockerfiles/broken.Dockerfile.j2", "FROM x\n{% if %}\n")
    pb = make_playbook(tmp_path, {"b": {"template": "broken"}})
    with pytest.raises(InputError) as exc:
        render_dockerfile(pb, "b")
    p = problem(exc)
    assert p.key_path == "apps.b.template"
    assert "syntax error" in p.message and f"{tpl}:2" in p.message


def test_template_can_reject_a_value(tmp_path: Path) -> None:
    pb = make_playbook(tmp_path, {"web": {"template": "python-web", "port": 8000, "vars": {"workers": 0}}})
    with pytest.raises(InputError) as exc:
        render_dockerfile(pb, "web")
    p = problem(exc)
    assert p.key_path == "apps.web.vars" and "workers must be a number" in p.message


def test_bad_metadata_is_an_input_error(tmp_path: Path) -> None:
    write(tmp_path / "templates/dockerfiles/m.Dockerfile.j2", "FROM x\n")
    meta = write(tmp_path / "templates/dockerfiles/m.meta.yml", "vars: [oops\n")
    pb = make_playbook(tmp_path, {"m": {"template": "m"}})
    with pytest.raises(InputError) as exc:
        render_dockerfile(pb, "m")
    assert problem(exc).file == meta


def test_unknown_app_is_an_input_error(tmp_path: Path) -> None:
    pb = make_playbook(tmp_path, {"web": {"template": "generic"}})
    with pytest.raises(InputError, match="no app 'api'"):
        render_dockerfile(pb, "api")


# --- dockerfile: apps --------------------------------------------------------------------------------------

def test_dockerfile_app_reads_the_file_inside_its_context(tmp_path: Path) -> None:
    write(tmp_path / "apps/api/docker/Dockerfile.prod", "FROM scratch\nCOPY . /\n")
    pb = make_playbook(tmp_path, {"api": {"dockerfile": "docker/Dockerfile.prod", "context": "../apps/api"}})
    out = render_dockerfile(pb, "api")
    assert out.text == "FROM scratch\nCOPY . /\n"
    assert out.template is None and out.dockerfile == "docker/Dockerfile.prod"
    assert out.source == (tmp_path / "apps/api/docker/Dockerfile.prod").resolve()
    assert out.read_only is False


def test_missing_dockerfile_names_the_key_path(tmp_path: Path) -> None:
    (tmp_path / "apps/api").mkdir(parents=True)
    pb = make_playbook(tmp_path, {"api": {"dockerfile": "Dockerfile", "context": "../apps/api"}})
    with pytest.raises(InputError) as exc:
        render_dockerfile(pb, "api")
    p = problem(exc)
    assert p.key_path == "apps.api.dockerfile" and "no Dockerfile at" in p.message
    assert str((tmp_path / "apps/api/Dockerfile").resolve()) in p.message


# --- the built-in templates --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_template_shape(name: str, tmp_path: Path) -> None:
    info = template_info(name)
    assert info.builtin and info.description
    assert "base_image" in info.defaults
    pb = make_playbook(tmp_path, {"app": {"template": name, "port": 8080}})
    text = render_dockerfile(pb, "app").text
    lines = text.splitlines()
    assert text.endswith("\n") and "\n\n" not in text  # no stray blank lines from template tags
    assert [line for line in lines if line.startswith("FROM ")] == [f"FROM {info.defaults['base_image']}"]
    assert "org.opencontainers.image.title=\"shop/app\"" in text
    users = [line for line in lines if line.startswith("USER ")]
    assert users and users[-1] == "USER 10001:10001"  # the last USER wins: never root at run time
    assert "EXPOSE 8080" in lines
    assert "--mount" not in text and "<<" not in text  # classic builder: no BuildKit-only syntax
    for line in lines:
        if line.startswith("CMD "):
            json.loads(line[4:])  # exec form, valid JSON
    # every variable the template uses is declared in its metadata
    assert set(info.variables) >= set(info.defaults)


def test_generic_without_port_has_no_expose(tmp_path: Path) -> None:
    pb = make_playbook(tmp_path, {"w": {"template": "generic"}})
    assert "EXPOSE" not in render_dockerfile(pb, "w").text


def test_read_only_support_is_declared(tmp_path: Path) -> None:
    assert {n: template_info(n).read_only for n in BUILTINS} == {
        "django": True, "generic": False, "node-web": True, "python-web": True, "static-site": True}
    pb = make_playbook(tmp_path, {"web": {"template": "python-web", "port": 8000}})
    out = render_dockerfile(pb, "web")
    assert out.read_only and out.writable == ("/tmp",)
    assert "--worker-tmp-dir" in _cmd(out.text)  # gunicorn must not need a writable /tmp on disk


def _cmd(text: str) -> list[str]:
    cmd = [line for line in text.splitlines() if line.startswith("CMD ")]
    assert len(cmd) == 1, text
    return json.loads(cmd[0][4:])


def _flag(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


@pytest.mark.parametrize(("template", "bad", "message"), [
    ("python-web", {"uid": "root"}, "uid must be a number ≥ 1"),
    ("static-site", {"uid": 0}, "uid must be a number ≥ 1"),
    ("node-web", {"user": "Bad User"}, "user must be a lower-case user name"),
    ("python-web", {"port": "http"}, "port must be a number from 1 to 65535"),
    ("generic", {"env": {"not-a-name": "x"}}, "not-a-name is not an environment variable name"),
])
def test_bad_values_are_refused_rather_than_rendered(tmp_path: Path, template: str, bad: dict[str, Any],
                                                     message: str) -> None:
    pb = make_playbook(tmp_path, {"a": {"template": template, "port": 8080, "vars": bad}})
    with pytest.raises(InputError) as exc:
        render_dockerfile(pb, "a")
    p = problem(exc)
    assert p.key_path == "apps.a.vars" and message in p.message and f"template {template!r}" in p.message


def test_a_template_name_cannot_reach_outside_the_template_dirs(tmp_path: Path) -> None:
    write(tmp_path / "secret.Dockerfile.j2", "FROM leaked\n")
    pb = make_playbook(tmp_path, {})  # the loader refuses such names too; render does not rely on it
    with pytest.raises(InputError) as exc:
        template_info("../../secret", pb, key_path="apps.a.template")
    p = problem(exc)
    assert p.key_path == "apps.a.template" and "is not a template name" in p.message


def test_dockyards_own_playbooks_dir_does_not_list_builtins_twice() -> None:
    from provision.render import template_dirs

    root = Path(__file__).resolve().parents[2]
    pb = load_playbook(root / "playbooks" / "local.yml")
    assert [d.resolve() for d in template_dirs(pb)] == [BUILTIN_DIR.resolve()]
    assert all(template_info(n, pb).builtin for n in list_templates(pb))
