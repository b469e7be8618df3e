"""Loading a playbook: YAML with line numbers, `extends`, and validation errors that name file, key and line.

`load_playbook(path)` is the only way the CLI turns a file into a `provision.spec.Playbook`. Every problem
becomes an `InputError` with one `Problem` per error, located by the file that set the key (a base file for
keys inherited through `extends`), the dotted key path (`apps.web.healthcheck.http`, `host.ssh_from[1]`)
and, where YAML gives it, the 1-based line.
"""

from __future__ import annotations

import difflib
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from provision.errors import InputError, Problem
from provision.spec import Playbook, SpecError

PathT = tuple[Any, ...]  # key path: str keys (or YAML's other scalar keys) and int list indexes
Locs = dict[PathT, tuple[Path, int]]  # key path → (file, 1-based line)
SUFFIXES = (".yml", ".yaml")
_MERGE_TAG = "tag:yaml.org,2002:merge"


# ----------------------------------------------------------------------------------------------- reading YAML

def _read_yaml(path: Path) -> tuple[Any, Locs]:
    """Parse one file (safe_load semantics), recording each key path's line; duplicate keys are errors."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError.single("file not found", path) from None
    except IsADirectoryError:
        raise InputError.single("is a directory, not a playbook file", path) from None
    except UnicodeDecodeError:
        raise InputError.single("is not UTF-8 text", path) from None
    except OSError as exc:
        raise InputError.single(f"cannot read: {exc.strerror}", path) from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise InputError.single("the playbook is empty; it needs at least `project:`", path)
        locs: Locs = {(): (path, node.start_mark.line + 1)}
        problems: list[Problem] = []
        _walk(loader, node, (), path, locs, problems, set())
        if problems:
            raise InputError(problems)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        raise InputError([_yaml_problem(exc, path)]) from None
    except yaml.YAMLError as exc:
        raise InputError.single(f"invalid YAML: {exc}", path) from None
    finally:
        loader.dispose()
    return data, locs


def _yaml_problem(exc: yaml.MarkedYAMLError, path: Path) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or "invalid YAML"
    if "'\\t'" in problem:
        problem += " (YAML does not allow tabs for indentation; use spaces)"
    message = f"invalid YAML: {problem}"
    if exc.context and "scanning for the next token" not in exc.context:
        message += f" ({exc.context}"
        if exc.context_mark and mark and exc.context_mark.line != mark.line:
            message += f" at line {exc.context_mark.line + 1}"
        message += ")"
    return Problem(message, path, "", mark.line + 1 if mark else None)


def _walk(loader: yaml.SafeLoader, node: yaml.Node, path: PathT, file: Path, locs: Locs,
          problems: list[Problem], active: set[int]) -> None:
    if id(node) in active:
        problems.append(Problem("a YAML alias refers to a value that contains it (recursive structure)",
                                file, _format(path), locs.get(path, (file, node.start_mark.line + 1))[1]))
        return
    active = active | {id(node)}
    if isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            locs.setdefault((*path, i), (file, item.start_mark.line + 1))
            _walk(loader, item, (*path, i), file, locs, problems, active)
    elif isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        merged: list[yaml.Node] = []
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == _MERGE_TAG:
                merged.extend(value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node])
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                problems.append(Problem("a key must be a plain name, not a list or mapping", file,
                                        _format(path), line))
                continue
            key = loader.construct_object(key_node)
            if not isinstance(key, str):
                problems.append(Problem(
                    f"key {key_node.value!r} is read by YAML as {_key_kind(key)}, not a name; quote it "
                    f"(\"{key_node.value}\") if you meant the text", file, _format((*path, key_node.value)),
                    line))
                continue
            if key in seen:
                problems.append(Problem(f"duplicate key {key!r} (first given at line {seen[key]})", file,
                                        _format((*path, key)), line))
                continue
            seen[key] = line
            locs[(*path, key)] = (file, line)
            _walk(loader, value_node, (*path, key), file, locs, problems, active)
        for extra in merged:  # `<<: *anchor`: keys given explicitly win, as in YAML
            if isinstance(extra, yaml.MappingNode):
                for key_node, value_node in extra.value:
                    if isinstance(key_node, yaml.ScalarNode) and key_node.tag != _MERGE_TAG:
                        key = loader.construct_object(key_node)
                        if key not in seen:
                            locs.setdefault((*path, key), (file, key_node.start_mark.line + 1))
                            _walk(loader, value_node, (*path, key), file, locs, problems, active)


# ------------------------------------------------------------------------------------------------- extends

def _load_tree(path: Path, stack: list[Path]) -> tuple[dict[str, Any], Locs]:
    data, locs = _read_yaml(path)
    if not isinstance(data, dict):
        raise InputError.single(f"the top level must be a mapping of keys (project:, apps:, …), "
                                f"got {_kind(data)}", path, "", locs[()][1])
    base_ref = data.get("extends")
    if base_ref is None:
        return data, locs
    where = locs.get(("extends",), (path, None))[1]
    if not isinstance(base_ref, str) or not base_ref.strip():
        raise InputError.single(f"expected the file name of a base playbook, got {_kind(base_ref)}",
                                path, "extends", where)
    base = path.parent / base_ref
    resolved = base.resolve()
    if resolved in stack:
        chain = " → ".join(p.name for p in [*stack[stack.index(resolved):], resolved])
        raise InputError.single(f"extends cycle: {chain}", path, "extends", where)
    if not base.is_file():
        raise InputError.single(f"base playbook {base_ref!r} not found (looked for {resolved})",
                                path, "extends", where)
    base_data, base_locs = _load_tree(base, [*stack, resolved])
    return _merge(base_data, data), _merge_locs(base_data, data, base_locs, locs)


def _merge(base: Any, over: Any) -> Any:
    """Mappings merge recursively; anything else from `over` replaces what `base` had."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for key, value in over.items():
            out[key] = _merge(base[key], value) if key in base else value
        return out
    return over


