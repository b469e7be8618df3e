"""Secrets: environment first, then .env beside the playbook; values never leak into text."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from provision.errors import InputError
from provision.playbook import load_playbook
from provision.secrets import SecretSource, parse_env_file

pytestmark = pytest.mark.unit

VALUE = "s3cr3t-Value-7f2a"


@pytest.fixture
def playbook(tmp_path: Path):
    pb = tmp_path / "staging.yml"
    pb.write_text("project: shop\nprovider: local\napps:\n"
                  "  web: {template: python-web, secrets: [DATABASE_URL, SECRET_KEY]}\n"
                  "  worker: {template: generic, secrets: [DATABASE_URL, QUEUE_TOKEN]}\n"
                  "  site: {template: static-site}\n")
    return load_playbook(pb)


def test_environment_wins_over_the_env_file(playbook, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"DATABASE_URL=from-file\nSECRET_KEY={VALUE}\n")
    src = SecretSource(playbook, environ={"DATABASE_URL": "from-env"})
    assert src.value("DATABASE_URL") == "from-env"
    assert src.value("SECRET_KEY") == VALUE
    assert src.where("DATABASE_URL") == "environment"
    assert src.where("SECRET_KEY") == str(tmp_path / ".env")
    assert src.where("NOPE") is None


def test_the_live_process_environment_is_used_by_default(playbook, monkeypatch) -> None:
    monkeypatch.setenv("QUEUE_TOKEN", VALUE)
    assert SecretSource(playbook).value("QUEUE_TOKEN") == VALUE


def test_values_are_read_lazily(playbook, tmp_path: Path) -> None:
    env: dict[str, str] = {}
    src = SecretSource(playbook, environ=env)
    env["SECRET_KEY"] = "later"
    assert src.value("SECRET_KEY") == "later"


def test_missing_lists_absent_names_once_in_order(playbook) -> None:
    src = SecretSource(playbook, environ={"SECRET_KEY": "x"})
    assert src.missing(["DATABASE_URL", "SECRET_KEY", "QUEUE_TOKEN", "DATABASE_URL"]) == ["DATABASE_URL",
                                                                                          "QUEUE_TOKEN"]
    assert src.has("SECRET_KEY") and not src.has("DATABASE_URL")


def test_require_names_each_app_and_its_missing_secrets(playbook) -> None:
    src = SecretSource(playbook, environ={"SECRET_KEY": VALUE})
    with pytest.raises(InputError) as info:
        src.require()
    problems = info.value.problems
    assert [p.key_path for p in problems] == ["apps.web.secrets", "apps.worker.secrets"]
    assert "'web' needs secret DATABASE_URL:" in problems[0].message
    assert "'worker' needs secrets DATABASE_URL, QUEUE_TOKEN" in problems[1].message
    assert all(p.file == playbook.source for p in problems)
    src.require(["site"])  # an app without secrets never fails
    assert info.value.exit_code == 2


def test_require_passes_when_everything_is_set(playbook) -> None:
    env = dict.fromkeys(["DATABASE_URL", "SECRET_KEY", "QUEUE_TOKEN"], "v")
    SecretSource(playbook, environ=env).require()


def test_digest_is_sha256_of_the_value(playbook) -> None:
    src = SecretSource(playbook, environ={"SECRET_KEY": VALUE})
    assert src.digest("SECRET_KEY") == hashlib.sha256(VALUE.encode()).hexdigest()
    assert SecretSource(playbook, environ={"SECRET_KEY": VALUE + "!"}).digest("SECRET_KEY") != src.digest(
        "SECRET_KEY")


def test_values_never_appear_in_repr_str_or_errors(playbook, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"SECRET_KEY={VALUE}\nbroken line {VALUE}\n")
    src = SecretSource(playbook, environ={"DATABASE_URL": VALUE})
    assert src.value("DATABASE_URL") == VALUE
    for text in (repr(src), str(src)):
        assert VALUE not in text
    with pytest.raises(InputError) as info:
        src.value("SECRET_KEY")  # the .env has a bad line 2
    assert VALUE not in str(info.value) and VALUE not in repr(info.value)
    assert info.value.problems[0].line == 2
    with pytest.raises(InputError) as info:
        SecretSource(playbook, environ={}, env_file=tmp_path / "none").value("QUEUE_TOKEN")
    assert "QUEUE_TOKEN" in str(info.value)


def test_env_file_syntax() -> None:
    text = "\n".join([
        "# a comment",
        "",
        "PLAIN=value",
        "SPACED = padded value   ",
        "export EXPORTED=yes",
        "INLINE=abc # a comment",
        "HASH=abc#not-a-comment",
        "SINGLE='literal \\n $HOME # kept'",
        'DOUBLE="line1\\nline2 \\"quoted\\" \\\\ end"  # trailing comment',
        'MULTI="first',
        'second"',
        "EMPTY=",
        "EQUALS=a=b=c",
        "PLAIN=overridden",
    ])
    assert parse_env_file(text) == {
        "PLAIN": "overridden", "SPACED": "padded value", "EXPORTED": "yes", "INLINE": "abc",
        "HASH": "abc#not-a-comment", "SINGLE": "literal \\n $HOME # kept",
        "DOUBLE": 'line1\nline2 "quoted" \\ end', "MULTI": "first\nsecond", "EMPTY": "", "EQUALS": "a=b=c",
    }


@pytest.mark.parametrize(("text", "line", "message"), [
    ("GOOD=1\nno equals sign\n", 2, "expected KEY=VALUE"),
    ("1BAD=x\n", 1, "expected KEY=VALUE"),
    ('A=1\nB="never closed\nC=3\n', 2, "no closing"),
    ("A='x' trailing\n", 1, "unexpected text"),
])
def test_env_file_errors_name_the_line(text: str, line: int, message: str, tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        parse_env_file(text, tmp_path / ".env")
    (problem,) = info.value.problems
    assert (problem.file, problem.line) == (tmp_path / ".env", line)
    assert message in problem.message
    assert "never closed" not in problem.message and "trailing" not in problem.message
