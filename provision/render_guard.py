"""What keeps a template and the values fed to it from doing more than produce text.

- `SandboxedTemplates`: every template (Dockerfiles, daemon.json) renders in Jinja's
  ImmutableSandboxedEnvironment: no `__class__`/`__globals__`/`_private` attributes (a template cannot reach
  Python, the filesystem or `os.system`), no mutation of the values it is given, `range()` capped; on top of
  that `*` and `**` may not build huge strings, lists or numbers (a template cannot stall or exhaust memory).
- `check_values`: the values a Dockerfile template receives must not carry control characters. The
  Dockerfile format is line-based: a newline inside `base_image: "busybox\\nRUN id"` would become an
  instruction of its own, whatever quoting or filter the template applies. Only values that reach a template
  are checked; multi-line values that never enter a Dockerfile (an app's `env` and `secrets`, a health
  check's command) stay allowed: they travel as argv elements or in the env file, which validate them
  themselves.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from jinja2 import meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from provision.errors import Problem
from provision.spec import Playbook

# C0 controls except TAB, DEL, C1 controls, and the separators Python's str.splitlines() also breaks on.
CONTROL_RE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
MAX_PRODUCT = 1 << 20  # `*` on a string/list: at most this many items (1 MiB of text)
MAX_POWER_BITS = 1 << 12  # `**`: results of at most 4096 bits


class SandboxedTemplates(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(times, int) and \
                        len(seq) * times > MAX_PRODUCT:
                    raise SecurityError(f"a repetition of {len(seq) * times} items is too large")
        elif operator == "**" and isinstance(left, int) and isinstance(right, int) and right > 0 and \
                abs(left) > 1 and abs(left).bit_length() * right > MAX_POWER_BITS:
            raise SecurityError("an integer power that large is not allowed")
        return super().call_binop(context, operator, left, right)


def control_characters(text: str) -> str:
    """The control characters of `text`, shown escaped (`'\\n'`), for an error message."""
    return ", ".join(dict.fromkeys(repr(c) for c in CONTROL_RE.findall(text)))


def _walk(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """(key path, string) for every string in a value, keys of mappings included."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            sub = f"{path}.{key}"
            if isinstance(key, str):
                yield sub, key
            yield from _walk(item, sub)
    elif isinstance(value, list | tuple | set | frozenset):
        for i, item in enumerate(value):
            yield from _walk(item, f"{path}.{i}")


def bad_values(values: Mapping[str, tuple[str, Any]]) -> list[tuple[str, str]]:
    """(key path, characters) for each string holding a control character; `values` maps a variable name
    to (its key path in the playbook, its value)."""
    out = []
    for key_path, value in values.values():
        for where, text in _walk(value, key_path):
            if CONTROL_RE.search(text):
                out.append((where, control_characters(text)))
    return out


def referenced_names(env: Any, name: str, limit: int = 64) -> set[str] | None:
    """The variables template `name` and the templates it extends/includes/imports may read from the
    context; None when that cannot be known statically (a template name computed at render time)."""
    seen: set[str] = set()
    names: set[str] = set()
    todo = [name]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        if len(seen) >= limit:
            return None
        seen.add(current)
        source, _, _ = env.loader.get_source(env, current)
        tree = env.parse(source)
        names |= meta.find_undeclared_variables(tree)
        names |= {n.name for n in tree.find_all(nodes.Name) if n.ctx == "load"}  # read inside macros too
        for ref in meta.find_referenced_templates(tree):
            if ref is None:
                return None
            todo.append(ref)
    return names


def value_origins(playbook: Playbook, app_name: str) -> dict[str, tuple[str, Any]]:
    """Variable name → (key path in the playbook, value) for every value of the playbook a template of
    `app_name` receives (the template's own defaults are the template author's, not checked)."""
    app = playbook.apps[app_name]
    prefix = f"apps.{app_name}"
    out: dict[str, tuple[str, Any]] = {"volumes": (f"{prefix}.volumes", dict(app.volumes))}
    if app.command is not None:
        out["command"] = (f"{prefix}.command", list(app.command))
    out |= {name: (f"vars.{name}", value) for name, value in playbook.vars.items()}
    out |= {name: (f"{prefix}.vars.{name}", value) for name, value in app.vars.items()}
    return out


def build_arg_problems(playbook: Playbook, app_name: str) -> list[Problem]:
    """Build args reach the Dockerfile's ARG instructions (and the RUN lines using them): one line each."""
    args = playbook.apps[app_name].build_args
    bad = bad_values({name: (f"apps.{app_name}.build_args.{name}", value) for name, value in args.items()})
    return [Problem(f"build argument contains control characters ({chars}); a build argument is one line "
                    "without control characters", playbook.source, key) for key, chars in bad]
