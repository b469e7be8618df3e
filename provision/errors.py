"""The error types that decide dockyard's exit codes.

0 ok, 1 a step failed (remote/cloud effect went wrong), 2 invalid input (nothing was touched).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

EXIT_FAILED = 1
EXIT_INVALID = 2


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the user's input, located as precisely as we can."""

    message: str
    file: Path | None = None
    key_path: str = ""  # e.g. "apps.web.healthcheck.http"
    line: int | None = None  # 1-based, when YAML gave us one

    def __str__(self) -> str:
        where = str(self.file) if self.file else "<input>"
        if self.line:
            where += f":{self.line}"
        if self.key_path:
            where += f": {self.key_path}"
        return f"{where}: {self.message}"


class DockyardError(Exception):
    """Base class; carries its exit code."""

    exit_code = EXIT_FAILED


@dataclass
class InputError(DockyardError):
    """Bad playbook, template, option or secret: reported before anything is touched (exit 2)."""

    problems: list[Problem] = field(default_factory=list)
    exit_code = EXIT_INVALID

    def __post_init__(self) -> None:
        super().__init__(str(self))

    @classmethod
    def single(cls, message: str, file: Path | None = None, key_path: str = "", line: int | None = None
               ) -> InputError:
        return cls([Problem(message, file, key_path, line)])

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


class StepFailed(DockyardError):
    """An effect (AWS call, SSH command, Docker API call) failed: exit 1, one readable line."""

    exit_code = EXIT_FAILED


def api_status(exc: BaseException) -> int | None:
    """The HTTP status of a Docker Engine API error (docker.errors.APIError and requests' errors carry the
    response), None for anything else."""
    return getattr(getattr(exc, "response", None), "status_code", None)
