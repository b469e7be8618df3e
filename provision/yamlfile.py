"""Reading one YAML file within fixed bounds, with the line of every key path.

A playbook comes from whoever wrote it, so reading one must cost at most a fixed amount of time and memory
whatever the bytes say: the file is capped in size, composing the node graph is capped in nodes, aliases and
depth, and the graph is converted to Python data by one walk here (not PyYAML's constructor) that counts every
value it produces, aliases included, so a "billion laughs" document stops at the cap instead of expanding.
Every problem is a `Problem` naming the file and, where YAML gives one, the line; no message quotes the file's
text beyond a short scalar at a key path.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

from provision.errors import InputError, Problem

MAX_BYTES = 1 << 20  # 1 MiB: a playbook is a page or two
MAX_NODES = 50_000  # values composed, and values produced once aliases are expanded (a real playbook: <1000)
MAX_ALIASES = 100
MAX_DEPTH = 64
MAX_KEY_CHARS = 256
MAX_PROBLEMS = 20  # more than this in one file is noise; the count of the rest is reported

PathT = tuple[Any, ...]  # key path: str keys and int list indexes
Locs = dict[PathT, tuple[Path, int]]  # key path → (file, 1-based line)

_MERGE_TAG = "tag:yaml.org,2002:merge"
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_SCALAR_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "timestamp")}
# What PyYAML's reader refuses (yaml.reader.Reader.NON_PRINTABLE); checked first to name the line.
_NON_PRINTABLE = re.compile("[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

try:  # libyaml's scanner and parser (C) feed the Python composer below: same events, ~10x faster
    from yaml._yaml import CParser as _Parser

    def _init_parser(loader: Any, text: str) -> None:
        _Parser.__init__(loader, text)
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml.parser import Parser as _Parser  # type: ignore[assignment]
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _Parser(Reader, Scanner, _Parser):  # type: ignore[no-redef]
        pass

    def _init_parser(loader: Any, text: str) -> None:
        Reader.__init__(loader, text)
        Scanner.__init__(loader)
        yaml.parser.Parser.__init__(loader)


class _Limit(Exception):
    """A cap was hit; `mark` says where."""

    def __init__(self, message: str, mark: yaml.Mark | None, path: PathT = ()) -> None:
        super().__init__(message)
        self.message = message
        self.mark = mark
        self.path = path


class _BoundedLoader(Composer, _Parser, SafeConstructor, Resolver):  # type: ignore[misc, valid-type]
    """PyYAML's composer, counting nodes, aliases and depth as it goes."""

    def __init__(self, text: str) -> None:
        _init_parser(self, text)
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self.node_count = 0
        self.alias_count = 0
        self.path: list[Any] = []  # where composing is: key values and list indexes (None: composing a key)

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        self.path.append(index.value if isinstance(index, yaml.ScalarNode) else index)
        try:
            if isinstance(event, yaml.AliasEvent):
                self.alias_count += 1
                if self.alias_count > MAX_ALIASES:
                    self.limit(f"more than {MAX_ALIASES} YAML aliases (*name); dockyard refuses the file")
            self.node_count += 1
            if self.node_count > MAX_NODES:
                self.limit(f"more than {MAX_NODES} YAML values; dockyard refuses the file")
            if len(self.path) > MAX_DEPTH + 1:  # the document's top node is at depth 0
                self.limit(f"nested deeper than {MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self.path.pop()

    def limit(self, message: str) -> None:
        path = tuple(p for p in self.path[1:] if p is not None and not isinstance(p, yaml.Node))
        raise _Limit(message, self.peek_event().start_mark, path)


def read_text(path: Path, what: str = "playbook file") -> str:
    """The file's text, refusing what is not a regular UTF-8 file of at most MAX_BYTES (never blocking on a
    FIFO: it is opened non-blocking and refused by type)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise InputError.single("file not found", path) from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the name
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "invalid file name"
        raise InputError.single(f"cannot read: {reason}", path) from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise InputError.single(f"is a directory, not a {what}", path)
        if not stat.S_ISREG(st.st_mode):
            raise InputError.single(f"is not a regular file (a FIFO, socket or device), not a {what}", path)
        if st.st_size > MAX_BYTES:
            raise InputError.single(f"is larger than {MAX_BYTES >> 20} MiB; a {what} is a page or two", path)
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_BYTES and (chunk := os.read(fd, 1 << 16)):  # a /proc file reports size 0
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise InputError.single(f"cannot read: {exc.strerror or 'I/O error'}", path) from None
    finally:
        os.close(fd)
    if size > MAX_BYTES:
        raise InputError.single(f"is larger than {MAX_BYTES >> 20} MiB; a {what} is a page or two", path)
    try:
        return b"".join(chunks).decode("utf-8-sig")  # a leading BOM is allowed, as YAML does
    except UnicodeDecodeError as exc:
        line = b"".join(chunks)[: exc.start].count(b"\n") + 1
        raise InputError.single("is not UTF-8 text", path, "", line) from None


def read_yaml(path: Path) -> tuple[Any, Locs]:
    """Parse one file (safe_load semantics, one document), recording each key path's line.

    Duplicate keys, non-string keys, recursive aliases and unsupported tags are problems; caps raise one
    problem at the line where they were hit."""
    text = read_text(path)
    bad = _NON_PRINTABLE.search(text)
    if bad:
        line = text.count("\n", 0, bad.start()) + 1
        raise InputError.single(f"invalid YAML: control character U+{ord(bad.group()):04X} is not allowed "
                                "(write it as an escape in a double-quoted string)", path, "", line)
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise InputError.single("the playbook is empty; it needs at least `project:`", path)
        locs: Locs = {(): (path, node.start_mark.line + 1)}
        converter = _Converter(loader, path, locs)
        data = converter.value(node, (), 0)
    except _Limit as exc:
        raise InputError.single(exc.message, path, format_path(exc.path),
                                exc.mark.line + 1 if exc.mark else None) from None
    except yaml.MarkedYAMLError as exc:
        raise InputError([yaml_problem(exc, path, text)]) from None
    except yaml.YAMLError:  # a ReaderError the check above missed; its text would quote the file
        raise InputError.single("invalid YAML: unreadable characters", path) from None
    finally:
        loader.dispose()
    problems = converter.problems
    if problems:
        if len(problems) > MAX_PROBLEMS:
            problems = [*problems[:MAX_PROBLEMS],
                        Problem(f"… and {len(problems) - MAX_PROBLEMS} more problems in this file", path)]
        raise InputError(problems)
    return data, locs


def yaml_problem(exc: yaml.MarkedYAMLError, path: Path, text: str = "") -> Problem:
    """PyYAML's problem and context words, never its snippet of the file."""
    mark = exc.problem_mark or exc.context_mark
    problem = short(exc.problem or "invalid YAML", 160)
    if "'\\t'" in problem or (mark and _char_at(text, mark) == "\t"):
        problem += " (YAML does not allow tabs for indentation; use spaces)"
    message = f"invalid YAML: {problem}"
    if exc.context and "scanning for the next token" not in exc.context:
        message += f" ({short(exc.context, 80)}"
        if exc.context_mark and mark and exc.context_mark.line != mark.line:
            message += f" at line {exc.context_mark.line + 1}"
        message += ")"
    return Problem(message, path, "", mark.line + 1 if mark else None)


def _char_at(text: str, mark: yaml.Mark) -> str:
    lines = text.split("\n", mark.line + 1)
    if mark.line >= len(lines) or mark.column >= len(lines[mark.line]):
        return ""
    return lines[mark.line][mark.column]


def short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def format_path(path: PathT, data: Any = None) -> str:
    """`apps.web.ports[1]`: ints are list indexes when the data (if given) has a list there."""
    text = ""
    node = data
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool) and (node is None or isinstance(node, list)):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + short(str(part))
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
    return text


