"""provision.hostlock: the lock record (built, written, read back from an untrusted host), the stale rule, and the
acquire/read/release argv, run for real with this machine's `sh` in a scratch "home"."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path

import pytest

from provision import hostlock
from provision.commands.docker import env_file_path
from provision.hostlock import LockRecord, new_record, parse_record
from tests.unit.lockhost import LocalRemote

pytestmark = pytest.mark.unit


def record(**kw: object) -> LockRecord:
    base = {"who": "Ada <ada@example.com>", "machine": "laptop", "pid": 4242, "since": "2024-05-01T10:00:00Z",
            "message": "db migration", "token": "00112233aabbccdd"}
    return new_record("deploy", **{**base, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize("user", ["root", "deploy"])
def test_the_lock_lives_in_the_directory_of_the_apps_env_files(user: str) -> None:
    env_dir = env_file_path(user, "shop", "staging", "web").rsplit("/", 1)[0]
    assert hostlock.dockyard_dir(user, "shop", "staging") == env_dir
    assert hostlock.lock_dir(user, "shop", "staging") == f"{env_dir}/lock"


def test_a_record_survives_the_round_trip_through_the_host() -> None:
    rec = record()
    data = rec.to_bytes()
    assert data.endswith(b"\n") and data.count(b"\n") == 1
    assert parse_record(data) == rec
    assert "token" not in rec.to_json() and rec.to_json()["message"] == "db migration"


def test_describe_is_one_line_naming_holder_since_command_and_message() -> None:
    line = record().describe()
    assert "\n" not in line
    for part in ("Ada <ada@example.com>", "laptop", "4242", "2024-05-01T10:00:00Z", "`deploy`", "db migration"):
        assert part in line
    assert "by hand" in record(pid=0).describe()


@pytest.mark.parametrize("data", [
    b"", b"   \n", b"not json", b"[1, 2, 3]", b'"a string"', b"{" * 100_000,
    b'{"who": "x", "pad": "' + b"A" * hostlock.MAX_RECORD + b'"}',  # over the cap, even though it is JSON
    b"\xff\xfe\x00garbage",
])
def test_hostile_records_read_as_unreadable_held_locks(data: bytes) -> None:
    rec = parse_record(data)
    assert rec is hostlock.UNREADABLE and not rec.readable
    assert "unreadable" in rec.describe()
    assert not hostlock.is_stale(rec, machine="?", alive=lambda pid: False)


def test_hostile_fields_become_one_bounded_printable_line() -> None:
    doc = {"who": "evil\n\x1b[31mred\x07", "machine": "m\r\nx", "pid": True, "since": ["not", "text"],
           "command": "deploy\u2028next", "message": "M" * 5000, "release": {"a": 1}, "token": "t" * 500}
    rec = parse_record(json.dumps(doc))
    assert rec.readable
    assert rec.who == "evil??[31mred?" and rec.machine == "m??x" and rec.command == "deploy?next"
    assert rec.pid == 0  # a bool is not a pid
    assert len(rec.message) == hostlock.MAX_MESSAGE and len(rec.token) == 64
    assert len(rec.since) <= hostlock.MAX_FIELD
    line = rec.describe()
    assert "\n" not in line and "\x1b" not in line and "\r" not in line


@pytest.mark.parametrize("pid", ["4242", -5, 2**40, 3.5, None])
def test_a_pid_that_is_not_a_plausible_int_is_zero(pid: object) -> None:
    assert parse_record(json.dumps({"who": "a", "pid": pid})).pid == 0


def test_stale_only_when_the_holder_ran_here_and_its_process_is_gone() -> None:
    dead, alive = (lambda pid: False), (lambda pid: True)
    assert hostlock.is_stale(record(), machine="laptop", alive=dead)
    assert not hostlock.is_stale(record(), machine="laptop", alive=alive)
    assert not hostlock.is_stale(record(), machine="ci-runner-7", alive=dead)  # another machine: unknowable
    assert not hostlock.is_stale(record(pid=0), machine="laptop", alive=dead)  # taken by hand


def test_pid_alive_reads_this_machine() -> None:
    assert hostlock.pid_alive(os.getpid())
    child = subprocess.Popen(["true"])
    child.wait()
    assert not hostlock.pid_alive(child.pid)
    assert not hostlock.pid_alive(0)


def test_the_refusal_says_how_to_release_and_whether_it_is_stale() -> None:
    held = hostlock.refusal(record(), "staging", stale=False)
    stale = hostlock.refusal(record(), "staging", stale=True)
    assert "\n" not in held + stale
    assert "db migration" in held and "--lock-wait" in held
    assert "stale" in stale and "`dockyard lock.release -e staging`" in stale and "stale" not in held


def test_lock_messages_are_one_bounded_line() -> None:
    assert hostlock.check_message("deploying the fix, back at 3pm") is None
    assert hostlock.check_message("two\nlines")
    assert hostlock.check_message("bell\x07")
    assert hostlock.check_message("x" * (hostlock.MAX_MESSAGE + 1))


def test_who_is_the_git_user_or_the_os_user() -> None:
    assert hostlock.actor_from("Ada", "ada@example.com", "root") == "Ada <ada@example.com>"
    assert hostlock.actor_from("Ada", "", "root") == "Ada"
    assert hostlock.actor_from("", "", "builder") == "builder"
    assert hostlock.actor_from("Ev\nil", "", "x") == "Ev?il"


def test_argv_carry_values_as_arguments_never_inside_the_script() -> None:
    project, env = "shop", "staging"
    for argv in (hostlock.acquire_argv("deploy", project, env), hostlock.read_argv("deploy", project, env),
                 hostlock.release_argv("deploy", project, env),
                 hostlock.release_argv("deploy", project, env, "00112233aabbccdd")):
        assert argv[:2] == ["sh", "-c"] and argv[3] == "sh"
        assert project not in argv[2] and "00112233" not in argv[2]
        assert any(a.startswith(".dockyard/shop-staging") for a in argv[4:])
    with pytest.raises(ValueError):
        hostlock.release_argv("deploy", project, env, "'; rm -rf / #")


# --- the scripts, run by a real sh -----------------------------------------------------------------------


def run(remote: LocalRemote, argv: list[str], stdin: bytes | None = None) -> tuple[int, str]:
    done = remote.run(argv, stdin=stdin, check=False)
    return done.exit_code, done.stdout


def test_acquire_read_release_on_a_real_shell(tmp_path: Path) -> None:
    remote = LocalRemote(tmp_path)
    where = ("deploy", "shop", "staging")
    mine, theirs = record(token="aaaaaaaaaaaaaaaa"), record(token="bbbbbbbbbbbbbbbb", who="Bob")
    assert run(remote, hostlock.read_argv(*where)) == (hostlock.EXIT_ABSENT, "")
    assert run(remote, hostlock.acquire_argv(*where), mine.to_bytes()) == (0, "")
    lock = tmp_path / ".dockyard" / "shop-staging" / "lock"
    assert (lock / "holder.json").is_file() and not (lock / ".holder.tmp").exists()
    assert oct((tmp_path / ".dockyard" / "shop-staging").stat().st_mode & 0o777) == "0o700"
    code, out = run(remote, hostlock.acquire_argv(*where), theirs.to_bytes())
    assert code == hostlock.EXIT_HELD and parse_record(out) == mine  # refused, told who holds it
    code, out = run(remote, hostlock.read_argv(*where))
    assert code == 0 and parse_record(out) == mine
    code, _ = run(remote, hostlock.release_argv(*where, theirs.token))
    assert code == hostlock.EXIT_NOT_OURS and lock.is_dir()  # not theirs to release
    assert run(remote, hostlock.release_argv(*where, mine.token))[0] == 0
    assert not lock.exists()
    assert run(remote, hostlock.release_argv(*where))[0] == hostlock.EXIT_ABSENT
    assert run(remote, hostlock.acquire_argv(*where), theirs.to_bytes())[0] == 0
    assert run(remote, hostlock.release_argv(*where))[0] == 0  # by hand: whoever holds it
    assert not lock.exists()


def test_a_huge_record_on_the_host_is_read_bounded(tmp_path: Path) -> None:
    lock = tmp_path / ".dockyard" / "shop-staging" / "lock"
    lock.mkdir(parents=True)
    (lock / "holder.json").write_bytes(b'{"who": "' + b"A" * 5_000_000 + b'"}')
    code, out = run(LocalRemote(tmp_path), hostlock.read_argv("deploy", "shop", "staging"))
    assert code == 0 and len(out) == hostlock.MAX_RECORD + 1
    assert parse_record(out) is hostlock.UNREADABLE


def test_racing_acquires_exactly_one_wins(tmp_path: Path) -> None:
    remote = LocalRemote(tmp_path)
    codes: list[int] = []
    start = threading.Barrier(8)

    def contender(i: int) -> None:
        start.wait(timeout=10)
        codes.append(run(remote, hostlock.acquire_argv("deploy", "shop", "staging"),
                         record(token=f"{i:016x}").to_bytes())[0])

    threads = [threading.Thread(target=contender, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(codes) == [0] + [hostlock.EXIT_HELD] * 7
