"""The vocabulary shared by plan, runner and report.

A plan is a pure function (desired spec, observed facts) -> list[Change]. A Change with no steps is never
produced: "changed" simply means "there were steps" (pyinfra's rule). The runner applies steps, or in
check mode only reports them; that is the one place check mode branches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

# An API effect (Docker SDK, boto3, SFTP upload, …). It receives the runner's context object for the
# host (e.g. provision.remote.Remote or an AWS session holder) and returns nothing meaningful.
Effect = Callable[[Any], Any]


@dataclass(frozen=True)
class Step:
    """One effect. Exactly one of `argv` (a remote command) or `effect` (an API call) is set.

    `description` is what --check, -v and logs show: it must never contain a secret value.
    """

    description: str
    argv: tuple[str, ...] | None = None
    sudo: bool = False
    effect: Effect | None = field(default=None, compare=False)
    # stdin for argv steps (e.g. file contents); never shown.
    stdin: bytes | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if (self.argv is None) == (self.effect is None):
            raise ValueError("a Step has exactly one of argv or effect")


@dataclass(frozen=True)
class Change:
    """What must happen to one target for it to match the spec."""

    target: str  # stable id, e.g. "engine:daemon.json", "app:web:container", "aws:security-group"
    action: str  # create | update | replace | delete | install | start | restart | …
    reason: str  # why, in a few words ("config hash differs", "absent")
    steps: tuple[Step, ...]
    before: str | None = None  # for --diff (text; secret-free)
    after: str | None = None
    notify: tuple[str, ...] = ()  # handler names to run once at the end if this change was applied
    data: dict[str, Any] = field(default_factory=dict, compare=False)  # machine-readable, for --json

    def to_json(self) -> dict[str, Any]:
        """What --json shows of this change (descriptions only: they are secret-free)."""
        return {"target": self.target, "action": self.action, "reason": self.reason,
                "steps": [s.description for s in self.steps], **({"data": self.data} if self.data else {})}


class Status(StrEnum):
    OK = "ok"
    CHANGED = "changed"
    FAILED = "failed"
    SKIPPED = "skipped"  # not run because an earlier step of this host failed


@dataclass
class TaskResult:
    """The outcome of one task (one target) on one host."""

    host: str
    task: str  # a human name: "install docker engine", "app web: container"
    status: Status
    changes: list[Change] = field(default_factory=list)
    message: str = ""
    elapsed: float = 0.0
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class HostRecap:
    host: str
    results: list[TaskResult] = field(default_factory=list)
    elapsed: float = 0.0

    def count(self, status: Status) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def failed(self) -> bool:
        return self.count(Status.FAILED) > 0