class _Converter:
    """Node graph → Python data in one counted walk (aliases are walked again, and counted again)."""

    def __init__(self, loader: _BoundedLoader, file: Path, locs: Locs) -> None:
        self.loader = loader
        self.file = file
        self.locs = locs
        self.problems: list[Problem] = []
        self.visits = 0
        self.active: set[int] = set()  # the nodes on the current path: an alias to one of them is a loop

    def problem(self, message: str, path: PathT, node: yaml.Node) -> None:
        self.problems.append(Problem(message, self.file, format_path(path), node.start_mark.line + 1))

    def value(self, node: yaml.Node, path: PathT, depth: int) -> Any:
        self.visits += 1
        if self.visits > MAX_NODES:
            raise _Limit(f"the YAML expands to more than {MAX_NODES} values (aliases of aliases?); "
                         "dockyard refuses the file", node.start_mark, path)
        if depth > MAX_DEPTH:
            raise _Limit(f"nested deeper than {MAX_DEPTH} levels (through aliases)", node.start_mark, path)
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, path)
        if id(node) in self.active:  # located at the key holding the alias, not at the anchor
            line = self.locs.get(path, (self.file, node.start_mark.line + 1))[1]
            self.problems.append(Problem("a YAML alias refers to a value that contains it (recursive "
                                         "structure)", self.file, format_path(path), line))
            return None
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                if node.tag != _SEQ_TAG:
                    self.problem(f"YAML tag {short(node.tag)!r} is not supported here", path, node)
                    return None
                out = []
                for i, item in enumerate(node.value):
                    self.locs.setdefault((*path, i), (self.file, item.start_mark.line + 1))
                    out.append(self.value(item, (*path, i), depth + 1))
                return out
            if node.tag != _MAP_TAG:
                self.problem(f"YAML tag {short(node.tag)!r} is not supported here", path, node)
                return None
            into: dict[Any, Any] = {}
            self.mapping(node, path, depth, into, explicit=True)
            return into
        finally:
            self.active.discard(id(node))

    def mapping(self, node: yaml.MappingNode, path: PathT, depth: int, into: dict[Any, Any],
                explicit: bool) -> None:
        """Keys of `node` into `into`: explicit keys first, then `<<` merges (keys given win, earlier merges
        win over later ones, as YAML says); keys a merge brings that are already set are not walked."""
        own: dict[Any, int] = {}
        merges: list[tuple[yaml.Node, yaml.Node]] = []  # (source, the `<<` key: where problems are)
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == _MERGE_TAG:
                sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                merges.extend((source, key_node) for source in sources)
                continue
            key = self.key(key_node, path)
            if key is None:
                continue
            if key in own:
                self.problem(f"duplicate key {short(key)!r} (first given at line {own[key]})", (*path, key),
                             key_node)
                continue
            own[key] = line
            if key in into:
                continue  # a merge bringing a key the mapping sets itself
            if explicit:
                self.locs[(*path, key)] = (self.file, line)
            else:
                self.locs.setdefault((*path, key), (self.file, line))
            into[key] = self.value(value_node, (*path, key), depth + 1)
        for source, merge_key in merges:
            self.visits += 1
            if not isinstance(source, yaml.MappingNode) or source.tag != _MAP_TAG:
                self.problem("`<<` merges a mapping or a list of mappings (e.g. `<<: *base`)", path, merge_key)
                continue
            if id(source) in self.active:
                self.problem("a YAML alias refers to a value that contains it (recursive structure)", path,
                             merge_key)
                continue
            self.active.add(id(source))
            try:
                self.mapping(source, path, depth, into, explicit=False)
            finally:
                self.active.discard(id(source))

    def key(self, node: yaml.Node, path: PathT) -> str | None:
        if not isinstance(node, yaml.ScalarNode):
            self.problem("a key must be a plain name, not a list or mapping", path, node)
            return None
        if len(node.value) > MAX_KEY_CHARS:
            self.problem(f"a key longer than {MAX_KEY_CHARS} characters", path, node)
            return None
        key = self.scalar(node, (*path, node.value))
        if key is _BAD:
            return None
        if isinstance(key, str):
            return key
        self.problem(f"key {short(node.value)!r} is read by YAML as {_key_kind(key)}, not a name; quote it "
                     f"(\"{short(node.value)}\") if you meant the text", (*path, node.value), node)
        return None

    def scalar(self, node: yaml.ScalarNode, path: PathT) -> Any:
        if node.tag not in _SCALAR_TAGS:
            self.problem(f"YAML tag {short(node.tag)!r} is not supported here", path, node)
            return _BAD
        if "\0" in node.value:
            self.problem("a NUL character (\\0) is not allowed", path, node)
            return _BAD
        try:
            return self.loader.construct_object(node)
        except yaml.MarkedYAMLError as exc:
            self.problems.append(yaml_problem(exc, self.file))
        except (ValueError, OverflowError):  # a 5000-digit number, a 13th month
            kind = {"timestamp": "a date"}.get(node.tag.rsplit(":", 1)[-1], "a number")
            self.problem(f"YAML cannot read {short(node.value, 40)!r} as {kind}; quote it if you meant "
                         "the text", path, node)
        return _BAD


_BAD = object()  # a scalar already reported as a problem


def _key_kind(key: Any) -> str:
    if key is None or isinstance(key, bool):
        return "null" if key is None else str(key).lower()
    return "a number" if isinstance(key, int | float) else f"a {type(key).__name__}"
