"""Runs one stage command: claim, run with a heartbeat, record — the contract every actor
shares.

1. **Claim** (one transaction, under the execution's row lock): a stage run is keyed by
   ``(execution, task, stage, pass, attempt)``. A new key is inserted; an existing one is taken
   over only if its lease expired (the worker died) or it is waiting for a retry. A
   finished or live one means this delivery is a duplicate: it does nothing. A paused
   execution parks the command for resume; a stopping one is finalised instead.
2. **Run** the stage's handler while a heartbeat renews the lease every second and watches
   for ``stopping``: then the handler's cancel event is set (tools kill their process) and
   the handler task is cancelled after a short grace.
3. **Record** (one transaction): the stage run's result (only if we still own the lease),
   the execution row, ``Event.task_context``, any error record or injected task, the next
   command (or the pause that holds it back), and the notifications — last, see stream.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

from pipeline import executions, metrics, outbox, stream
from pipeline.cancellation import CANCEL_GRACE_SECONDS, Cancellation
from pipeline.decide import (
    OnClaim,
    cancelled_outcome,
    claims_exhausted,
    crash_error,
    exhausted_outcome,
    failure_outcome,
    on_claim,
    park,
    stopped,
)
from pipeline.heartbeat import Heartbeat
from pipeline.lifecycle import PauseReason, Stage
from pipeline.logsink import LogSink
from pipeline.outbox import StageCommand
from pipeline.outcome import Outcome, StageContext
from pipeline.record import record_outcome
from pipeline.services import Services
from pipeline.store.port import Tx
from pipeline.store.stage_runs import RunKey
from runner.errors import RunnerError
from runner.limits import LogLimits
from runner.settings import Settings

log = structlog.get_logger("devteam.engine")

Handler = Callable[[StageContext], Coroutine[Any, Any, Outcome]]

class Engine:
    def __init__(self, services: Services, handlers: dict[Stage, Handler]) -> None:
        self.services = services
        self.store = services.store
        self.handlers = handlers
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.lease = services.settings.pipeline.stage_lease_seconds

    async def run(self, command_id: int) -> str:
        """Run the command; returns what happened (for logs and tests)."""
        claimed = await self._claim(command_id)
        if isinstance(claimed, str):
            return claimed
        ctx, run_id = claimed
        bound = log.bind(
            correlation_id=ctx.correlation_id,
            customer_id=ctx.execution.customer_id,
            project_id=ctx.execution.project_id,
            execution_id=str(ctx.execution.id),
            task_id=ctx.task_id,
            stage=ctx.command.stage,
            attempt=ctx.attempt,
        )
        bound.info("stage.start", claims=ctx.claims)
        started = time.monotonic()
        ctx.log.start()
        outcome = await self._execute(ctx, run_id)
        ended = time.monotonic()
        await ctx.log.close()
        duration_ms = int((time.monotonic() - started) * 1000)
        recorded = await record_outcome(
            self.services,
            ctx,
            run_id=run_id,
            owner=self.owner,
            outcome=outcome,
            duration_ms=duration_ms,
        )
        _observe(ctx, outcome, duration_ms / 1000, recorded=recorded)
        # commit_ms: handler returned → finish transaction committed (bench/pipeline.py).
        commit_ms = round((time.monotonic() - ended) * 1000, 2)
        bound.info(
            "stage.end",
            status=outcome.status,
            recorded=recorded,
            duration_ms=duration_ms,
            commit_ms=commit_ms,
        )
        return outcome.status if recorded else "lost-claim"

    # -- claim ------------------------------------------------------------------------
    async def _claim(self, command_id: int) -> tuple[StageContext, int] | str:
        async with self.store.tx() as tx:
            loaded = await outbox.load(tx, command_id)
            if loaded is None:
                return "unknown-command"
            command, _customer, correlation_id = loaded
            execution = await executions.get(tx, uuid.UUID(command.execution_id), lock=True)
            if execution is None:
                await outbox.complete(tx, command_id)
                return "unknown-execution"
            verdict = on_claim(command.stage, execution.state)
            if verdict is OnClaim.ENDED:
                await outbox.complete(tx, command_id)
                return verdict.value
            if verdict is OnClaim.PARK:
                await self._park(tx, execution, command, command_id)
                return verdict.value
            if verdict is OnClaim.STOPPING:
                await outbox.complete(tx, command_id)
                await outbox.enqueue(
                    tx,
                    stopped(command.execution_id),
                    customer_id=execution.customer_id,
                    correlation_id=execution.correlation_id,
                )
                return verdict.value
            key = RunKey(execution_id=execution.id, task_id=command.task_id,
                         stage=command.stage, pass_no=command.pass_no, attempt=command.attempt)
            claim = await tx.stage_runs.claim(key, command_id=command_id, owner=self.owner,
                                              lease_seconds=self.lease)
            if claim is None:
                return await self._duplicate(tx, key, command_id)
            run_id, claims = claim.id, claim.claims
            project = await _project(tx, execution.project_id)
            fields = executions.claim_fields(command.stage, command.task_id,
                                             execution.current_task_id)
            await executions.set_fields(tx, execution.id, **fields)
            current = await executions.get(tx, execution.id)
            assert current is not None
            await stream.append(
                tx, execution.id, [("execution-update", current.update_payload())]
            )
        sink = LogSink(
            self.store,
            self.services.redactor,
            execution_id=execution.id,
            stage=command.stage,
            task_id=command.task_id,
            flush_ms=self.services.settings.pipeline.log_flush_ms,
            batch_lines=self.services.settings.pipeline.log_batch_lines,
            limits=log_limits(self.services.settings),
        )
        ctx = StageContext(
            command=command,
            command_id=command_id,
            execution=current,
            project=project,
            services=self.services,
            cancel=threading.Event(),
            log=sink,
            claims=claims,
            correlation_id=correlation_id,
        )
        return ctx, run_id

    async def _park(
        self,
        tx: Tx,
        execution: executions.ExecutionRow,
        command: StageCommand,
        command_id: int,
    ) -> None:
        """A command that arrives while paused waits in the execution row for resume."""
        fields = park(execution.pending_command, command)
        if fields:
            await executions.set_fields(tx, execution.id, **fields)
        await outbox.complete(tx, command_id)

    async def _duplicate(self, tx: Tx, key: RunKey, command_id: int) -> str:
        """Another delivery of a run that is finished (its command is done) or held."""
        if await tx.stage_runs.status(key) != "running":
            await outbox.complete(tx, command_id)
        return "duplicate"

    # -- run ----------------------------------------------------------------------------
    async def _execute(self, ctx: StageContext, run_id: int) -> Outcome:
        handler = self.handlers[Stage(ctx.command.stage)]
        if claims_exhausted(ctx.claims, self.services.settings.pipeline):
            return exhausted_outcome(ctx.command, ctx.claims)
        work = asyncio.create_task(handler(ctx))
        beat = asyncio.create_task(self._heartbeat(ctx, run_id).run(work))
        try:
            return await work
        except asyncio.CancelledError:
            if ctx.cancel.is_set():
                return cancelled_outcome()
            raise
        except RunnerError as exc:
            return self._failure(ctx, exc)
        except RecursionError as exc:
            log.warning("stage.recursion", trace=self.services.redactor.redact(
                traceback.format_exc(limit=-5)))
            return self._failure(ctx, crash_error(ctx.command.stage, exc,
                                                  self.services.redactor.redact))
        except Exception as exc:
            log.exception(
                "stage.crash",
                error=type(exc).__name__,
                trace=self.services.redactor.redact(traceback.format_exc()),
            )
            return self._failure(ctx, crash_error(ctx.command.stage, exc,
                                                  self.services.redactor.redact))
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat

    def _failure(self, ctx: StageContext, exc: RunnerError) -> Outcome:
        """Uniform policy for errors a handler did not turn into an outcome itself."""
        return failure_outcome(ctx.command, exc, ctx.claims, self.services.settings.pipeline)

    def _heartbeat(self, ctx: StageContext, run_id: int) -> Heartbeat:
        """Renews the lease every second; on stop (or a lost lease) cancels the work."""

        async def renew() -> str | None:
            async with self.store.tx() as tx:
                return await tx.stage_runs.renew(run_id, self.owner, self.lease)

        return Heartbeat(
            renew,
            Cancellation(ctx.cancel, grace=CANCEL_GRACE_SECONDS),
            stage=ctx.command.stage,
            on_cancel=lambda: ctx.log.line(
                "stop requested: cancelling the running step", "warning"),
        )


def _observe(ctx: StageContext, outcome: Outcome, seconds: float, *, recorded: bool) -> None:
    """Stage metrics: a run, its duration and outcome, a retry's classification; the model
    usage of an IMPLEMENT round. Never fails the stage."""
    try:
        error = outcome.error
        metrics.stage_finished(ctx.command.stage, outcome.status if recorded else "lost-claim",
                               seconds, str(error.classification) if error is not None else None)
        if recorded and ctx.command.stage == Stage.IMPLEMENT:
            metrics.model_usage(ctx.execution.customer_id, outcome.usage)
    except Exception as exc:  # noqa: BLE001 - metrics must never break a stage
        log.warning("metrics.failed", error=type(exc).__name__)


def log_limits(settings: Settings) -> LogLimits:
    """What one stage run may add to the stream (``DEVTEAM_LIMITS_LOG_*``)."""
    box = settings.limits
    return LogLimits(lines=box.log_lines_per_stage, bytes=box.log_bytes_per_stage,
                     line_bytes=box.log_line_bytes)


async def _project(tx: Tx, project_id: str) -> dict[str, Any]:
    row = await executions.project(tx, project_id)
    assert row is not None  # executions reference their project
    return row


__all__ = ["Engine", "Handler", "PauseReason"]
