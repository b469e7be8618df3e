"""provision.audit: entries (one line under PIPE_BUF), CI detection from an environment mapping, and the append /
tail argv run for real with this machine's `sh`; what is read back is parsed defensively."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from provision import audit
from tests.unit.lockhost import LocalRemote

pytestmark = pytest.mark.unit


def test_ci_detection_from_the_environment() -> None:
    gh = {"GITHUB_ACTIONS": "true", "GITHUB_RUN_ID": "991", "GITHUB_WORKFLOW": "release", "GITHUB_ACTOR": "ada",
          "CI": "true"}
    assert audit.ci_job(gh) == {"system": "github-actions", "run_id": "991", "workflow": "release", "actor": "ada"}
    gl = {"GITLAB_CI": "true", "CI_JOB_ID": "77", "CI": "true"}
    assert audit.ci_job(gl) == {"system": "gitlab-ci", "job_id": "77"}
    assert audit.ci_job({"CI": "true", "BUILD_ID": "5"}) == {"system": "ci", "build_id": "5"}
    assert audit.ci_job({"CI": "false"}) is None
    assert audit.ci_job({}) is None
    assert audit.ci_job({"GITHUB_ACTIONS": "true", "GITHUB_ACTOR": "a\nb"})["actor"] == "a?b"


def test_an_entry_is_one_json_line_below_pipe_buf() -> None:
    doc = audit.entry("deploy", who="Ada", machine="laptop", result="changed", exit_code=0, apps=["web"],
                      ci={"system": "ci"}, time="2024-05-01T10:00:00Z")
    line = audit.entry_line(doc)
    assert line.endswith(b"\n") and line.count(b"\n") == 1 and len(line) < 4096
    assert json.loads(line) == {"time": "2024-05-01T10:00:00Z", "who": "Ada", "machine": "laptop",
                                "command": "deploy", "apps": ["web"], "releases": [], "result": "changed",
                                "exit_code": 0, "ci": {"system": "ci"}}
    with pytest.raises(ValueError):
        audit.entry("deploy", who="a", machine="b", result="maybe", exit_code=0)


def test_an_oversized_entry_is_cut_and_says_so() -> None:
    doc = audit.entry("deploy", who="W" * 300, machine="m", result="ok", exit_code=0,
                      apps=[f"app{i:03d}-" + "x" * 150 for i in range(50)], message="M" * 2000)
    line = audit.entry_line(doc)
    assert len(line) <= audit.MAX_LINE and line.count(b"\n") == 1
    cut = json.loads(line)
    assert cut["truncated"] is True and cut["command"] == "deploy" and cut["apps"] == ["50 apps"]


def test_what_is_read_back_is_parsed_defensively() -> None:
    good = json.dumps({"time": "t", "who": "Ada\x1b[2J", "machine": "m", "command": "deploy", "apps": ["web", 7],
                       "releases": "notalist", "result": "ok", "exit_code": True})
    text = "\n".join([good, "not json", "[1, 2]", "{" * 50_000, "", json.dumps({"result": "x" * 100})])
    entries = audit.parse_entries(text)
    assert len(entries) == 5
    first = entries[0]
    assert first["who"] == "Ada?[2J" and first["apps"] == ["web", "7"] and first["releases"] == []
    assert first["exit_code"] is None  # a bool is not an exit code
    assert entries[1:4] == [{"unreadable": True}] * 3
    assert len(entries[4]["result"]) == 20
    assert "\n" not in audit.entry_text(first) and audit.entry_text(entries[1]) == "(an unreadable line)"
    assert audit.parse_entries(text, limit=2) == entries[-1:]  # the last 2 lines: one blank, one entry


def test_append_and_tail_on_a_real_shell(tmp_path: Path) -> None:
    remote = LocalRemote(tmp_path)
    where = ("deploy", "shop", "staging")
    assert remote.run(audit.tail_argv(*where, 5)).stdout == ""  # no log yet
    for i in range(3):
        doc = audit.entry(f"cmd{i}", who="a", machine="b", result="ok", exit_code=0, time=f"t{i}")
        remote.run(audit.append_argv(*where), stdin=audit.entry_line(doc))
    path = tmp_path / audit.audit_path(*where)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert [e["command"] for e in audit.parse_entries(remote.run(audit.tail_argv(*where, 2)).stdout)] == \
        ["cmd1", "cmd2"]
    assert audit.tail_argv(*where, 10**9)[5] == str(audit.MAX_ENTRIES)  # bounded


def test_concurrent_appends_never_interleave(tmp_path: Path) -> None:
    remote = LocalRemote(tmp_path)
    where = ("deploy", "shop", "staging")

    def writer(i: int) -> None:
        doc = audit.entry("deploy", who=f"w{i}", machine="m", result="ok", exit_code=0, message="z" * 3000)
        remote.run(audit.append_argv(*where), stdin=audit.entry_line(doc))

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    entries = audit.parse_entries((tmp_path / audit.audit_path(*where)).read_text())
    assert sorted(e["who"] for e in entries) == sorted(f"w{i}" for i in range(12))
