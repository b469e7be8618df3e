"""Render templates: an app's Dockerfile (the engine's daemon.json: provision.render_daemon).

Where templates come from (first match wins, per file):
1. `<playbook dir>/templates/` — a project's own templates, beside its playbook;
2. `<playbook dir>/../templates/` — when the playbook lives in a `playbooks/` directory (the usual layout:
   `playbooks/staging.yml` and `templates/dockerfiles/web.Dockerfile.j2` side by side);
3. dockyard's built-in `templates/` (shipped inside the package as `provision/templates`).
So a project overrides a built-in by giving a file of the same name, and adds one by giving a new name. The
built-ins stay reachable as `builtin/<path>`, e.g.
`{% extends "builtin/dockerfiles/python-web.Dockerfile.j2" %}` to override one
block (`system_packages`, `dependencies`, `cmd`).

A Dockerfile template is `dockerfiles/<name>.Dockerfile.j2`, optionally with `dockerfiles/<name>.meta.yml`
beside it (taken from the same directory as the template): its description, variables with defaults, whether
it supports a read-only root filesystem (`read_only`) and which paths then need a tmpfs (`writable`).

Variables, lowest precedence first: the template's defaults < built-ins (`app`, `project`, `environment`,
`port`, `command`, `volumes`, `domains`; `port` and `command` only when the app sets them) < top-level `vars` <
the app's `vars`; a variable whose metadata has a `pattern` must match it. Rendering uses StrictUndefined: a
missing variable is an InputError naming template, variable, app.
Filters: `json`, `shquote`, `as_list` (a string becomes one item), `as_argv` (a string is shell-split), `b64`;
test `match(regex)` (full match); global `fail(message)` lets a template reject a bad value.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import yaml

import provision
from provision.errors import InputError, Problem
from provision.playbook import locate_problems
from provision.spec import Playbook

if TYPE_CHECKING:
    import jinja2  # imported where a template is rendered: a playbook of plain Dockerfiles never needs it

BUILTIN_DIR = Path(provision.__file__).resolve().parent / "templates"
DOCKERFILE_SUFFIX = ".Dockerfile.j2"
DAEMON_TEMPLATE = "engine/daemon.json.j2"
TEMPLATE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class TemplateFailure(Exception):
    """Raised by `fail()` inside a template."""


@dataclass(frozen=True)
class TemplateInfo:
    name: str
    path: Path  # the file that will be rendered (a project's override or the built-in)
    builtin: bool
    description: str = ""
    read_only: bool = False  # works with a read-only root filesystem
    writable: tuple[str, ...] = ()  # paths needing a tmpfs when read-only
    defaults: Mapping[str, Any] = field(default_factory=dict)
    # name → {default, required, description}
    variables: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    release_command: tuple[str, ...] = ()  # the default `release_command` of apps using it


@dataclass(frozen=True)
class RenderedDockerfile:
    app: str
    text: str
    template: str | None = None  # template name (template apps)
    dockerfile: str | None = None  # path inside the context (dockerfile apps)
    source: Path | None = None  # the file read: the template used, or <context>/<dockerfile>
    variables: Mapping[str, Any] = field(default_factory=dict)  # the merged variables (template apps)
    read_only: bool = False  # the template says the image runs with a read-only root filesystem
    writable: tuple[str, ...] = ()  # paths that then need a tmpfs
    release_command: tuple[str, ...] = ()  # the template's default release command

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


# --- environment -------------------------------------------------------------------------------------------

def template_dirs(playbook: Playbook | None) -> list[Path]:
    """The directories searched, most specific first (see the module docstring)."""
    dirs: list[Path] = []
    if playbook is not None:
        base = playbook.base_dir
        dirs.append(base / "templates")
        if base.name == "playbooks":
            dirs.append(base.parent / "templates")
    builtin = BUILTIN_DIR.resolve()
    out: list[Path] = []
    for d in dirs:  # (dockyard's own playbooks/ sits beside the built-in templates/: not a project dir)
        if d.is_dir() and d.resolve() != builtin and all(d.resolve() != o.resolve() for o in out):
            out.append(d)
    return [*out, BUILTIN_DIR]


def _fail(message: str) -> None:
    raise TemplateFailure(str(message))


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return list(value)
    raise TemplateFailure(f"expected a list (or one string), got {type(value).__name__} {value!r}")


def _as_argv(value: Any) -> list[str]:
    if isinstance(value, str):
        return shlex.split(value)
    return [str(v) for v in _as_list(value)]


def _environment(playbook: Playbook | None) -> jinja2.Environment:
    """One environment per search path per process: its template cache compiles each template once (Jinja
    still reloads a template whose file changed)."""
    return _cached_environment(tuple(str(d) for d in template_dirs(playbook)))


@lru_cache(maxsize=16)
def _cached_environment(dirs: tuple[str, ...]) -> jinja2.Environment:
    # deferred: jinja2 loads only when this path runs
    import jinja2

    from provision.render_guard import SandboxedTemplates

    loaders: list[jinja2.BaseLoader] = [jinja2.FileSystemLoader(d) for d in dirs]
    loaders.append(jinja2.PrefixLoader({"builtin": jinja2.FileSystemLoader(str(BUILTIN_DIR))}))
    # sandboxed: a template (a project's own included) renders text and nothing else (see render_guard)
    env = SandboxedTemplates(loader=jinja2.ChoiceLoader(loaders), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, autoescape=False, trim_blocks=False)
    env.filters["json"] = lambda v: json.dumps(v, ensure_ascii=False)
    env.filters["shquote"] = lambda v: shlex.quote(str(v))
    env.filters["as_list"] = _as_list
    env.filters["as_argv"] = _as_argv
    env.filters["b64"] = lambda v: base64.b64encode(str(v).encode()).decode()  # a generated file, one RUN word
    env.tests["match"] = lambda value, pattern: re.fullmatch(pattern, str(value)) is not None
    env.globals["fail"] = _fail
    return env


def _template_file(playbook: Playbook | None, rel: str) -> Path | None:
    for d in template_dirs(playbook):
        if (d / rel).is_file():
            return d / rel
    return None


# --- metadata ----------------------------------------------------------------------------------------------

def list_templates(playbook: Playbook | None = None) -> list[str]:
    """Names of the Dockerfile templates available to `playbook` (built-ins and the project's own)."""
    names: set[str] = set()
    for d in template_dirs(playbook):
        sub = d / "dockerfiles"
        if sub.is_dir():
            names.update(p.name[: -len(DOCKERFILE_SUFFIX)] for p in sub.glob("*" + DOCKERFILE_SUFFIX))
    return sorted(names)


def template_info(name: str, playbook: Playbook | None = None, key_path: str = "") -> TemplateInfo:
    """The template `name` and its metadata; InputError (listing the available ones) when it is unknown."""
    if not TEMPLATE_NAME_RE.fullmatch(name):
        raise InputError.single(f"{name!r} is not a template name (letters, digits, '.', '_', '-'; the "
                                f"file is templates/dockerfiles/<name>{DOCKERFILE_SUFFIX})",
                                _source(playbook), key_path)
    path = _template_file(playbook, f"dockerfiles/{name}{DOCKERFILE_SUFFIX}")
    if path is None:
        available = list_templates(playbook)
        close = difflib.get_close_matches(name, available, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise InputError.single(f"unknown template {name!r}{hint} (available: {', '.join(available)}; a "
                                f"project adds its own as templates/dockerfiles/<name>{DOCKERFILE_SUFFIX})",
                                _source(playbook), key_path)
    builtin = path.resolve().is_relative_to(BUILTIN_DIR.resolve())
    meta_path = path.with_name(f"{name}.meta.yml")
    if not meta_path.is_file():
        return TemplateInfo(name, path, builtin)
    try:
        meta = yaml.safe_load(meta_path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InputError.single(f"template metadata is not valid YAML: {exc}", meta_path, key_path) from None
    if not isinstance(meta, dict) or not isinstance(meta.get("vars", {}), dict):
        raise InputError.single("template metadata must be a mapping with an optional `vars` mapping",
                                meta_path, key_path)
    variables = {k: (v if isinstance(v, dict) else {"default": v})
                 for k, v in (meta.get("vars") or {}).items()}
    defaults = {k: v["default"] for k, v in variables.items() if "default" in v}
    release = meta.get("release_command") or []
    if not isinstance(release, list) or not all(isinstance(w, str) for w in release):
        raise InputError.single("`release_command` in template metadata must be a list of strings", meta_path,
                                key_path)
    return TemplateInfo(name, path, builtin, str(meta.get("description", "")).strip(),
                        bool(meta.get("read_only", False)), tuple(meta.get("writable") or ()), defaults,
                        variables, tuple(release))


# --- Dockerfiles -------------------------------------------------------------------------------------------

def builtin_vars(playbook: Playbook, app_name: str) -> dict[str, Any]:
    app = playbook.apps[app_name]
    out: dict[str, Any] = {"app": app_name, "project": playbook.project, "environment": playbook.environment,
                           "volumes": sorted(set(app.volumes.values())), "domains": list(app.domains)}
    if app.port is not None:
        out["port"] = app.port
    if app.command is not None:
        out["command"] = list(app.command)
    return out


def render_dockerfile(playbook: Playbook, app_name: str) -> RenderedDockerfile:
    """The app's Dockerfile, rendered (template apps) or read (`dockerfile:` apps); every problem is an
    InputError located at its playbook line."""
    try:
        return _render_dockerfile(playbook, app_name)
    except InputError as exc:
        raise InputError(locate_problems(playbook, exc.problems)) from None


def _render_dockerfile(playbook: Playbook, app_name: str) -> RenderedDockerfile:
    # deferred: jinja2 loads only when this path runs
    from provision.render_guard import build_arg_problems, value_origins

    if app_name not in playbook.apps:
        raise InputError.single(f"no app {app_name!r} (apps: {', '.join(playbook.apps) or 'none'})",
                                _source(playbook), "apps")
    app = playbook.apps[app_name]
    if app.image is not None:
        raise InputError.single(f"app {app_name!r} runs the prebuilt image {app.image}: it has no Dockerfile",
                                _source(playbook), f"apps.{app_name}.image")
    if app.dockerfile is not None:
        if problems := build_arg_problems(playbook, app_name):
            raise InputError(problems)
        return _read_dockerfile(playbook, app_name)
    assert app.template is not None  # the spec guarantees exactly one of the two
    info = template_info(app.template, playbook, f"apps.{app_name}.template")
    variables = {**info.defaults, **builtin_vars(playbook, app_name), **playbook.vars, **app.vars}
    rel = f"dockerfiles/{app.template}{DOCKERFILE_SUFFIX}"
    origins = value_origins(playbook, app_name)
    problems = [*build_arg_problems(playbook, app_name),
                *_pattern_problems(playbook, app_name, info, variables, origins)]
    try:
        text = render_template(playbook, rel, variables, what=f"template {app.template!r}", app_name=app_name,
                       var_hint=f"apps.{app_name}.vars", syntax_key=f"apps.{app_name}.template",
                       origins=origins)
    except InputError as exc:
        raise InputError([*problems, *exc.problems]) from None
    if problems:
        raise InputError(problems)
    return RenderedDockerfile(app=app_name, text=text, template=app.template, source=info.path,
                              variables=variables, read_only=info.read_only, writable=info.writable,
                              release_command=info.release_command)


def _pattern_problems(playbook: Playbook, app_name: str, info: TemplateInfo, variables: Mapping[str, Any],
                      origins: Mapping[str, tuple[str, Any]]) -> list[Problem]:
    """A variable whose metadata has a `pattern` (a full-match regex) must match it when set (not null); the
    value is not echoed."""
    return [Problem(f"template {info.name!r} for app {app_name!r}: variable {name!r} must be "
                    f"{meta.get('pattern_means') or 'a match of ' + str(meta['pattern'])}",
                    playbook.source, origins.get(name, (f"apps.{app_name}.vars.{name}",))[0])
            for name, meta in info.variables.items()
            if meta.get("pattern") and variables.get(name) is not None
            and not re.fullmatch(str(meta["pattern"]), str(variables[name]))]


def _read_dockerfile(playbook: Playbook, app_name: str) -> RenderedDockerfile:
    app = playbook.apps[app_name]
    assert app.dockerfile is not None
    context = playbook.app_context(app_name)
    path = context / app.dockerfile
    key = f"apps.{app_name}.dockerfile"
    if not context.is_dir():
        raise InputError.single(f"build context {context} is not a directory (apps.{app_name}.context)",
                                _source(playbook), f"apps.{app_name}.context")
    if not path.is_file():
        raise InputError.single(f"no Dockerfile at {path} (`dockerfile` is a path inside the app's context)",
                                _source(playbook), key)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError.single(f"cannot read {path}: {exc}", _source(playbook), key) from None
    return RenderedDockerfile(app=app_name, text=text, dockerfile=app.dockerfile, source=path)


def render_template(playbook: Playbook | None, rel: str, variables: Mapping[str, Any], *, what: str,
            app_name: str | None, var_hint: str, syntax_key: str,
            origins: Mapping[str, tuple[str, Any]] | None = None) -> str:
    """Render `rel`; `origins` (variable → (key path, value)) are checked for control characters first,
    those the template (or a template it pulls in) can read."""
    # deferred: jinja2 loads only when this path runs
    import jinja2
    from jinja2.sandbox import SecurityError

    from provision.render_guard import bad_values, referenced_names

    env = _environment(playbook)
    file = _source(playbook)
    for_app = f" for app {app_name!r}" if app_name else ""
    try:
        template = env.get_template(rel)
        if origins:
            used = referenced_names(env, rel)
            bad = bad_values({k: v for k, v in origins.items() if used is None or k in used})
            if bad:
                raise InputError([Problem(f"{what}{for_app}: the value contains control characters ({chars}); "
                                          "a value placed into a Dockerfile must be one line without control "
                                          "characters", file, key) for key, chars in bad])
        return template.render(**variables)
    except SecurityError as exc:
        line = _template_line(exc.__traceback__)
        at = f" (at {line})" if line else ""
        raise InputError.single(f"{what}{for_app} tried something templates may not do ({exc}){at}; "
                                "templates render in a sandbox: no underscore attributes, no Python internals",
                                file, syntax_key) from None
    except jinja2.TemplateSyntaxError as exc:
        where = f"{exc.filename or rel}:{exc.lineno}"
        raise InputError.single(f"{what}: syntax error at {where}: {exc.message}", file, syntax_key) from None
    except jinja2.UndefinedError as exc:
        name = _undefined_name(str(exc))
        line = _template_line(exc.__traceback__)
        at = f" (at {line})" if line else ""
        if name:
            if app_name and name in _APP_KEYS:
                hint = f"set apps.{app_name}.{name} (or {var_hint}.{name})"
            else:
                hint = f"set it in {var_hint}.{name}" + (" or the top-level vars" if app_name else "")
            msg = f"{what} needs variable {name!r}{at}, which is not set{for_app}: {hint}"
            raise InputError.single(msg, file, f"{var_hint}.{name}") from None
        raise InputError.single(f"{what}{for_app}: {exc}{at}", file, var_hint) from None
    except TemplateFailure as exc:
        line = _template_line(exc.__traceback__)
        at = f" (at {line})" if line else ""
        raise InputError.single(f"{what}{for_app}: {exc}{at}", file, var_hint) from None
    except jinja2.TemplateNotFound as exc:
        raise InputError.single(f"{what} includes {exc.name!r}, which does not exist", file,
                                syntax_key) from None
    except jinja2.TemplateError as exc:
        raise InputError.single(f"{what}{for_app}: {exc}", file, syntax_key) from None
    except (OverflowError, RecursionError) as exc:  # a sandbox limit (range() too long), a macro calling itself
        raise InputError.single(f"{what}{for_app}: {type(exc).__name__}: {exc}", file, syntax_key) from None
    except (TypeError, ValueError) as exc:  # a filter fed a value of the wrong kind
        line = _template_line(exc.__traceback__)
        at = f" (at {line})" if line else ""
        raise InputError.single(f"{what}{for_app}: bad variable value: {exc}{at}", file, var_hint) from None


_APP_KEYS = ("port", "command")  # built-in variables that come from the app's own keys
_UNDEFINED_RES = (re.compile(r"^'([^']+)' is undefined"),
                  re.compile(r"has no attribute '([^']+)'"),
                  re.compile(r"has no element '?([^']+?)'?$"))


def _undefined_name(message: str) -> str | None:
    for rx in _UNDEFINED_RES:
        m = rx.search(message)
        if m:
            return m.group(1)
    return None


def _template_line(tb: TracebackType | None) -> str | None:
    """`file:line` of the innermost template frame of a traceback (Jinja maps frames to template lines)."""
    found = None
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.endswith(".j2"):
            found = f"{_short(filename)}:{tb.tb_lineno}"
        tb = tb.tb_next
    return found


def _short(filename: str) -> str:
    path = Path(filename)
    try:
        return "builtin:" + path.resolve().relative_to(BUILTIN_DIR.resolve()).as_posix()
    except ValueError:
        return str(path)


def _source(playbook: Playbook | None) -> Path | None:
    return playbook.source if playbook is not None else None
