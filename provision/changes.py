"""The vocabulary shared by plan, runner and report.

A plan is a pure function (desired spec, observed facts) -> list[Change]. A Change with no steps is never
produced: "changed" simply means "there were steps" (pyinfra's rule). The runner applies steps, or in
check mode only reports them; that is the one place check mode branches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from provision import ops
from provision.ops import Argv, Op


@dataclass(frozen=True, init=False)
class Step:
    """One operation (provision.ops): what it does is data, so plans compare with `==` and --check shows it.

    `Step("apt-get update", argv=(...), sudo=True)` is shorthand for `Step("...", Argv((...), sudo=True))`.
    `description` is what --check, -v and logs show: it must never contain a secret value.
    """

    description: str
    op: Op

    def __init__(self, description: str, op: Op | None = None, *, argv: Sequence[str] | None = None,
                 sudo: bool = False, stdin: bytes | None = None) -> None:
        if (op is None) == (argv is None):
            raise ValueError("a Step has exactly one of op or argv")
        object.__setattr__(self, "description", description)
        object.__setattr__(self, "op", op if op is not None else Argv(tuple(argv or ()), sudo=sudo, stdin=stdin))

    @property
    def argv(self) -> tuple[str, ...] | None:
        return self.op.argv if isinstance(self.op, Argv) else None

    def to_json(self) -> dict[str, Any]:
        return {"description": self.description, "op": ops.to_json(self.op)}


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
        """What --json shows of this change (descriptions and ops: both are secret-free)."""
        return {"target": self.target, "action": self.action, "reason": self.reason,
                "steps": [s.to_json() for s in self.steps], **({"data": self.data} if self.data else {})}


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
