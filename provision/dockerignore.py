"""`.dockerignore` follows docker's rules (moby/patternmatcher, as used by the docker CLI):
- one pattern per line; `#` lines and blank lines are ignored; surrounding whitespace is trimmed;
- patterns are cleaned like Go's `filepath.Clean` and a leading `/` is dropped (paths are context-relative);
- `*` matches any run of non-`/` characters, `?` one non-`/` character, `[...]` a class, `\\` escapes;
- `**` matches any number of directories (including none); a trailing `**` matches everything below;
- a pattern that matches a directory excludes everything beneath it;
- `!pattern` re-includes; the last matching line wins;
- the Dockerfile and `.dockerignore` are always sent, even when a pattern excludes them (as the CLI does).
"""

from __future__ import annotations

import posixpath
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from provision.errors import InputError
from provision.yamlfile import read_text


def clean_pattern(pattern: str) -> str:
    """Go's filepath.Clean on a pattern, without a leading `/` (docker's ReadAll does the same)."""
    cleaned = posixpath.normpath(pattern)
    if cleaned.startswith("//"):  # posixpath keeps a leading '//'
        cleaned = "/" + cleaned.lstrip("/")
    cleaned = cleaned.lstrip("/")
    return cleaned or "."


@dataclass(frozen=True)
class Pattern:
    text: str
    exclusion: bool
    regex: re.Pattern[str]

    def match(self, path: str) -> bool:
        return self.regex.fullmatch(path) is not None


def compile_pattern(text: str) -> Pattern:
    exclusion = text.startswith("!")
    if exclusion:
        text = text[1:].strip()
    if not text:
        raise ValueError('illegal exclusion pattern: "!"')
    text = clean_pattern(text)
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "*":
            if i + 1 < n and text[i + 1] == "*":
                i += 2
                if i < n and text[i] == "/":
                    i += 1
                if i >= n:
                    out.append(".*")  # "**" at the end matches everything below (gitignore-style)
                else:
                    out.append("(.*/)?")
                continue
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\":
            if i + 1 < n:
                i += 1
                out.append(re.escape(text[i]))
            else:
                out.append(re.escape("\\"))
        elif ch == "[":
            end = _class_end(text, i)
            if end < 0:
                raise ValueError("unterminated '[' (a character class)")
            out.append(text[i : end + 1])  # a class passes through, as in patternmatcher ([^a] negates)
            i = end
        else:
            out.append(re.escape(ch))
        i += 1
    try:
        with warnings.catch_warnings():  # e.g. "possible nested set" for [[:alpha:]]: not ours to print
            warnings.simplefilter("ignore")
            regex = re.compile("".join(out), re.DOTALL)
    except re.error as exc:  # [z-a], a bad escape in a class: what docker reports as ErrBadPattern
        raise ValueError(f"not a valid pattern ({_regex_reason(exc)})") from None
    return Pattern(text=("!" if exclusion else "") + text, exclusion=exclusion, regex=regex)


def _regex_reason(exc: re.error) -> str:
    """re's reason without the pattern text (the line number says where)."""
    reason = str(exc.msg)
    if reason.startswith("bad character range"):
        return "a character range runs backwards, like [z-a]"
    return reason if len(reason) <= 40 else "a malformed character class"


def _class_end(text: str, start: int) -> int:
    j = start + 1
    if j < len(text) and text[j] == "^":
        j += 1
    if j < len(text) and text[j] == "]":
        j += 1
    while j < len(text):
        if text[j] == "\\":
            j += 2
            continue
        if text[j] == "]":
            return j
        j += 1
    return -1


class PatternError(ValueError):
    """A `.dockerignore` line that is not a pattern; the message names the line, never its text."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


def parse_dockerignore(text: str) -> list[Pattern]:
    patterns = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            patterns.append(compile_pattern(line))
        except ValueError as exc:
            raise PatternError(number, str(exc)) from None
    return patterns


def read_dockerignore(root: Path) -> list[Pattern]:
    """The patterns of `root/.dockerignore` (none without one); a bad file is an InputError naming it and
    the line, never quoting it (it may be a symlink to anything)."""
    ignore_file = root / ".dockerignore"
    if not ignore_file.is_file():
        return []
    text = read_text(ignore_file, what=".dockerignore file")
    try:
        return parse_dockerignore(text)
    except PatternError as exc:
        raise InputError.single(f"invalid pattern: {exc.reason}", ignore_file, "", exc.line) from None


class Matcher:
    """Docker's MatchesOrParentMatches: last matching pattern wins; a pattern matching a parent dir counts."""

    def __init__(self, patterns: Iterable[Pattern]) -> None:
        self.patterns = list(patterns)
        self.has_exclusions = any(p.exclusion for p in self.patterns)

    def excluded(self, path: str) -> bool:
        parts = path.split("/")
        parents = ["/".join(parts[: i + 1]) for i in range(len(parts) - 1)]
        matched = False
        for pattern in self.patterns:
            if pattern.exclusion != matched:
                continue  # an include cannot change an unmatched path, nor an exclude a matched one
            hit = pattern.match(path) or any(pattern.match(parent) for parent in parents)
            if hit:
                matched = not pattern.exclusion
        return matched
