"""The audit log on the host: an append-only JSON-lines file, `<dockyard dir>/audit.jsonl` (0600), one line per
deploy, up, teardown, lock.acquire and lock.release: time, who (plus the CI job when the environment names one),
command, apps, releases and result.

Pure: record building, the CI detection (from a given environment mapping), the argv that append and read, and
the defensive parsing of what is read back (the host's file is untrusted: bounded, one JSON object a line).
An entry is one line of less than PIPE_BUF bytes written by a single `cat >> FILE` (O_APPEND), so concurrent
writers do not interleave within a line.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from provision.hostlock import dockyard_dir, now_utc, one_line

AUDIT_NAME = "audit.jsonl"
MAX_LINE = 4000  # bytes, below PIPE_BUF (4096): one write, never interleaved
MAX_ENTRIES = 1000  # `audit -n` at most
MAX_APPS = 50  # names kept in one entry
RESULTS = ("ok", "changed", "failed")


def audit_path(user: str, project: str, environment: str) -> str:
    return f"{dockyard_dir(user, project, environment)}/{AUDIT_NAME}"


def ci_job(env: Mapping[str, str]) -> dict[str, str] | None:
    """The CI job this run belongs to, from the environment the CI system sets (None outside CI)."""
    def pick(**names: str) -> dict[str, str]:
        return {key: one_line(env[name]) for key, name in names.items() if env.get(name)}

    if env.get("GITHUB_ACTIONS") == "true":
        return {"system": "github-actions", **pick(run_id="GITHUB_RUN_ID", workflow="GITHUB_WORKFLOW",
                                                   actor="GITHUB_ACTOR", repository="GITHUB_REPOSITORY")}
    if env.get("GITLAB_CI") == "true":
        return {"system": "gitlab-ci", **pick(job_id="CI_JOB_ID", pipeline_id="CI_PIPELINE_ID",
                                              actor="GITLAB_USER_LOGIN", project="CI_PROJECT_PATH")}
    if env.get("CI", "").lower() in ("1", "true", "yes"):
        return {"system": "ci", **pick(job_id="CI_JOB_ID", build_id="BUILD_ID")}
    return None


def entry(command: str, *, who: str, machine: str, result: str, exit_code: int, apps: Iterable[str] = (),
          releases: Iterable[str] = (), message: str = "", ci: Mapping[str, str] | None = None,
          time: str | None = None) -> dict[str, Any]:
    if result not in RESULTS:
        raise ValueError(f"an audit result is one of {', '.join(RESULTS)}")
    doc: dict[str, Any] = {"time": time or now_utc(), "who": one_line(who), "machine": one_line(machine),
                           "command": one_line(command), "apps": [one_line(a) for a in apps][:MAX_APPS],
                           "releases": [one_line(r) for r in releases][:MAX_APPS], "result": result,
                           "exit_code": int(exit_code)}
    if message:
        doc["message"] = one_line(message, 500)
    if ci:
        doc["ci"] = {one_line(k, 40): one_line(v) for k, v in ci.items()}
    return doc


def entry_line(doc: Mapping[str, Any]) -> bytes:
    """One line of JSON below PIPE_BUF: an oversized entry keeps its head fields and says it was cut."""
    line = json.dumps(doc, sort_keys=True, ensure_ascii=True) + "\n"
    if len(line) <= MAX_LINE:
        return line.encode()
    cut = {k: doc[k] for k in ("time", "who", "machine", "command", "result", "exit_code") if k in doc}
    cut["apps"] = [f"{len(doc.get('apps') or [])} apps"]
    cut["truncated"] = True
    return (json.dumps(cut, sort_keys=True, ensure_ascii=True)[:MAX_LINE - 1] + "\n").encode()


# umask first: the file is created 0600 in a 0700 directory; one `cat >>` of one short line (O_APPEND)
_APPEND = 'umask 077; mkdir -p "$1" && cat >> "$2"'
_TAIL = '[ -f "$1" ] || exit 0; tail -n "$2" "$1" | head -c "$3"'


def append_argv(user: str, project: str, environment: str) -> list[str]:
    """Append the line given on stdin to the audit log."""
    return ["sh", "-c", _APPEND, "sh", dockyard_dir(user, project, environment),
            audit_path(user, project, environment)]


def tail_argv(user: str, project: str, environment: str, count: int) -> list[str]:
    """The last `count` lines (bounded in bytes too); nothing when there is no log yet."""
    count = max(1, min(int(count), MAX_ENTRIES))
    return ["sh", "-c", _TAIL, "sh", audit_path(user, project, environment), str(count),
            str(count * (MAX_LINE + 1))]


def parse_entries(text: str, limit: int = MAX_ENTRIES) -> list[dict[str, Any]]:
    """What `tail` read back: each line that is a JSON object, its fields one printable line each; a line that is
    not becomes `{"unreadable": true}` (kept, so a tampered log shows as such)."""
    out: list[dict[str, Any]] = []
    for raw in text.splitlines()[-limit:]:
        if not raw.strip():
            continue
        doc: Any = None
        if len(raw) <= MAX_LINE:
            try:
                doc = json.loads(raw)
            except (ValueError, RecursionError):
                doc = None
        out.append(_clean(doc) if isinstance(doc, dict) else {"unreadable": True})
    return out


def _clean(doc: Mapping[str, Any]) -> dict[str, Any]:
    def names(value: Any) -> list[str]:
        return [one_line(v) for v in value[:MAX_APPS]] if isinstance(value, list) else []

    code = doc.get("exit_code")
    clean: dict[str, Any] = {
        "time": one_line(doc.get("time")), "who": one_line(doc.get("who")), "machine": one_line(doc.get("machine")),
        "command": one_line(doc.get("command")), "apps": names(doc.get("apps")),
        "releases": names(doc.get("releases")),
        "result": doc.get("result") if doc.get("result") in RESULTS else one_line(doc.get("result"), 20),
        "exit_code": code if isinstance(code, int) and not isinstance(code, bool) else None,
    }
    if doc.get("message"):
        clean["message"] = one_line(doc.get("message"), 500)
    ci = doc.get("ci")
    if isinstance(ci, dict):
        clean["ci"] = {one_line(k, 40): one_line(v) for k, v in list(ci.items())[:10]}
    return clean


def entry_text(doc: Mapping[str, Any]) -> str:
    """One line for the console."""
    if doc.get("unreadable"):
        return "(an unreadable line)"
    ci = doc.get("ci") or {}
    job = f" [{' '.join(f'{k}={v}' for k, v in ci.items())}]" if ci else ""
    apps = f" apps={','.join(doc.get('apps') or [])}" if doc.get("apps") else ""
    msg = f": {doc['message']}" if doc.get("message") else ""
    return (f"{doc.get('time')}  {doc.get('command'):<13} {doc.get('result')} (exit {doc.get('exit_code')})  "
            f"{doc.get('who')}@{doc.get('machine')}{job}{apps}{msg}")


def result_of(*, failed: bool, changed: int) -> str:
    return "failed" if failed else ("changed" if changed else "ok")


__all__: Sequence[str] = ("append_argv", "audit_path", "ci_job", "entry", "entry_line", "entry_text",
                          "parse_entries", "result_of", "tail_argv")
