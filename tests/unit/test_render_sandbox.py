"""Templates render in a sandbox, and values that reach a Dockerfile are one line (provision.render_guard)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml

from provision.errors import InputError
from provision.playbook import load_playbook
from provision.render import render_dockerfile
from provision.render_daemon import render_daemon_json
from provision.spec import Playbook
from tests.cli import run_cli

pytestmark = pytest.mark.unit


def project(root: Path, apps: dict[str, Any], templates: dict[str, str] | None = None,
            top_vars: dict[str, Any] | None = None) -> Path:
    for rel, text in (templates or {}).items():
        (root / "templates" / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / "templates" / rel).write_text(text)
    doc: dict[str, Any] = {"project": "shop", "environment": "staging", "provider": "local", "apps": apps}
    if top_vars is not None:
        doc["vars"] = top_vars
    path = root / "playbooks" / "staging.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def evil(root: Path, body: str, name: str = "evil") -> Playbook:
    return load_playbook(project(root, {"web": {"template": name}},
                                 {f"dockerfiles/{name}.Dockerfile.j2": f"FROM busybox\n{body}\n"}))


def only_problem(exc: pytest.ExceptionInfo[InputError]) -> Any:
    assert len(exc.value.problems) == 1, exc.value.problems
    return exc.value.problems[0]


# --- the sandbox -------------------------------------------------------------------------------------------

def test_the_os_system_payload_exits_2_and_runs_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    marker = tmp_path / "marker"
    payload = f"{{{{ cycler.__init__.__globals__.os.system('id > {marker}') }}}}"
    # the payload is real: an ordinary Jinja environment runs it (so this test can fail)
    jinja2.Environment().from_string(payload).render()
    assert marker.exists()
    marker.unlink()

    playbook = project(tmp_path / "p", {"web": {"template": "evil"}},
                       {"dockerfiles/evil.Dockerfile.j2": f"FROM busybox\n{payload}\n"})
    code = run_cli("validate", "-p", str(playbook))
    err = capsys.readouterr().err
    assert code == 2, err
    assert not marker.exists()
    line = next(n for n, text in enumerate(playbook.read_text().splitlines(), 1) if "template:" in text)
    assert f"{playbook}:{line}: apps.web.template:" in err and "'evil'" in err and "app 'web'" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("body", [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ self._TemplateReference__context }}",
    "{{ range.__globals__ }}",
    "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "{{ namespace.__init__.__globals__ }}",
    "{% set x = [] %}{{ x.append(1) }}",  # immutable: values handed to a template are not modified
])
def test_classic_escapes_are_input_errors_naming_template_and_app(tmp_path: Path, body: str) -> None:
    pb = evil(tmp_path, body)
    with pytest.raises(InputError) as exc:
        render_dockerfile(pb, "web")
    p = only_problem(exc)
    assert p.file == pb.source and p.key_path == "apps.web.template"
    assert "template 'evil'" in p.message and "app 'web'" in p.message


@pytest.mark.parametrize("body", ["{{ 'x' * 100000000 }}", "{{ [1] * 100000000 }}", "{{ 9 ** 9999999 }}",
                                  "{% for i in range(10 ** 8) %}x{% endfor %}",
                                  "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}"])
def test_resource_bombs_are_refused(tmp_path: Path, body: str) -> None:
    with pytest.raises(InputError) as exc:
        render_dockerfile(evil(tmp_path, body), "web")
    assert only_problem(exc).key_path == "apps.web.template"


def test_ordinary_templates_still_render(tmp_path: Path) -> None:
    body = ('{% set parts = ["a", "b"] + ["c"] %}RUN echo {{ parts | join("-") }} {{ "ab" * 3 }} {{ 2 ** 10 }}'
            ' {{ range(3) | list | length }} {{ {"k": 1}.items() | list | length }} {{ app | upper }}')
    assert render_dockerfile(evil(tmp_path, body), "web").text == "FROM busybox\nRUN echo a-b-c ababab 1024 3 1 WEB\n"
    builtin = load_playbook(project(tmp_path / "b", {"web": {"template": "python-web", "port": 8000}}))
    assert "CMD [\"gunicorn\"" in render_dockerfile(builtin, "web").text


def test_the_daemon_json_template_is_sandboxed_too(tmp_path: Path) -> None:
    path = project(tmp_path, {}, {"engine/daemon.json.j2": '{"x": "{{ cycler.__init__.__globals__ }}"}'})
    pb = load_playbook(path)
    with pytest.raises(InputError) as exc:
        render_daemon_json(pb.engine, pb)
    assert only_problem(exc).key_path == "engine.daemon"


def test_a_template_cannot_include_a_file_outside_the_template_dirs(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("TOP-SECRET\n")
    pb = evil(tmp_path, '{% include "../../secret.txt" %}')
    with pytest.raises(InputError) as exc:
        render_dockerfile(pb, "web")
    p = only_problem(exc)
    assert p.key_path == "apps.web.template" and "does not exist" in p.message
    assert "TOP-SECRET" not in str(exc.value)


# --- one-line values ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("app", "top", "key"), [
    ({"vars": {"base_image": "busybox:1.36\nRUN id"}}, None, "apps.web.vars.base_image"),
    ({}, {"base_image": "busybox:1.36\rRUN id"}, "vars.base_image"),
    ({"vars": {"run": ["true", "echo\x1bhi"]}}, None, "apps.web.vars.run.1"),
    ({"vars": {"env": {"MODE": "a\nRUN id"}}}, None, "apps.web.vars.env.MODE"),
    ({"vars": {"user": "app\u2028RUN id"}}, None, "apps.web.vars.user"),
    ({"command": ["sh", "-c", "echo hi\nRUN id"]}, None, "apps.web.command.2"),
    ({"build_args": {"VERSION": "1\nRUN id"}}, None, "apps.web.build_args.VERSION"),
])
def test_control_characters_in_values_a_dockerfile_receives(tmp_path: Path, app: dict[str, Any],
                                                             top: dict[str, Any] | None, key: str) -> None:
    apps = {"web": {"template": "generic", "vars": {} if top else {"base_image": "busybox:1.36"}}}
    apps["web"]["vars"].update(app.pop("vars", {}))
    apps["web"].update(app)
    pb = load_playbook(project(tmp_path, apps, top_vars=top))
    with pytest.raises(InputError) as exc:
        render_dockerfile(pb, "web")
    p = only_problem(exc)
    assert p.file == pb.source and p.key_path == key
    assert "control characters" in p.message and "RUN id" not in p.message


def test_a_volume_path_with_a_newline_is_refused_when_the_playbook_loads(tmp_path: Path) -> None:
    """The model refuses it before any template sees it (a container path is a plain absolute path)."""
    apps = {"web": {"template": "generic", "vars": {"base_image": "busybox:1.36"},
                    "volumes": {"data": "/data\nRUN id"}}}
    with pytest.raises(InputError) as exc:
        load_playbook(project(tmp_path, apps))
    p = only_problem(exc)
    assert p.key_path == "apps.web.volumes.data" and "RUN id" not in p.message


def test_build_args_of_a_dockerfile_app_are_checked(tmp_path: Path) -> None:
    (tmp_path / "playbooks" / "web").mkdir(parents=True)
    (tmp_path / "playbooks" / "web" / "Dockerfile").write_text("FROM busybox\nARG V\n")
    pb = load_playbook(project(tmp_path, {"web": {"dockerfile": "Dockerfile", "context": "web",
                                                  "build_args": {"V": "x\ny"}}}))
    with pytest.raises(InputError) as exc:
        render_dockerfile(pb, "web")
    assert only_problem(exc).key_path == "apps.web.build_args.V"


def test_multi_line_values_that_never_enter_a_dockerfile_stay_allowed(tmp_path: Path) -> None:
    pb = load_playbook(project(tmp_path, {"web": {
        "template": "generic", "vars": {"base_image": "busybox:1.36"},
        "env": {"GREETING": "line one\nline two"},  # a container env var (argv element), not a Dockerfile line
    }}, top_vars={"motd": "used by no template\nsecond line"}))
    out = render_dockerfile(pb, "web")
    assert out.text.startswith("# Rendered by dockyard") and "FROM busybox:1.36\n" in out.text
    assert "line two" not in out.text


def test_a_top_level_var_read_by_the_template_through_an_import_is_checked(tmp_path: Path) -> None:
    pb = load_playbook(project(tmp_path, {"web": {"template": "mine"}}, {
        "dockerfiles/mine.Dockerfile.j2": '{% import "dockerfiles/parts.j2" as parts with context %}'
                                          "FROM busybox\n{{ parts.greet() }}\n",
        "dockerfiles/parts.j2": "{% macro greet() %}RUN echo {{ motd }}{% endmacro %}",
    }, top_vars={"motd": "hi\nRUN id"}))
    with pytest.raises(InputError) as exc:
        render_dockerfile(pb, "web")
    assert only_problem(exc).key_path == "vars.motd"


def test_render_problems_carry_the_playbook_line_of_their_key(tmp_path: Path) -> None:
    """Found after loading, located like load errors: the line of the value's key (or of its nearest parent
    the YAML wrote: a default the template supplies has no line of its own, so its app's line is used)."""
    apps = {"web": {"template": "generic", "vars": {"base_image": "busybox:1.36\nRUN id"}}}
    pb = load_playbook(project(tmp_path, apps))
    with pytest.raises(InputError) as exc:
        render_dockerfile(pb, "web")
    p = only_problem(exc)
    lines = pb.source.read_text().splitlines()
    assert p.file == pb.source and p.line is not None and "base_image" in lines[p.line - 1]