def _merge_locs(base: Any, over: Any, base_locs: Locs, over_locs: Locs) -> Locs:
    out = dict(over_locs)

    def keep_base(b: Any, o: Any, prefix: PathT) -> None:
        if not (isinstance(b, dict) and isinstance(o, dict)):
            return  # `over` replaced this value wholesale
        for key in b:
            path = (*prefix, key)
            if key in o:
                keep_base(b[key], o[key], path)
            else:
                out.update({p: loc for p, loc in base_locs.items() if p[:len(path)] == path})

    keep_base(base, over, ())
    return out


# ------------------------------------------------------------------------------------------------- loading

def load_playbook(path: Path | str) -> Playbook:
    """Read, merge `extends`, default `environment` to the file's stem, and validate."""
    path = Path(path)
    if not path.exists():
        raise InputError.single("playbook file not found", path)
    data, locs = _load_tree(path, [path.resolve()])
    env_from_stem = "environment" not in data
    if env_from_stem:
        data["environment"] = path.stem
    try:
        playbook = Playbook.model_validate(data)
    except ValidationError as exc:
        problems = _translate(exc, data, locs, path)
        if env_from_stem:
            problems = [Problem(p.message + f" (taken from the file name {path.name!r}; set `environment:`)",
                                p.file, p.key_path, p.line) if p.key_path == "environment" else p
                        for p in problems]
        raise InputError(problems) from None
    object.__setattr__(playbook, "__pydantic_private__", {**(playbook.__pydantic_private__ or {}),
                                                           "_source": path.resolve()})
    return playbook


def find_playbooks(directory: Path | str) -> list[Path]:
    """All playbook files: `directory/playbooks/*.yml|*.yaml`, or `directory/*.yml|*.yaml` if it has no
    `playbooks/` folder (so both a project root and its playbooks folder work)."""
    directory = Path(directory)
    folder = directory / "playbooks" if (directory / "playbooks").is_dir() else directory
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in SUFFIXES and p.is_file())


def resolve_playbook(env: str | None, playbook: str | None, root: Path | str) -> Path:
    """`-p PATH` wins; `-e NAME` means root/playbooks/NAME.yml (or .yaml); neither is an error."""
    root = Path(root)
    if playbook:
        path = Path(playbook).expanduser()
        path = path if path.is_absolute() else root / path
        if not path.is_file():
            raise InputError.single("playbook file not found", path)
        return path
    available = [p.stem for p in find_playbooks(root)]
    listing = f"available: {', '.join(available)}" if available else f"no playbooks in {root / 'playbooks'}"
    if not env:
        raise InputError.single(f"choose a playbook with -e NAME or -p PATH ({listing})")
    for suffix in SUFFIXES:
        path = root / "playbooks" / f"{env}{suffix}"
        if path.is_file():
            return path
    close = difflib.get_close_matches(env, available, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise InputError.single(f"no playbook for environment {env!r} ({hint}{listing})",
                            root / "playbooks" / f"{env}.yml")


# ------------------------------------------------------------------------------------ pydantic → Problems

def _translate(exc: ValidationError, data: dict[str, Any], locs: Locs, top: Path) -> list[Problem]:
    problems: list[Problem] = []
    for err in exc.errors(include_url=False):
        loc, is_key = _clean_loc(err["loc"], data, err["type"] == "missing")
        error = (err.get("ctx") or {}).get("error")
        parts = error.problems if isinstance(error, SpecError) else [((), None)]
        for sub, sub_message in parts:
            path = loc + tuple(sub)
            message = sub_message or _message(err, loc)
            if is_key:
                message = f"key {path[-1]!r}: {message}"
            file, line = _locate(path, locs, top)
            problems.append(Problem(message, file, _format(path, data), line))
    unique = list(dict.fromkeys(problems))
    return sorted(unique, key=lambda p: (str(p.file), p.line or 0, p.key_path))


def _clean_loc(loc: tuple[Any, ...], data: Any, missing: bool) -> tuple[PathT, bool]:
    """Keep the parts of pydantic's location that name keys/indexes in the data (dropping union tags and
    the fields of values a before-validator converted, e.g. `publish: "1.2.3.4:80"` → host_port)."""
    out: list[Any] = []
    node = data
    for i, part in enumerate(loc):
        if part == "[key]":
            return tuple(out), True
        if _has(node, part):
            out.append(part)
            node = node[part]
        elif missing and i == len(loc) - 1 and (isinstance(node, dict) or node is None):
            out.append(part)
        elif not isinstance(node, dict | list | tuple):
            break
    return tuple(out), False


def _has(node: Any, part: Any) -> bool:
    if isinstance(node, dict):
        return part in node
    return isinstance(node, list | tuple) and isinstance(part, int) and 0 <= part < len(node)


def _locate(path: PathT, locs: Locs, top: Path) -> tuple[Path, int | None]:
    for n in range(len(path), 0, -1):
        if path[:n] in locs:
            file, line = locs[path[:n]]
            return file, line
    return top, None


def _format(path: PathT, data: Any = None) -> str:
    text = ""
    node = data
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool) and (node is None or isinstance(node, list)):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
    return text


