"""The shape of provision/: no import cycles (function-level imports included), nothing outside provision/cli
imports provision.cli, no module over 400 lines, and every function-level import says what it defers.

The module graph is built with `ast` from every import statement (module level, `if TYPE_CHECKING:` and
inside functions): an import inside a function still makes the two modules depend on each other.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 400
# `python -m provision` is the console script by another name: the one module outside provision/cli that may
# import it.
CLI_ENTRY_POINTS = {"provision.__main__"}
DEFERRED = "# deferred:"


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    is_package: bool


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the provision module it reaches (longest existing prefix)
    line: int


def modules(root: Path, package: str = "provision") -> dict[str, Module]:
    found = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        found[name] = Module(name, path, is_package)
    return found


def _resolve(name: str, known: dict[str, Module]) -> str | None:
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imports(root: Path, package: str = "provision") -> Iterator[Import]:
    """Every import of a module of `package`, wherever the statement stands (module level, `if TYPE_CHECKING:`,
    inside a function)."""
    known = modules(root, package)
    for module in known.values():
        tree = ast.parse(module.path.read_text(encoding="utf-8"), str(module.path))
        base = module.name if module.is_package else module.name.rpartition(".")[0]
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for target in _targets(node, base):
                    resolved = _resolve(target, known)
                    if resolved is not None and resolved != module.name:
                        yield Import(module.name, resolved, node.lineno)


def _targets(node: ast.Import | ast.ImportFrom, base: str) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    module = node.module or ""
    if node.level:
        anchor = base
        for _ in range(node.level - 1):
            anchor = anchor.rpartition(".")[0]
        module = f"{anchor}.{module}" if module else anchor
    # `from pkg import sub` reaches the submodule when there is one, the package otherwise
    return [module, *(f"{module}.{alias.name}" for alias in node.names)]


def function_level_imports(root: Path, package: str = "provision") -> list[tuple[str, int, bool]]:
    """(module, line, commented) of every import statement inside a function, whatever it imports. A run of
    import statements is one block: a `# deferred:` line just above it (or on the line itself) covers it."""
    out = set()
    for module in modules(root, package).values():
        lines = module.path.read_text(encoding="utf-8").splitlines()
        tree = ast.parse("\n".join(lines), str(module.path))
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(fn):
                for body in (getattr(node, name, None) for name in ("body", "orelse", "finalbody")):
                    block_start = 0
                    for stmt in body if isinstance(body, list) else ():
                        if not isinstance(stmt, ast.Import | ast.ImportFrom):
                            block_start = 0
                            continue
                        block_start = block_start or stmt.lineno
                        commented = DEFERRED in lines[stmt.lineno - 1] or (
                            block_start >= 2 and lines[block_start - 2].strip().startswith(DEFERRED))
                        out.add((module.name, stmt.lineno, commented))
    return sorted(out)


def cycles(root: Path, package: str = "provision") -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    graph: dict[str, set[str]] = {name: set() for name in modules(root, package)}
    for imp in imports(root, package):
        graph[imp.source].add(imp.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            nxt = next(edges, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def cli_importers(root: Path, package: str = "provision") -> list[str]:
    cli = f"{package}.cli"
    return sorted({f"{i.source}:{i.line}" for i in imports(root, package)
                   if (i.target == cli or i.target.startswith(cli + "."))
                   and not (i.source == cli or i.source.startswith(cli + "."))
                   and i.source not in {e.replace("provision", package, 1) for e in CLI_ENTRY_POINTS}})


def long_modules(root: Path, package: str = "provision") -> list[str]:
    out = []
    for module in modules(root, package).values():
        count = len(module.path.read_text(encoding="utf-8").splitlines())
        if count > MAX_LINES:
            out.append(f"{module.path.relative_to(root)}: {count} lines")
    return out


# --- the real tree ------------------------------------------------------------------------------------------


def test_provision_has_no_import_cycles() -> None:
    assert cycles(ROOT) == []


def test_nothing_outside_the_cli_imports_it() -> None:
    assert cli_importers(ROOT) == []


def test_no_module_is_over_400_lines() -> None:
    assert long_modules(ROOT) == []


def test_every_function_level_import_says_what_it_defers() -> None:
    found = function_level_imports(ROOT)
    assert found, "the walker found no function-level import at all: it is broken"
    assert [f"{m}:{line}" for m, line, commented in found if not commented] == []


# --- the checks themselves, on a small made-up package --------------------------------------------------------


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = tmp_path / "pkg" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_the_checks_find_what_they_look_for(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "__init__.py": "",
        "a.py": "from pkg.b import thing\n",
        "b.py": "def thing():\n    from pkg import a\n\n    return a\n",  # a cycle through a function
        "c.py": "from . import d\n",
        "d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.c import x\n",
        "e.py": "def f():\n    # deferred: heavy\n    import json\n\n    import os\n"  # one block: a comment covers it
                "    x = 1\n    from pkg.cli.main import go\n" + "x = 1\n" * 401,
        "cli/__init__.py": "from pkg.cli import main\n",
        "cli/main.py": "from pkg.a import thing\n",
    })
    assert cycles(root, "pkg") == [["pkg.a", "pkg.b"], ["pkg.c", "pkg.d"]]
    assert cli_importers(root, "pkg") == ["pkg.e:7"]
    assert long_modules(root, "pkg") == [f"{Path('pkg/e.py')}: 408 lines"]
    assert function_level_imports(root, "pkg") == [("pkg.b", 2, False), ("pkg.e", 3, True), ("pkg.e", 5, True),
                                                    ("pkg.e", 7, False)]


def _loaded_after(*modules: str) -> set[str]:
    code = ("import importlib, sys\n"
            f"for name in {list(modules)!r}:\n    importlib.import_module(name)\n"
            "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return set(out.stdout.split())


def test_deferred_imports_stay_deferred() -> None:
    """`dockyard --help` loads no model, console or SSH library; a deploy up to its first SSH byte loads no
    Docker SDK, HTTP stack, Jinja2 or boto3 (what the function-level imports above are for)."""
    assert _loaded_after("provision.cli") & {"pydantic", "rich", "paramiko", "fabric", "docker", "boto3",
                                             "jinja2", "requests"} == set()
    assert _loaded_after("provision.cli", "provision.playbook", "provision.deploy", "provision.remote",
                         "provision.report", "provision.cli.setup") & {
        "docker", "requests", "urllib3", "jinja2", "boto3"} == set()


def test_test_modules_have_unique_basenames() -> None:
    """pytest imports test modules by basename (no __init__.py): two `test_x.py` in different folders make the
    whole run error out at collection, which the fast tier alone would not show."""
    names = [p.name for p in (ROOT / "tests").rglob("test_*.py")]
    assert len(names) > 50  # the folder really is the tests
    assert sorted(n for n in set(names) if names.count(n) > 1) == []
