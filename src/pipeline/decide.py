"""The pipeline's decisions, pure: what runs after a stage, and whether a failure is retried.

No I/O, no database, no clock: ``record.py`` and ``engine.py`` ask, then store and enqueue
what the answer says. Every answer is a small frozen value, so the rules are tested as
tables (tests/unit/pipeline).

- ``decide(ran, outcome, execution)``: after a stage's outcome, the next step (``Next``):
  run a command, retry this one after a delay, finalise with a status, pause holding the
  next command, hold it for a person's resume, close an execution whose FINALIZE failed
  for good, or nothing.
- ``retry_policy(classification, claims, policy)``: what a failure the handler did not
  turn into an outcome itself means (cancelled, pause for review, retry after a backoff,
  fatal); ``failure_outcome`` makes the ``Outcome`` of that verdict, ``crash_error``
  classifies what a handler raised that is not ours to raise.
- ``on_claim(stage, status)``: what a worker does with a delivered command (run it, drop
  it, park it for resume, or finalise a stopping execution instead).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Any, Protocol

import msgspec

from pipeline.lifecycle import TERMINAL, PauseReason, Stage, StageStatus, Status
from pipeline.outbox import StageCommand
from pipeline.outcome import Outcome
from runner.errors import Classification, ConfigError, InfrastructureError, RunnerError

RETRY_DEFAULT_SECONDS = 1.0
"""The wait before a retry whose outcome names none (``result.retryIn``)."""

STAGE_SETS_STATUS = frozenset({Status.INITIALIZING, Status.RUNNING})
"""The execution statuses a stage's own status change may overrule (INIT sets running);
a person's pause or stop is never overruled by a stage (FINALIZE excepted)."""


class ExecutionView(msgspec.Struct, frozen=True, kw_only=True):
    """What ``decide`` needs of the execution row, as read under the finish transaction's
    lock (before the stage's own changes)."""

    id: str
    status: Status
    stop_point: str | None = None


# -- what comes next ---------------------------------------------------------------------
class Run(msgspec.Struct, frozen=True, kw_only=True):
    """Enqueue ``command`` now."""

    command: StageCommand

    def fields(self) -> dict[str, Any]:
        return {}

    def enqueue(self) -> tuple[StageCommand, float] | None:
        return self.command, 0.0


class Retry(msgspec.Struct, frozen=True, kw_only=True):
    """Enqueue the same command again after ``delay`` seconds (the run is ``retrying``)."""

    command: StageCommand
    delay: float

    def fields(self) -> dict[str, Any]:
        return {}

    def enqueue(self) -> tuple[StageCommand, float] | None:
        return self.command, self.delay


class Finalize(msgspec.Struct, frozen=True, kw_only=True):
    """Enqueue FINALIZE ending the execution in ``status``; a fatal error marks the
    execution ``error`` at once (FINALIZE cleans up after)."""

    execution_id: str
    status: Status
    fatal: bool = False

    @property
    def command(self) -> StageCommand:
        return StageCommand(
            execution_id=self.execution_id, stage=Stage.FINALIZE, outcome=self.status.value
        )

    def fields(self) -> dict[str, Any]:
        return {"status": Status.ERROR.value} if self.fatal else {}

    def enqueue(self) -> tuple[StageCommand, float] | None:
        return self.command, 0.0


class Pause(msgspec.Struct, frozen=True, kw_only=True):
    """Pause the execution for ``reason``; ``command`` waits in the row for resume (a stop
    point that was reached is used up)."""

    command: StageCommand
    reason: PauseReason

    def fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "status": Status.PAUSED.value,
            "pause_reason": self.reason.value,
            "pending_command": msgspec.to_builtins(self.command),
        }
        if self.reason is PauseReason.STOP_POINT:
            fields["stop_point"] = None
        return fields

    def enqueue(self) -> tuple[StageCommand, float] | None:
        return None


class Hold(msgspec.Struct, frozen=True, kw_only=True):
    """A person paused meanwhile: ``command`` waits in the row for their resume."""

    command: StageCommand

    def fields(self) -> dict[str, Any]:
        return {"pending_command": msgspec.to_builtins(self.command)}

    def enqueue(self) -> tuple[StageCommand, float] | None:
        return None


class Close(msgspec.Struct, frozen=True, kw_only=True):
    """FINALIZE failed for good (fatal, cancelled, out of retries): the execution ends
    anyway, in ``status``; the reaper removes the containers and working copy it left.
    The caller stamps ``finished_at`` and sends the ``completion`` frame FINALIZE would
    have sent."""

    status: Status

    def fields(self) -> dict[str, Any]:
        return {"status": self.status.value, "pending_command": None,
                "current_stage": Stage.FINALIZE.value}

    def enqueue(self) -> tuple[StageCommand, float] | None:
        return None


