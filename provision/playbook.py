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

from pydantic import BaseModel, ValidationError

from provision.build import check_context
from provision.errors import InputError, Problem
from provision.spec import Playbook, SpecError
from provision.yamlfile import Locs, PathT, format_path, read_yaml, short

SUFFIXES = (".yml", ".yaml")
MAX_EXTENDS = 8  # files in one `extends` chain, the playbook included
MAX_MESSAGE = 300  # a message quoting a huge value is cut: one readable line


# ------------------------------------------------------------------------------------------------- extends

def _load_tree(path: Path, stack: list[Path], tree: Path) -> tuple[dict[str, Any], Locs]:
    """The merged data of `path` and its bases; a base must be a .yml/.yaml file inside `tree` (the
    top playbook's directory), so `extends` cannot read (and quote) any other file."""
    data, locs = read_yaml(path)
    if not isinstance(data, dict):
        raise InputError.single(f"the top level must be a mapping of keys (project:, apps:, …), "
                                f"got {_type_name(data)}", path, "", locs[()][1])
    base_ref = data.get("extends")
    if base_ref is None:
        return data, locs
    where = locs.get(("extends",), (path, None))[1]
    base = _base_path(base_ref, path, tree, where)
    if base in stack:
        chain = " → ".join(p.name for p in [*stack[stack.index(base):], base])
        raise InputError.single(f"extends cycle: {chain}", path, "extends", where)
    if len(stack) >= MAX_EXTENDS:
        raise InputError.single(f"the `extends` chain is longer than {MAX_EXTENDS} files", path, "extends",
                                where)
    base_data, base_locs = _load_tree(base, [*stack, base], tree)
    return _merge(base_data, data), _merge_locs(base_data, data, base_locs, locs)


def _base_path(ref: Any, path: Path, tree: Path, where: int | None) -> Path:
    if not isinstance(ref, str) or not ref.strip():
        raise InputError.single(f"expected the file name of a base playbook, got {_kind(ref)}",
                                path, "extends", where)
    shown = short(ref)
    rule = f"`extends` names a .yml or .yaml file inside the playbook's directory {tree}"
    if any(ord(c) < 32 or c == "\x7f" for c in ref) or Path(ref).suffix.lower() not in SUFFIXES:
        raise InputError.single(f"{rule}, got {shown!r}", path, "extends", where)
    try:
        resolved = (path.parent / ref).resolve()  # symlinks followed: the file actually read must qualify
    except (OSError, RuntimeError, ValueError):  # a symlink loop
        raise InputError.single(f"base playbook {shown!r} cannot be resolved (a symlink loop?)",
                                path, "extends", where) from None
    if not resolved.is_relative_to(tree) or resolved.suffix.lower() not in SUFFIXES:
        raise InputError.single(f"{rule}, got {shown!r} (which is {resolved})", path, "extends", where)
    if not resolved.exists():
        raise InputError.single(f"base playbook {shown!r} not found (looked for {resolved})",
                                path, "extends", where)
    return resolved


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
    try:
        resolved = path.resolve()
        found = resolved.exists()
    except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL in the name
        raise InputError.single("cannot resolve the playbook's path (a symlink loop?)", path) from None
    if not found:
        raise InputError.single("playbook file not found", path)
    data, locs = _load_tree(path, [resolved], resolved.parent)
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
    # `_locs` is for check_contexts (lines of `apps.*.context`); pydantic keeps it, unvalidated, beside _source
    object.__setattr__(playbook, "__pydantic_private__", {**(playbook.__pydantic_private__ or {}),
                                                           "_source": resolved, "_locs": locs,
                                                           "_environment_from_file_name": env_from_stem})
    return playbook


def environment_from_file_name(playbook: Playbook) -> bool:
    """True when no `environment:` was written (in the file or a base it extends): the name is the file's stem,
    so a copy of the file under another name is another environment (`up`'s guard asks before creating it)."""
    return bool((playbook.__pydantic_private__ or {}).get("_environment_from_file_name"))


def check_contexts(playbook: Playbook) -> list[Problem]:
    """Each app's build context as deploy will read it: the directory exists, its `.dockerignore` parses,
    every file it would send is readable (named relative to the context) and a `dockerfile:` is there.

    Separate from load_playbook: commands that build nothing (teardown, status) must not need the sources."""
    locs: Locs = (playbook.__pydantic_private__ or {}).get("_locs") or {}
    top = playbook.source or Path("<playbook>")
    problems: list[Problem] = []
    for name, app in playbook.apps.items():
        if app.image is not None:  # a prebuilt image: no context to read
            continue
        key = ("apps", name, "context")
        file, line = _locate(key, locs, top)
        try:
            root = playbook.app_context(name)
            check_context(root, app.dockerfile)
        except (OSError, RuntimeError, ValueError):  # a symlink loop on the way to the context
            problems.append(Problem("the build context cannot be resolved (a symlink loop?)", file,
                                    format_path(key), line))
        except InputError as exc:
            for p in exc.problems:
                if p.file == root:  # about the context itself: blame the playbook's `context:` line
                    problems.append(Problem(f"{p.message} (context {root})", file, format_path(key), line))
                else:  # its .dockerignore, at the pattern's line
                    problems.append(Problem(p.message, p.file, format_path(key), p.line))
    return problems


def locate_problems(playbook: Playbook, problems: list[Problem]) -> list[Problem]:
    """Problems found after loading (rendering, secrets) name a key path but no line: give each the file and
    line where the YAML wrote the longest prefix of that path (`apps.web.vars.base_image`, else `apps.web`),
    which may be a base file the playbook `extends`."""
    locs: Locs = (playbook.__pydantic_private__ or {}).get("_locs") or {}
    out: list[Problem] = []
    for p in problems:
        if p.line is not None or not p.key_path or p.file != playbook.source or not locs:
            out.append(p)
            continue
        path = _parse_key_path(p.key_path)
        for n in range(len(path), 0, -1):
            if path[:n] in locs:
                file, line = locs[path[:n]]
                out.append(Problem(p.message, file, p.key_path, line))
                break
        else:
            out.append(p)
    return out


def _parse_key_path(text: str) -> PathT:
    """`apps.web.command.2` / `host.ssh_from[0]` → ("apps", "web", "command", 2) (digits are list indexes;
    a mapping key made of digits is looked up as written too, by the caller's prefix search failing over)."""
    parts: list[Any] = []
    for word in text.replace("[", ".").replace("]", "").split("."):
        if word:
            parts.append(int(word) if word.isdigit() else word)
    return tuple(parts)


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
        try:
            found = path.exists()  # a directory or FIFO is refused, by type, when it is read
        except (OSError, ValueError):
            found = False
        if not found:
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
            problems.append(Problem(short(message, MAX_MESSAGE), file, format_path(path, data), line))
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


def _type_name(v: Any) -> str:
    """What a value is, without quoting it (for a whole file's content, which may be anything)."""
    if v is None or isinstance(v, bool | dict | list | tuple):
        return _kind(v)
    return {str: "a string", int: "a number", float: "a number"}.get(type(v), f"a {type(v).__name__}")


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
