"""Value types of a task list: statuses, task kinds, tasks, and the problems of a broken list.

A ``Task`` is what every other part of the runner sees of a task list: the wire form of
CONTRACTS.md ("Task Definition") plus the 1-based source line it was read from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from runner.errors import ConfigError


class TaskStatus(StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    DONE = "done"
    BLOCKED = "blocked"


class TaskType(StrEnum):
    ATOMIC = "atomic"
    GROUP = "group"
    PHASE = "phase"


@dataclass(frozen=True)
class Task:
    """One task of a list: a phase, a group (a task with steps) or an atomic leaf.

    ``status`` of a group or phase is derived from its leaves (done when all are done,
    in progress when some are started or done, blocked when one is blocked, else pending).
    ``criteria`` keeps the order of the file; ``line`` is the 1-based line of the task's
    title.
    """

    id: str
    title: str
    description: str
    type: TaskType
    parent: str | None
    dependencies: tuple[str, ...]
    files: tuple[str, ...]
    criteria: dict[str, str]
    notes: tuple[str, ...]
    status: TaskStatus
    line: int

    def to_wire(self) -> dict[str, Any]:
        """The Task Definition of CONTRACTS.md; ``parent`` only when the task has one."""
        wire: dict[str, Any] = {
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "type": str(self.type),
            "dependencies": list(self.dependencies),
            "files": list(self.files),
            "criteria": dict(self.criteria),
            "notes": list(self.notes),
            "status": str(self.status),
        }
        if self.parent is not None:
            wire["parent"] = self.parent
        return wire

    @property
    def is_leaf(self) -> bool:
        """Whether this task is executed itself (atomic) rather than through its steps."""
        return self.type is TaskType.ATOMIC


@dataclass(frozen=True)
class Problem:
    """Why a task list cannot be used, at a 1-based line of the file."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


class TaskListError(ConfigError):
    """A task list that cannot be used; ``problems`` lists every problem found, by line.

    It is a ``config`` error for the pipeline: the repository's task list must be fixed
    by a person before the execution can go on.
    """

    def __init__(self, problems: Sequence[Problem], *, source: str = "tasks_list.md") -> None:
        self.problems = sorted(problems, key=lambda problem: problem.line)
        self.source = source
        super().__init__(
            "\n".join(str(problem) for problem in self.problems),
            details={
                "source": source,
                "problems": [{"line": p.line, "message": p.message} for p in self.problems],
            },
        )