class End(msgspec.Struct, frozen=True, kw_only=True):
    """Nothing follows (FINALIZE ran, or a stage with no next step)."""

    def fields(self) -> dict[str, Any]:
        return {}

    def enqueue(self) -> tuple[StageCommand, float] | None:
        return None


Next = Run | Retry | Finalize | Pause | Hold | Close | End


def stage_sets_status(stage: Stage | str, current: Status) -> bool:
    """Whether a stage's own ``execution.status`` change applies: only while the execution
    is initialising or running, and always in FINALIZE (it ends the execution)."""
    return Stage(stage) is Stage.FINALIZE or current in STAGE_SETS_STATUS


def status_after(ran: StageCommand, outcome: Outcome, execution: ExecutionView) -> Status:
    """The execution's status once the stage's own changes apply (before routing)."""
    wanted = outcome.execution.get("status")
    if wanted is not None and stage_sets_status(ran.stage, execution.status):
        return Status(wanted)
    return execution.status


def reaches(stop_point: str, nxt: StageCommand) -> bool:
    """A stop point names a task (pause before its PREP) or a stage (pause before its
    first attempt); stage names match in any case."""
    if nxt.stage == Stage.PREP and nxt.task_id == stop_point:
        return True
    return nxt.stage == stop_point.upper() and nxt.attempt == 1


def closing_status(current: Status) -> Status:
    """The status an execution ends in when its FINALIZE failed for good: stop wins, an
    ended execution keeps its status, anything else is an error."""
    if current is Status.STOPPING:
        return Status.STOPPED
    if current in TERMINAL:
        return current
    return Status.ERROR


def decide(ran: StageCommand, outcome: Outcome, execution: ExecutionView) -> Next:
    """What follows ``outcome`` of the stage run ``ran``; in order of precedence: a retry;
    nothing after FINALIZE (unless it failed for good: the execution is closed); stop (or
    a cancelled run) finalises ``stopped``; a fatal error finalises ``error``; a stage's
    ``finalize``; no next step; a pause the stage asks for; a person's pause holds the
    next command; a stop point the next command reaches pauses; else the next command
    runs."""
    stage = Stage(ran.stage)
    state = status_after(ran, outcome, execution)
    if outcome.status == StageStatus.RETRYING:
        delay = float(outcome.result.get("retryIn", RETRY_DEFAULT_SECONDS))
        return Retry(command=ran, delay=delay)
    if stage is Stage.FINALIZE:
        ended = outcome.status in (StageStatus.FAILED, StageStatus.CANCELLED)
        if ended and "status" not in outcome.execution:
            return Close(status=closing_status(execution.status))
        return End()
    if state is Status.STOPPING or outcome.status == StageStatus.CANCELLED:
        return Finalize(execution_id=execution.id, status=Status.STOPPED)
    if outcome.fatal:
        return Finalize(execution_id=execution.id, status=Status.ERROR, fatal=True)
    if outcome.finalize is not None:
        return Finalize(execution_id=execution.id, status=Status(outcome.finalize))
    nxt = outcome.next
    if nxt is None:
        return End()
    if outcome.pause_reason is not None:
        return Pause(command=nxt, reason=PauseReason(outcome.pause_reason))
    if state is Status.PAUSED:
        return Hold(command=nxt)
    if execution.stop_point and reaches(execution.stop_point, nxt):
        return Pause(command=nxt, reason=PauseReason.STOP_POINT)
    return Run(command=nxt)


# -- a command's delivery --------------------------------------------------------------------
class OnClaim(StrEnum):
    """What a worker does with a delivered command, by the execution's status (the values
    are what ``Engine.run`` reports)."""

    RUN = "run"
    """Claim the stage run and run it."""
    ENDED = "execution-ended"
    """The execution ended: the command is done with, nothing runs."""
    PARK = "parked"
    """Paused: the command waits in the execution row for resume."""
    STOPPING = "stopping"
    """Stop was asked: the command is done with and FINALIZE (``stopped``) runs instead."""


def on_claim(stage: Stage | str, state: Status) -> OnClaim:
    """FINALIZE always runs (it ends the execution whatever its status); any other stage
    runs only while the execution is initialising or running."""
    if Stage(stage) is Stage.FINALIZE:
        return OnClaim.RUN
    if state in TERMINAL:
        return OnClaim.ENDED
    if state is Status.PAUSED:
        return OnClaim.PARK
    if state is Status.STOPPING:
        return OnClaim.STOPPING
    return OnClaim.RUN


def park(pending: dict[str, Any] | None, command: StageCommand) -> dict[str, Any]:
    """The row fields that park ``command`` while paused: the first parked command is
    the one resume runs (a later delivery does not replace it)."""
    return {} if pending is not None else {"pending_command": msgspec.to_builtins(command)}


def stopped(execution_id: str) -> StageCommand:
    """The FINALIZE command that ends a stopped execution."""
    return Finalize(execution_id=execution_id, status=Status.STOPPED).command


