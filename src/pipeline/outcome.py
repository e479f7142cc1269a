"""What a stage hands back to the engine, and what a stage is given to work with."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipeline.executions import ExecutionRow
from pipeline.lifecycle import PauseReason, StageStatus, Status
from pipeline.outbox import StageCommand
from runner.errors import RunnerError

if TYPE_CHECKING:
    from pipeline.logsink import LogSink
    from pipeline.services import Services


@dataclass
class Injection:
    """An error-resolution task the engine injects (priority) in the finish transaction."""

    task_id: str
    task: dict[str, Any]
    reason: str
    origin_task_id: str


@dataclass
class Outcome:
    """The result of one stage run. The engine records it in one transaction.

    - ``next``: the command to run after this one (None ends the chain unless ``finalize``).
    - ``error`` with ``fatal``: the execution ends in ``error`` (error record + frame).
    - ``error`` without ``fatal``: recorded (error record + frame) but the chain goes on
      with ``next`` (e.g. a failed verification round that will be retried).
    - ``pause_reason``: pause at this boundary; ``next`` waits for resume.
    - ``finalize``: end the execution with this status (cleanup runs in FINALIZE).
    """

    status: StageStatus = StageStatus.SUCCEEDED
    result: dict[str, Any] = field(default_factory=dict)
    next: StageCommand | None = None
    error: RunnerError | None = None
    record_error: bool = False
    fatal: bool = False
    pause_reason: PauseReason | None = None
    finalize: Status | None = None
    inject: Injection | None = None
    execution: dict[str, Any] = field(default_factory=dict)
    frames: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    task_summary: dict[str, Any] | None = None
    """Merged into ``task_context.tasks[<taskId>]`` (the per-task table of the demo)."""
    summary_task_id: str | None = None
    """The task ``task_summary`` is about when it is not the command's (SELECT runs under
    ``#<n>`` and picks the task)."""
    complete_injection: str | None = None
    """An injected task (by task id) that this outcome finishes."""
    fail_injection: str | None = None
    """An injected error-resolution task that failed for good (never selected again)."""
    usage: dict[str, Any] | None = None
    """What the run consumed (``pipeline.usage``): stored in ``stage_runs.usage``."""


@dataclass
class StageContext:
    command: StageCommand
    command_id: int
    execution: ExecutionRow
    project: dict[str, Any]
    services: Services
    cancel: threading.Event
    log: LogSink
    claims: int
    correlation_id: str

    @property
    def execution_id(self) -> uuid.UUID:
        return self.execution.id

    @property
    def task_id(self) -> str:
        return self.command.task_id

    @property
    def attempt(self) -> int:
        return self.command.attempt

    def then(
        self,
        stage: str,
        *,
        task_id: str | None = None,
        attempt: int = 1,
        pass_no: int | None = None,
    ) -> StageCommand:
        """The command for ``stage`` of this execution (same task and pass unless given)."""
        same_task = task_id is None or task_id == self.command.task_id
        return StageCommand(
            execution_id=str(self.execution.id),
            stage=stage,
            task_id=self.command.task_id if task_id is None else task_id,
            pass_no=pass_no if pass_no is not None else (self.command.pass_no if same_task else 1),
            attempt=attempt,
        )
