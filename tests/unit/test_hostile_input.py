"""Hostile input that needs generated content: big files, FIFOs, unreadable files, deep nesting, bombs.

Every case goes through the real command line in-process (`validate -p FILE`) and must answer exit 2 with one
line on stderr, `dockyard: invalid input: FILE[:LINE]: KEY: …`, no traceback, within 2 s (the issue's bound on
the whole call, not a benchmark) and with a bounded Python allocation peak (tracemalloc, measured on a second
run so that tracing does not slow the timed one). Planted secrets must never appear in any output.
The static cases live in bad_playbooks/sec-*.yml; they are re-run here under the same bounds.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import signal
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from provision import build
from provision.cli import program
from provision.errors import InputError

pytestmark = pytest.mark.unit

CORPUS = Path(__file__).parent / "bad_playbooks"
SEC_CASES = sorted(CORPUS.glob("sec-*.yml"))
SENTINEL = "ghp_SENTINEL0123456789abcdefghijklmnopqrs"
HEAD = "project: shop\nprovider: local\n"
TIME_BOUND = 2.0  # seconds for the whole call
MEMORY_BOUND = 100 << 20  # bytes of Python allocations at peak


@contextlib.contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Turn a hang (a FIFO opened blocking) into a failure instead of a stuck test run."""
    def expired(signum: int, frame: object) -> None:
        raise TimeoutError(f"the call did not return within {seconds}s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def run_cli(*argv: str) -> int:
    with deadline(10):
        try:
            program.run(["dockyard", *argv], exit=True)
        except SystemExit as exc:
            return int(exc.code or 0)
    return 0


def refused(capsys: pytest.CaptureFixture[str], playbook: Path, file: Path, key: str = "",
            contains: str = "", line: int | None = None) -> str:
    """Run `validate -p playbook` twice (timed, then traced); assert the contract; return the error line."""
    start = time.monotonic()
    code = run_cli("validate", "-p", str(playbook))
    elapsed = time.monotonic() - start
    out, err = capsys.readouterr()
    tracemalloc.start()
    try:
        run_cli("validate", "-p", str(playbook))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    capsys.readouterr()
    assert code == 2, err
    assert "Traceback" not in out + err
    lines = err.splitlines()
    assert len(lines) == 1, err
    (text,) = lines
    where = f"{file}:{line}: " if line else f"{file}"
    assert text.startswith(f"dockyard: invalid input: {where}"), text
    if key:
        assert f": {key}: " in text, text
    assert contains in text, text
    assert SENTINEL not in out + err
    assert elapsed < TIME_BOUND, f"took {elapsed:.2f}s"
    assert peak < MEMORY_BOUND, f"peak {peak >> 20} MiB"
    return text


@pytest.mark.parametrize("case", SEC_CASES, ids=[c.stem for c in SEC_CASES])
def test_static_hostile_case_is_refused_within_bounds(case: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = case.read_text(encoding="utf-8").splitlines()[0].removeprefix("# expect: ").split(" | ")[0].strip()
    run_cli("validate", "-p", str(case))
    err = capsys.readouterr().err
    blamed = Path(err.removeprefix("dockyard: invalid input: ").split(":", 1)[0])
    refused(capsys, case, blamed, "" if key == "-" else key)


def test_the_corpus_plants_the_sentinel_it_checks_for() -> None:
    # the token file and the credentials file the sec-extends-* cases point at carry it
    assert SENTINEL in (CORPUS / "bases" / "token.yml").read_text()
    assert SENTINEL in (CORPUS / "bases" / ".git-credentials").read_text()


# ------------------------------------------------------------------------------------------- the file itself

def test_a_file_over_1_mib_is_refused_unread(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pb = tmp_path / "big.yml"
    pb.write_text(HEAD + "vars:\n  x: '" + "a" * (2 << 20) + "'\n")
    refused(capsys, pb, pb, contains="larger than 1 MiB")


def test_a_fifo_playbook_does_not_hang(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pb = tmp_path / "fifo.yml"
    os.mkfifo(pb)
    refused(capsys, pb, pb, contains="not a regular file")


def test_a_fifo_base_does_not_hang(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    os.mkfifo(tmp_path / "base.yml")
    pb = tmp_path / "dev.yml"
    pb.write_text(HEAD + "extends: base.yml\n")
    refused(capsys, pb, tmp_path / "base.yml", contains="not a regular file")


def test_a_directory_as_playbook_or_base(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "dir.yml").mkdir()
    refused(capsys, tmp_path / "dir.yml", tmp_path / "dir.yml", contains="is a directory")
    pb = tmp_path / "dev.yml"
    pb.write_text(HEAD + "extends: dir.yml\n")
    refused(capsys, pb, tmp_path / "dir.yml", contains="is a directory")


@pytest.mark.parametrize("data, line", [(HEAD.encode() + b"vars:\n  x: \xff\xfe\n", 4),
                                        ("project: shop\n".encode("utf-16"), 1)], ids=["latin", "utf16"])
def test_bytes_that_are_not_utf8(tmp_path: Path, data: bytes, line: int, capsys: pytest.CaptureFixture[str]
                                 ) -> None:
    pb = tmp_path / "bin.yml"
    pb.write_bytes(data)
    refused(capsys, pb, pb, contains="is not UTF-8 text", line=line)


def test_a_utf8_bom_is_read_and_lines_still_count(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pb = tmp_path / "bom.yml"
    pb.write_bytes(b"\xef\xbb\xbf" + HEAD.encode() + b"colour: blue\n")
    refused(capsys, pb, pb, key="colour", contains="unknown key 'colour'", line=3)


def test_a_nul_byte_in_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pb = tmp_path / "nul.yml"
    pb.write_bytes(HEAD.encode() + b"vars:\n  x: a\x00b\n")
    refused(capsys, pb, pb, contains="control character U+0000", line=4)


# -------------------------------------------------------------------------------------------- YAML's shape

def test_deep_block_nesting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pb = tmp_path / "deep.yml"
    pb.write_text(HEAD + "vars:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(100)) + "  " * 101 + "x\n")
    text = refused(capsys, pb, pb, contains="nested deeper than 64 levels")
    assert ": vars.k0.k1.k2." in text


def test_deep_flow_nesting_past_the_recursion_limit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pb = tmp_path / "deep.yml"
    pb.write_text(HEAD + "vars:\n  x: " + "[" * 5000 + "]" * 5000 + "\n")
    refused(capsys, pb, pb, key="vars.x" + "[0]" * 63, contains="nested deeper than 64 levels", line=4)


@pytest.mark.parametrize("levels, contains, line", [(10, "expands to more than 50000 values", 4),
                                                   (12, "more than 100 YAML aliases", 15)])
def test_billion_laughs(tmp_path: Path, levels: int, contains: str, line: int,
                        capsys: pytest.CaptureFixture[str]) -> None:
    lines = ["vars:", '  a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"  a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, levels)]
    pb = tmp_path / "bomb.yml"
    pb.write_text(HEAD + "\n".join(lines) + "\n")
    assert pb.stat().st_size < 800  # the issue's 500 and 700 bytes
    refused(capsys, pb, pb, contains=contains, line=line)


def test_aliases_of_mappings_through_merges(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = ["vars:", "  m0: &m0 {" + ", ".join(f"k{j}: v" for j in range(30)) + "}"]
    lines += [f"  m{i}: &m{i} {{" + ", ".join(f"c{j}: *m{i - 1}" for j in range(8)) + "}" for i in range(1, 8)]
    pb = tmp_path / "mbomb.yml"
    pb.write_text(HEAD + "\n".join(lines) + "\n")
    refused(capsys, pb, pb, contains="expands to more than 50000 values")


def test_a_wide_document_hits_the_node_cap(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pb = tmp_path / "wide.yml"
    pb.write_text(HEAD + "vars:\n  x:\n" + "  - a\n" * 170_000)  # just under 1 MiB
    assert pb.stat().st_size < 1 << 20
    text = refused(capsys, pb, pb, contains="more than 50000 YAML values")
    assert ": vars.x[4999" in text


def test_many_duplicate_keys_give_a_bounded_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pb = tmp_path / "dups.yml"
    pb.write_text(HEAD + "vars:\n" + "  x: 1\n" * 5000)
    assert run_cli("validate", "-p", str(pb)) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 21 and "4979 more problems" in lines[-1]
    assert all(line.startswith(f"dockyard: invalid input: {pb}") for line in lines)


# ------------------------------------------------------------------------------------------------- extends

def test_extends_never_quotes_a_credentials_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / ".git-credentials").write_text(f"https://me:{SENTINEL}@github.com\n")
    (tmp_path / "creds.yml").symlink_to(".git-credentials")
    pb = tmp_path / "dev.yml"
    for ref in (".git-credentials", "creds.yml", "./sub/../.git-credentials"):
        pb.write_text(HEAD + f"extends: {ref}\n")
        refused(capsys, pb, pb, key="extends", contains="names a .yml or .yaml file inside", line=3)


@pytest.mark.parametrize("content, contains", [
    (f"{SENTINEL}\n", "got a string"),
    (f"- {SENTINEL}\n", "got a list"),
    (f"{SENTINEL}: [unclosed\n", "invalid YAML"),
    (f"key: {SENTINEL}\n\tother: 1\n", "invalid YAML"),
    (f"a: 1\na: {SENTINEL}\n", "duplicate key 'a'"),
    (f"'{SENTINEL}\n", "invalid YAML"),
], ids=["scalar", "list", "unclosed", "tab", "duplicate", "unterminated-quote"])
def test_a_base_that_is_not_a_playbook_is_never_quoted(tmp_path: Path, content: str, contains: str,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "secret.yml").write_text(content)
    pb = tmp_path / "dev.yml"
    pb.write_text(HEAD + "extends: secret.yml\n")
    refused(capsys, pb, tmp_path / "secret.yml", contains=contains)


def test_extends_outside_the_tree_even_with_a_yml_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    (tmp_path / "outside.yml").write_text(HEAD)
    (tmp_path / "project").mkdir()
    pb = tmp_path / "project" / "dev.yml"
    for ref in ("../outside.yml", str(tmp_path / "outside.yml")):
        pb.write_text(HEAD + f"extends: {ref}\n")
        refused(capsys, pb, pb, key="extends", contains="inside the playbook's directory", line=3)


def test_an_extends_chain_of_nine_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for i in range(1, 10):
        (tmp_path / f"b{i}.yml").write_text(f"extends: b{i + 1}.yml\n" if i < 9 else HEAD)
    pb = tmp_path / "dev.yml"
    pb.write_text("extends: b1.yml\n")
    refused(capsys, pb, tmp_path / "b7.yml", key="extends", contains="longer than 8 files", line=1)
    (tmp_path / "b7.yml").write_text(HEAD)  # eight files: fine
    assert run_cli("validate", "-p", str(pb)) == 0
    capsys.readouterr()


def test_an_extends_cycle_of_three(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.yml").write_text("extends: b.yml\n")
    (tmp_path / "b.yml").write_text("extends: a.yml\n")
    pb = tmp_path / "dev.yml"
    pb.write_text("extends: a.yml\n")
    refused(capsys, pb, tmp_path / "b.yml", key="extends", contains="extends cycle: a.yml → b.yml → a.yml")


def test_an_extends_symlink_loop(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "loop.yml").symlink_to("loop.yml")
    pb = tmp_path / "dev.yml"
    pb.write_text(HEAD + "extends: loop.yml\n")
    refused(capsys, pb, pb, key="extends", line=3)


def test_a_control_character_in_a_base_names_the_base(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    (tmp_path / "base.yml").write_text(HEAD + "vars:\n  x: \x1b[31m\n")
    pb = tmp_path / "dev.yml"
    pb.write_text("extends: base.yml\n")
    refused(capsys, pb, tmp_path / "base.yml", contains="control character U+001B", line=4)


# ------------------------------------------------------------------------------------------ build contexts

def project(tmp_path: Path, app: str = "    template: generic\n    context: web\n") -> Path:
    pb = tmp_path / "dev.yml"
    pb.write_text(HEAD + "apps:\n  web:\n" + app)
    return pb


def test_a_good_context_validates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "web" / "src").mkdir(parents=True)
    (tmp_path / "web" / "src" / "app.py").write_text("print('hi')\n")
    (tmp_path / "web" / ".dockerignore").write_text("# comment\n**/*.pyc\n[a-c]*.log\n!keep.log\n")
    assert run_cli("validate", "-p", str(project(tmp_path))) == 0, capsys.readouterr().err


def test_a_missing_context_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pb = project(tmp_path)
    refused(capsys, pb, pb, key="apps.web.context", contains="does not exist", line=6)
    (tmp_path / "web").write_text("a file\n")
    refused(capsys, pb, pb, key="apps.web.context", contains="is not a directory", line=6)


@pytest.mark.parametrize("pattern, reason", [("[z-a]", "runs backwards"), ("[abc", "unterminated '['"),
                                             ("a[\\", "unterminated '['")])
def test_an_invalid_dockerignore_pattern(tmp_path: Path, pattern: str, reason: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "web").mkdir()
    ignore = tmp_path / "web" / ".dockerignore"
    ignore.write_text(f"# {SENTINEL}\n*.pyc\n{pattern}{SENTINEL}\n")
    refused(capsys, project(tmp_path), ignore, key="apps.web.context", contains=reason, line=3)


def test_a_dockerignore_symlinked_to_a_secret_is_not_quoted(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                            ) -> None:
    (tmp_path / "web").mkdir()
    (tmp_path / "token").write_text(f"[{SENTINEL}\n")
    (tmp_path / "web" / ".dockerignore").symlink_to(tmp_path / "token")
    refused(capsys, project(tmp_path), tmp_path / "web" / ".dockerignore", key="apps.web.context", line=1)


def test_a_huge_dockerignore(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / ".dockerignore").write_text("*.pyc\n" * (400_000))
    refused(capsys, project(tmp_path), tmp_path / "web" / ".dockerignore", key="apps.web.context",
            contains="larger than 1 MiB")


@contextlib.contextmanager
def denied(monkeypatch: pytest.MonkeyPatch, path: Path, call: str, owner: object = os) -> Iterator[None]:
    """Make `path` unreadable: chmod when we are not root; as root (which reads anything) fail the one
    syscall the check makes for it, as the kernel would."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0)
        try:
            yield
        finally:
            path.chmod(mode)
        return
    real: Callable[..., object] = getattr(owner, call)

    def refuse(target: object, *args: object, **kwargs: object) -> object:
        if Path(os.fsdecode(target)) == path:  # type: ignore[arg-type]
            raise PermissionError(13, "Permission denied", str(target))
        return real(target, *args, **kwargs)

    monkeypatch.setattr(owner, call, refuse)
    yield


def test_an_unreadable_file_in_the_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "web" / "keys").mkdir(parents=True)
    secret = tmp_path / "web" / "keys" / "data.bin"  # not a never-sent name, so it is read
    secret.write_text(SENTINEL)
    pb = project(tmp_path)
    with denied(monkeypatch, secret, "open"):
        text = refused(capsys, pb, pb, key="apps.web.context", line=6,
                       contains="cannot read 'keys/data.bin' in the build context (Permission denied)")
    assert str(secret) not in text.split("(context")[0]  # named relative to the context
    (tmp_path / "web" / ".dockerignore").write_text("keys\n")  # not sent, so not read
    with denied(monkeypatch, secret, "open"):
        assert run_cli("validate", "-p", str(pb)) == 0
    capsys.readouterr()


def test_an_unreadable_directory_in_the_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "web" / "private").mkdir(parents=True)
    pb = project(tmp_path)
    with denied(monkeypatch, tmp_path / "web" / "private", "listdir"):
        refused(capsys, pb, pb, key="apps.web.context", contains="cannot read 'private/'", line=6)


def test_deploy_time_assembly_gives_input_errors_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".dockerignore").write_text("[z-a]\n")
    with pytest.raises(InputError) as info:
        build.assemble(tmp_path, "FROM scratch\n")
    assert info.value.problems[0].line == 1 and "runs backwards" in str(info.value)
    (tmp_path / ".dockerignore").write_text("")
    (tmp_path / "secret").write_text(SENTINEL)
    with denied(monkeypatch, tmp_path / "secret", "open", builtins), pytest.raises(InputError) as info:
        build.assemble(tmp_path, "FROM scratch\n")
    assert "cannot read 'secret'" in str(info.value) and SENTINEL not in str(info.value)