# -- failures ------------------------------------------------------------------------------
class RetrySettings(Protocol):
    """The retry knobs (``DEVTEAM_PIPELINE_STAGE_RETRIES``, ``…_STAGE_RETRY_MAX_SECONDS``)."""

    @property
    def stage_retries(self) -> int: ...

    @property
    def stage_retry_max_seconds(self) -> float: ...


class Verdict(StrEnum):
    CANCEL = "cancel"
    """A person stopped the execution: the run is ``cancelled``."""
    REVIEW = "review"
    """The environment's fault: pause for a person; resume runs the stage again."""
    RETRY = "retry"
    """Run the same stage again after ``delay``."""
    FAIL = "fail"
    """Fatal: the execution ends in ``error``."""


class RetryDecision(msgspec.Struct, frozen=True, kw_only=True):
    verdict: Verdict
    delay: float = 0.0


def backoff(claims: int, policy: RetrySettings) -> float:
    """The wait before the retry after the ``claims``-th start: 2, 4, 8… s, capped."""
    return float(min(2.0**claims, policy.stage_retry_max_seconds))


def retry_policy(
    classification: Classification, claims: int, policy: RetrySettings
) -> RetryDecision:
    """What an error a handler raised means, given how often its run was started
    (``claims``, 1 on the first start)."""
    if classification is Classification.CANCELLED:
        return RetryDecision(verdict=Verdict.CANCEL)
    if classification is Classification.ENVIRONMENT:
        # Not the code's fault and not worth a retry: a person fixes the environment,
        # then resuming runs this stage again.
        return RetryDecision(verdict=Verdict.REVIEW)
    if classification.retryable and claims <= policy.stage_retries:
        return RetryDecision(verdict=Verdict.RETRY, delay=backoff(claims, policy))
    return RetryDecision(verdict=Verdict.FAIL)


CRASH_DETAIL_CHARS = 2000
"""How much of a crashed handler's exception text (redacted) its error record keeps."""


def crash_error(stage: str, exc: BaseException, redact: Callable[[str], str]) -> RunnerError:
    """The classified error of a handler that raised something not ours to raise: input
    nested past the parser's limit (a report, a manifest, a tree the repository shaped)
    is ``config`` (the same on every retry); anything else is an ``infrastructure``
    failure of ours, named by its type, its text redacted and cut into the details."""
    if isinstance(exc, RecursionError):
        return ConfigError(
            f"{stage}: something the repository holds is nested too deeply "
            "to read (a report, a manifest or a directory tree)")
    return InfrastructureError(
        f"internal error in {stage}: {type(exc).__name__}",
        details={"exception": redact(str(exc))[:CRASH_DETAIL_CHARS]},
    )


def claims_exhausted(claims: int, policy: RetrySettings) -> bool:
    """A run started more often than its retries allow (workers died mid-run, or retries
    were spent): it is not run again."""
    return claims > policy.stage_retries + 1


def exhausted_outcome(ran: StageCommand, claims: int) -> Outcome:
    """The fatal outcome of a run whose claims are exhausted."""
    return Outcome(
        status=StageStatus.FAILED,
        error=InfrastructureError(
            f"stage {ran.stage} was started {claims - 1} times without finishing "
            "(worker crashes or repeated infrastructure failures)"
        ),
        fatal=True,
    )


def cancelled_outcome() -> Outcome:
    return Outcome(status=StageStatus.CANCELLED, result={"cancelled": True})


def failure_outcome(
    ran: StageCommand, error: RunnerError, claims: int, policy: RetrySettings
) -> Outcome:
    """The outcome of ``error`` raised by the handler of ``ran`` (``retry_policy``'s
    verdict as the engine records it)."""
    decision = retry_policy(error.classification, claims, policy)
    if decision.verdict is Verdict.CANCEL:
        return cancelled_outcome()
    if decision.verdict is Verdict.REVIEW:
        again = StageCommand(
            execution_id=ran.execution_id,
            stage=ran.stage,
            task_id=ran.task_id,
            pass_no=ran.pass_no,
            attempt=ran.attempt + 1,
        )
        return Outcome(
            status=StageStatus.FAILED, error=error, record_error=True,
            pause_reason=PauseReason.HUMAN_REVIEW, next=again,
        )
    if decision.verdict is Verdict.RETRY:
        return Outcome(status=StageStatus.RETRYING, error=error,
                       result={"retryIn": decision.delay})
    return Outcome(status=StageStatus.FAILED, error=error, fatal=True)


__all__ = [
    "Close",
    "End",
    "ExecutionView",
    "Finalize",
    "Hold",
    "Next",
    "OnClaim",
    "Pause",
    "Retry",
    "RetryDecision",
    "Run",
    "StageStatus",
    "Verdict",
    "decide",
    "failure_outcome",
    "on_claim",
    "park",
    "reaches",
    "retry_policy",
    "stage_sets_status",
]
