"""The deploy lock on the host: its record, where it lives, and the argv that take, read and release it.

Pure apart from `local_actor()`/`pid_alive()` (they read this machine). The lock is a directory,
`<dockyard dir>/lock` (`mkdir` is atomic: of two racing `mkdir`s exactly one succeeds), holding `holder.json`,
the record of who took it. Everything read back from the host is untrusted: the record is size-capped, must be
a JSON object, and every field shown is cut to one printable line.

The dockyard directory is the one the apps' secrets env files live in (provision.commands.docker's
`env_file_path`): /var/lib/dockyard/<project>-<env> for root, else .dockyard/<project>-<env> relative to the
SSH user's home (SSH commands start there), so no sudo is ever needed.
"""

from __future__ import annotations

import datetime
import getpass
import json
import os
import re
import secrets
import socket
import subprocess
from dataclasses import asdict, dataclass
from typing import Any

LOCK_NAME = "lock"
RECORD_NAME = "holder.json"
MAX_RECORD = 16 * 1024  # bytes of holder.json read back; a larger record is not ours
MAX_FIELD = 200  # characters of one field when shown
MAX_MESSAGE = 500  # characters of a lock message the user gives
EXIT_HELD = 75  # the acquire script: someone else holds the lock (its record follows on stdout)
EXIT_ABSENT = 76  # read/release: there is no lock
EXIT_NOT_OURS = 77  # release-if-ours: the lock is held by another run
GIT_TIMEOUT = 5.0
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def dockyard_dir(user: str, project: str, environment: str) -> str:
    """The per-environment directory on the host (the same base as the apps' env files)."""
    base = "/var/lib/dockyard" if user == "root" else ".dockyard"
    return f"{base}/{project}-{environment}"


def lock_dir(user: str, project: str, environment: str) -> str:
    return f"{dockyard_dir(user, project, environment)}/{LOCK_NAME}"