def _key_kind(key: Any) -> str:
    if key is None or isinstance(key, bool):
        return "null" if key is None else str(key).lower()
    return "a number" if isinstance(key, int | float) else f"a {type(key).__name__}"


def _kind(v: Any) -> str:
    if v is None:
        return "nothing (null)"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, dict):
        return "a mapping"
    if isinstance(v, list | tuple):
        return "a list"
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "...'"


_EXPECTED = {
    "string_type": "a string", "int_type": "a whole number", "int_parsing": "a whole number",
    "int_from_float": "a whole number", "float_type": "a number", "float_parsing": "a number",
    "bool_type": "true or false", "bool_parsing": "true or false", "dict_type": "a mapping (key: value)",
    "model_type": "a mapping (key: value)", "model_attributes_type": "a mapping (key: value)",
    "tuple_type": "a list", "list_type": "a list", "iterable_type": "a list", "path_type": "a file path",
    "none_required": "nothing (null)",
}


def _message(err: dict[str, Any], loc: PathT) -> str:
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    if kind == "missing":
        return f"required key {loc[-1]!r} is missing" if loc else "a required key is missing"
    if kind == "extra_forbidden":
        return _unknown_key(loc)
    if kind in ("value_error", "assertion_error"):
        return str(ctx.get("error", err["msg"]))
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {_kind(value)}"
    if kind == "literal_error":
        choices = [c.strip(" '") for c in str(ctx.get("expected", "")).replace(" or ", ", ").split(",")]
        close = difflib.get_close_matches(str(value), choices, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"expected one of {ctx.get('expected')}, got {_kind(value)}{hint}"
    bounds = {"greater_than_equal": ("at least", "ge"), "greater_than": ("greater than", "gt"),
              "less_than_equal": ("at most", "le"), "less_than": ("less than", "lt")}
    if kind in bounds:
        words, key = bounds[kind]
        return f"must be {words} {ctx.get(key)}, got {_kind(value)}"
    if kind == "string_pattern_mismatch":
        return f"{_kind(value)} does not match the pattern {ctx.get('pattern')}"
    return f"{err['msg']} (got {_kind(value)})"


def _unknown_key(loc: PathT) -> str:
    key = str(loc[-1]) if loc else "?"
    fields = _fields_at(loc[:-1])
    if not fields:
        return f"unknown key {key!r}"
    close = difflib.get_close_matches(key, fields, n=1, cutoff=0.6)
    if close:
        return f"unknown key {key!r} (did you mean {close[0]!r}?)"
    return f"unknown key {key!r} (expected one of: {', '.join(fields)})"


def _fields_at(path: PathT) -> list[str]:
    """The keys the model allows at `path` (walking Playbook's type annotations)."""
    tp: Any = Playbook
    for part in path:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = tp.model_fields.get(part) if isinstance(part, str) else None
            if field is None:
                return []
            tp = field.annotation
        elif typing.get_origin(tp) is dict:
            tp = typing.get_args(tp)[1]
        elif typing.get_origin(tp) in (tuple, list):
            tp = typing.get_args(tp)[0]
        else:
            return []
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return list(tp.model_fields)
    return []


def _unwrap(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
            tp = models[0] if models else args[0]
        else:
            return tp
