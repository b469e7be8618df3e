"""The malformed-playbook corpus: every file in tests/unit/bad_playbooks/*.yml must be refused cleanly.

Corpus format (also used by the CLI end-to-end check, which expects exit 2 for each file):
  line 1:  `# expect: <key path or -> | <message substring> [| <file with the problem, relative to here>]`
  the expected line is the one carrying the marker `# <- here` in that file (no marker: no line expected).
Files under bad_playbooks/bases/ are only `extends` targets, not cases.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from provision.errors import InputError, Problem
from provision.playbook import load_playbook

pytestmark = pytest.mark.unit

CORPUS = Path(__file__).parent / "bad_playbooks"
MARKER = "# <- here"
CASES = sorted(CORPUS.glob("*.yml"))


@dataclass(frozen=True)
class Expectation:
    key_path: str
    substring: str
    file: Path
    line: int | None


def expectation(case: Path) -> Expectation:
    first = case.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# expect: "), f"{case.name}: first line must be '# expect: ...'"
    parts = [p.strip() for p in first.removeprefix("# expect: ").split(" | ")]
    assert len(parts) in (2, 3), f"{case.name}: expected 'key | substring [| file]', got {parts}"
    file = (CORPUS / parts[2]) if len(parts) == 3 else case
    marked = [n for n, text in enumerate(file.read_text(encoding="utf-8").splitlines(), 1) if MARKER in text]
    assert len(marked) <= 1, f"{file.name}: more than one line marker"
    return Expectation("" if parts[0] == "-" else parts[0], parts[1], file.resolve(),
                       marked[0] if marked else None)


def test_corpus_is_big_enough() -> None:
    assert len(CASES) >= 35


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_malformed_playbook_is_refused_with_its_location(case: Path) -> None:
    want = expectation(case)
    with pytest.raises(InputError) as info:
        load_playbook(case)
    problems: list[Problem] = info.value.problems
    assert problems, "an InputError must carry at least one Problem"
    listing = "\n".join(str(p) for p in problems)

    def matches(p: Problem) -> bool:
        return (p.file is not None and Path(p.file).resolve() == want.file and p.key_path == want.key_path
                and want.substring in p.message and p.line == want.line)

    assert any(matches(p) for p in problems), (
        f"wanted {want.file.name}:{want.line}: {want.key_path}: …{want.substring}…\ngot:\n{listing}")
    for p in problems:  # translated, readable messages only
        assert p.file is not None
        for leak in ("pydantic", "errors.dev", "Input should", "Value error,", "Traceback"):
            assert leak not in p.message, p.message


def test_problems_print_file_line_and_key_path() -> None:
    case = CORPUS / "unknown-key-nested.yml"
    with pytest.raises(InputError) as info:
        load_playbook(case)
    text = str(info.value)
    want = expectation(case)
    assert text.startswith(f"{case}:{want.line}: apps.web.helthcheck: unknown key 'helthcheck'")


def test_several_problems_are_all_reported(tmp_path: Path) -> None:
    pb = tmp_path / "multi.yml"
    pb.write_text("project: shop\nprovider: local\napps:\n  web:\n    template: python-web\n"
                  "    port: 0\n    memory: lots\n    restart: never\n")
    with pytest.raises(InputError) as info:
        load_playbook(pb)
    got = {(p.key_path, p.line) for p in info.value.problems}
    assert got == {("apps.web.port", 6), ("apps.web.memory", 7), ("apps.web.restart", 8)}


def test_missing_playbook_file(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        load_playbook(tmp_path / "nope.yml")
    assert info.value.problems[0].file == tmp_path / "nope.yml"
    assert "not found" in info.value.problems[0].message


def test_environment_defaulted_from_a_bad_file_name_says_so(tmp_path: Path) -> None:
    pb = tmp_path / "Staging_EU.yml"
    pb.write_text("project: shop\nprovider: local\n")
    with pytest.raises(InputError) as info:
        load_playbook(pb)
    (problem,) = info.value.problems
    assert problem.key_path == "environment"
    assert "taken from the file name 'Staging_EU.yml'" in problem.message


def test_yaml_merge_keys_are_allowed_and_located(tmp_path: Path) -> None:
    pb = tmp_path / "merge.yml"
    pb.write_text("project: shop\nprovider: local\ncommon: &common\n  template: python-web\n")
    with pytest.raises(InputError) as info:
        load_playbook(pb)
    assert [(p.key_path, p.line) for p in info.value.problems] == [("common", 3)]
    pb.write_text("project: shop\nprovider: local\napps:\n  web: &web\n    template: python-web\n"
                  "    port: 8000\n  api:\n    <<: *web\n    port: 9000\n    publish: nope\n")
    with pytest.raises(InputError) as info:
        load_playbook(pb)
    assert [(p.key_path, p.line) for p in info.value.problems] == [("apps.api.publish", 10)]
