"""Secret values, resolved lazily: the deployer's environment first, then a `.env` beside the playbook.

A value is read only when a stage asks for it, and never appears in a repr, a str or an exception message:
problems name the secret (and the .env line), never its value. `digest(name)` gives what config hashes use.

`.env` syntax: `KEY=VALUE` lines; blank lines and `#` comments; an optional `export ` prefix; values
may be single-quoted (literal), double-quoted (`\\n`, `\\t`, `\\"`, `\\\\` escapes; may span lines) or bare
(an inline ` # comment` is dropped, surrounding whitespace trimmed). No `${VAR}` interpolation.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from provision.errors import InputError, Problem

if TYPE_CHECKING:
    from provision.spec import Playbook

_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}


class SecretSource:
    """Where a playbook's secrets come from. `environ` defaults to the live process environment."""

    def __init__(self, playbook: Playbook, environ: Mapping[str, str] | None = None,
                 env_file: Path | None = None) -> None:
        self._playbook = playbook
        self._environ = environ
        self.env_file = env_file if env_file is not None else playbook.base_dir / ".env"
        self._file_values: dict[str, str] | None = None

    def __repr__(self) -> str:
        return f"SecretSource(env_file={str(self.env_file)!r})"

    __str__ = __repr__

    # ---------------------------------------------------------------------------------------- lookups
    def _from_file(self) -> dict[str, str]:
        if self._file_values is None:
            if self.env_file.is_file():
                try:
                    text = self.env_file.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError) as exc:
                    reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
                    raise InputError.single(f"cannot read secrets file: {reason}", self.env_file) from None
                self._file_values = parse_env_file(text, self.env_file)
            else:
                self._file_values = {}
        return self._file_values

    def _lookup(self, name: str) -> str | None:
        environ = os.environ if self._environ is None else self._environ
        if name in environ:
            return environ[name]
        return self._from_file().get(name)

    def where(self, name: str) -> str | None:
        """'environment', the .env path, or None: for messages that say where a secret came from."""
        environ = os.environ if self._environ is None else self._environ
        if name in environ:
            return "environment"
        return str(self.env_file) if name in self._from_file() else None

    def has(self, name: str) -> bool:
        return self._lookup(name) is not None

    def missing(self, names: Iterable[str]) -> list[str]:
        """The names (in order, without repeats) that neither the environment nor the .env file sets."""
        return [n for n in dict.fromkeys(names) if self._lookup(n) is None]

    def require(self, apps: Iterable[str] | None = None) -> None:
        """Raise one InputError listing, per app, every secret that is not set; call it before any effect."""
        names = list(self._playbook.apps) if apps is None else list(apps)
        problems = []
        for app in names:
            absent = self.missing(self._playbook.apps[app].secrets)
            if absent:
                problems.append(Problem(
                    f"app {app!r} needs secret{'s' if len(absent) > 1 else ''} {', '.join(absent)}: set "
                    f"{'them' if len(absent) > 1 else 'it'} in the environment or in {self.env_file}",
                    self._playbook.source, f"apps.{app}.secrets"))
        if problems:
            raise InputError(problems)

    def value(self, name: str) -> str:
        found = self._lookup(name)
        if found is None:
            raise InputError.single(f"secret {name} is not set in the environment or in {self.env_file}",
                                    self._playbook.source)
        return found

    def digest(self, name: str) -> str:
        """sha256 hex of the value: config hashes cover this, never the value itself."""
        return hashlib.sha256(self.value(name).encode("utf-8")).hexdigest()


def parse_env_file(text: str, path: Path | None = None) -> dict[str, str]:
    """KEY=VALUE pairs from a .env text. Errors name the file and line, never the line's content."""
    values: dict[str, str] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        lineno, line = i + 1, lines[i].strip()
        i += 1
        if not line or line.startswith("#"):
            continue
        if line.startswith("export ") or line.startswith("export\t"):
            line = line[7:].lstrip()
        key, sep, rest = line.partition("=")
        key = key.strip()
        if not sep or not _KEY_RE.fullmatch(key):
            raise InputError.single(f"line {lineno}: expected KEY=VALUE (KEY: letters, digits, '_')", path,
                                    line=lineno)
        rest = rest.lstrip()
        if rest[:1] in ('"', "'"):
            quote, buf = rest[0], rest[1:]
            end = _closing(buf, quote)
            while end is None:
                if i >= len(lines):
                    raise InputError.single(f"line {lineno}: the value of {key} has no closing {quote}",
                                            path, line=lineno)
                buf += "\n" + lines[i]
                i += 1
                end = _closing(buf, quote)
            after = buf[end + 1:].strip()
            if after and not after.startswith("#"):
                raise InputError.single(f"line {lineno}: unexpected text after the quoted value of {key}",
                                        path, line=lineno)
            values[key] = _unescape(buf[:end]) if quote == '"' else buf[:end]
        else:
            values[key] = re.split(r"\s#", rest, maxsplit=1)[0].strip()
    return values


def _closing(text: str, quote: str) -> int | None:
    j = 0
    while j < len(text):
        if quote == '"' and text[j] == "\\":
            j += 2
            continue
        if text[j] == quote:
            return j
        j += 1
    return None


def _unescape(text: str) -> str:
    out, j = [], 0
    while j < len(text):
        if text[j] == "\\" and j + 1 < len(text):
            nxt = text[j + 1]
            out.append(_ESCAPES.get(nxt, "\\" + nxt))
            j += 2
        else:
            out.append(text[j])
            j += 1
    return "".join(out)


def make_redactor(values: Iterable[str]) -> Callable[[str], str]:
    """Replace every secret value (longest first) in a text shown to the user (build or container logs)."""
    secrets_ = sorted({v for v in values if len(v) >= 3}, key=len, reverse=True)

    def redact(text: str) -> str:
        for value in secrets_:
            text = text.replace(value, "***")
        return text

    return redact