def one_line(value: Any, limit: int = MAX_FIELD) -> str:
    """A value from an untrusted record as one printable line of at most `limit` characters."""
    text = value if isinstance(value, str) else ("" if value is None else json.dumps(value, default=str))
    text = _UNPRINTABLE.sub("?", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_message(message: str) -> str | None:
    """Why a lock message the user gives is refused (None when it is fine): one line, bounded."""
    if len(message) > MAX_MESSAGE:
        return f"the lock message is {len(message)} characters long; at most {MAX_MESSAGE}"
    if _UNPRINTABLE.search(message):
        return "the lock message must be one line of printable characters"
    return None


# --- who is asking ---------------------------------------------------------------------------------------


def actor_from(git_name: str, git_email: str, os_user: str) -> str:
    """`Name <email>` from git's config when it has them, else the OS user."""
    name, email = git_name.strip(), git_email.strip()
    if name and email:
        return one_line(f"{name} <{email}>")
    return one_line(name or email or os_user or "unknown")


def _git_config(key: str, cwd: str | None) -> str:
    try:
        done = subprocess.run(["git", "config", "--get", key], cwd=cwd, capture_output=True, text=True,
                              timeout=GIT_TIMEOUT, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError, ImportError):
        return str(os.getuid()) if hasattr(os, "getuid") else "unknown"


def local_actor(cwd: str | None = None) -> str:
    """Who runs this dockyard: git user.name/email (as seen from `cwd`, the playbook's directory) or the OS
    user."""
    return actor_from(_git_config("user.name", cwd), _git_config("user.email", cwd), os_user())


def machine_name() -> str:
    return one_line(socket.gethostname())


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine (a reused id reads as alive: the safe side)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def now_utc() -> str:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


# --- the record ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LockRecord:
    who: str
    machine: str
    pid: int
    since: str  # UTC ISO 8601
    command: str
    release: str = ""
    message: str = ""
    token: str = ""  # random: lets the run that took the lock release only its own lock
    readable: bool = True  # False: the host holds a lock whose record is missing, too large or not ours

    def to_bytes(self) -> bytes:
        doc = {k: v for k, v in asdict(self).items() if k != "readable"}
        return (json.dumps(doc, sort_keys=True) + "\n").encode()

    def to_json(self) -> dict[str, Any]:
        doc = {k: v for k, v in asdict(self).items() if k != "token"}
        return doc

    def describe(self) -> str:
        """One line naming holder, since when, command and message (every field already one printable line)."""
        if not self.readable:
            return "held, but its record is missing or unreadable (being written, or not dockyard's)"
        how = f"pid {self.pid}" if self.pid else "by hand"
        text = f"held by {self.who} on {self.machine} ({how}) since {self.since}, running `{self.command}`"
        if self.release:
            text += f" (release {self.release})"
        return text + (f": {self.message}" if self.message else "")


UNREADABLE = LockRecord(who="?", machine="?", pid=0, since="?", command="?", readable=False)


def new_record(command: str, *, who: str, machine: str, pid: int, release: str = "", message: str = "",
               since: str | None = None, token: str | None = None) -> LockRecord:
    return LockRecord(who=one_line(who), machine=one_line(machine), pid=pid, since=since or now_utc(),
                      command=one_line(command), release=one_line(release), message=one_line(message, MAX_MESSAGE),
                      token=token or secrets.token_hex(8))


def parse_record(data: bytes | str) -> LockRecord:
    """A record read back from the host (untrusted): UNREADABLE unless it is a JSON object within the size cap;
    every text field becomes one printable, bounded line, a pid that is not an int becomes 0."""
    raw = data.encode("utf-8", "replace") if isinstance(data, str) else data
    if not raw.strip() or len(raw) > MAX_RECORD:
        return UNREADABLE
    try:
        doc = json.loads(raw.decode("utf-8", "replace"))
    except (ValueError, RecursionError):
        return UNREADABLE
    if not isinstance(doc, dict):
        return UNREADABLE
    pid = doc.get("pid")
    return LockRecord(
        who=one_line(doc.get("who")), machine=one_line(doc.get("machine")),
        pid=pid if isinstance(pid, int) and not isinstance(pid, bool) and 0 < pid < 2**32 else 0,
        since=one_line(doc.get("since")), command=one_line(doc.get("command")),
        release=one_line(doc.get("release")), message=one_line(doc.get("message"), MAX_MESSAGE),
        token=one_line(doc.get("token"), 64))


def is_stale(record: LockRecord, *, machine: str, alive: Any = pid_alive) -> bool:
    """The holder ran on this machine and its process is gone. (A lock from another machine is never judged:
    we cannot see its processes.)"""
    return record.readable and record.machine == machine and record.pid > 0 and not alive(record.pid)


def release_hint(environment: str) -> str:
    return f"dockyard lock.release -e {environment}"


def refusal(record: LockRecord, environment: str, *, stale: bool) -> str:
    """The one line a refused run prints."""
    line = f"the deploy lock of {environment} is {record.describe()}"
    if stale:
        return f"{line} — stale: that process is gone from this machine; release it with `{release_hint(environment)}`"
    return f"{line}; wait with --lock-wait DURATION, or release it with `{release_hint(environment)}`"


# --- the argv (no value is ever interpolated into the scripts: they read "$1"… and stdin) ------------------

# make the dockyard dir (0700), then take the lock (atomic mkdir) and write our record from stdin through a temp
# file (a reader never sees half of it); when the lock exists, print its record (bounded) and exit EXIT_HELD
_ACQUIRE = (
    'umask 077; mkdir -p "$1" || exit 1; '
    'if mkdir "$2" 2>/dev/null; then cat > "$2/.holder.tmp" && mv -f "$2/.holder.tmp" "$2/' + RECORD_NAME + '" '
    '&& exit 0; rm -rf "$2"; exit 1; fi; '
    '[ -d "$2" ] || exit 1; head -c "$3" "$2/' + RECORD_NAME + '" 2>/dev/null; exit ' + str(EXIT_HELD)
)
_READ = '[ -d "$1" ] || exit ' + str(EXIT_ABSENT) + '; head -c "$2" "$1/' + RECORD_NAME + '" 2>/dev/null; exit 0'
_RELEASE = '[ -d "$1" ] || exit ' + str(EXIT_ABSENT) + '; rm -f "$1/' + RECORD_NAME + '" "$1/.holder.tmp"; rmdir "$1"'
# only when the record carries our token: a lock released by hand and taken by another run is left alone
_RELEASE_OURS = (
    '[ -d "$1" ] || exit ' + str(EXIT_ABSENT) + '; '
    'grep -qF -- "$2" "$1/' + RECORD_NAME + '" 2>/dev/null || exit ' + str(EXIT_NOT_OURS) + '; '
    'rm -f "$1/' + RECORD_NAME + '" "$1/.holder.tmp"; rmdir "$1"'
)


def acquire_argv(user: str, project: str, environment: str) -> list[str]:
    """Take the lock; the record travels on stdin. Exit 0 taken, EXIT_HELD held (its record on stdout)."""
    return ["sh", "-c", _ACQUIRE, "sh", dockyard_dir(user, project, environment),
            lock_dir(user, project, environment), str(MAX_RECORD + 1)]


def read_argv(user: str, project: str, environment: str) -> list[str]:
    """The holder's record on stdout (bounded); exit EXIT_ABSENT when nobody holds the lock."""
    return ["sh", "-c", _READ, "sh", lock_dir(user, project, environment), str(MAX_RECORD + 1)]


def release_argv(user: str, project: str, environment: str, token: str | None = None) -> list[str]:
    """Remove the lock (EXIT_ABSENT when there is none); with `token`, only if its record carries it
    (EXIT_NOT_OURS otherwise)."""
    where = lock_dir(user, project, environment)
    if token is None:
        return ["sh", "-c", _RELEASE, "sh", where]
    if not re.fullmatch(r"[0-9a-f]{8,64}", token):
        raise ValueError("a lock token is hex")
    return ["sh", "-c", _RELEASE_OURS, "sh", where, f'"token": "{token}"']
