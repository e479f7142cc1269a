"""Batches a stage's output lines into ``execution-log`` notifications.

Tools and containers produce lines on worker threads at any rate; the sink buffers them
and an asyncio task flushes a batch every ``log_flush_ms`` or as soon as
``log_batch_lines`` are waiting, each batch one small transaction. A chatty tool therefore
costs a few notifications a second, and a line still reaches the browser within a
fraction of a second. Every line passes through the redactor first.

What a stage run's tools and commands print (``sink``) is bounded per stage run
(``DEVTEAM_LIMITS_LOG_*``): each line is cut to ``line_bytes``, and once the run's lines or
bytes are spent, later lines are dropped and counted: the stream shows one marker where
the output stops and the number dropped when the stage ends. The service's own lines
(``line``) are few and always sent.

Logs never fail the stage. A batch the store refuses (Postgres away, a statement timeout)
goes back to the front of the buffer and is sent again on the next flush, in order, with
the lines that came meanwhile; after ``SEND_ATTEMPTS`` refusals it is dropped and its
lines counted (``dropped``: in the next batch that gets through, and a warning each time).
``close`` tries once more, then drops what is left with a warning: it never raises, so
the stage's outcome is recorded all the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

import structlog

from pipeline import stream
from pipeline.db import Store
from runner.limits import LogBudget, LogLimits, cut_line, limit_reached, lines_dropped, utf8_len
from runner.redact import Redactor

log = structlog.get_logger("devteam.logs")

MAX_BUFFERED_LINES = 20_000
SEND_ATTEMPTS = 3
"""Times a batch is offered to the store before its lines are dropped (and counted)."""


class LogSink:
    def __init__(
        self,
        store: Store,
        redactor: Redactor,
        *,
        execution_id: uuid.UUID,
        stage: str,
        task_id: str,
        flush_ms: int,
        batch_lines: int,
        limits: LogLimits | None = None,
    ) -> None:
        self.store = store
        self.redactor = redactor
        self.execution_id = execution_id
        self.stage = stage
        self.task_id = task_id
        self.flush_seconds = flush_ms / 1000
        self.batch_lines = batch_lines
        self._lines: deque[tuple[str, str]] = deque()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()
        self.limits = limits or LogLimits()
        self.budget = LogBudget(self.limits)
        self.dropped = 0
        self._failures = 0

    # -- producers (any thread) ----------------------------------------------------------
    def line(self, text: str, level: str = "info") -> None:
        """One of the service's own lines (cut to ``line_bytes``, never counted)."""
        self._add(text, level, counted=False)

    def sink(self, level: str = "info") -> Callable[[str], None]:
        """A one-argument callable for runner adapters (``on_line``): the output of tools
        and commands, counted against the stage run's limits."""
        return lambda text: self._add(text, level, counted=True)

    def _add(self, text: str, level: str, *, counted: bool) -> None:
        text = cut_line(text.rstrip("\n"), self.limits.line_bytes)
        with self._lock:
            if counted and not self.budget.admit(utf8_len(text)):
                if self.budget.dropped > 1:
                    return
                assert self.budget.reason is not None
                level, text = "warning", limit_reached(self.budget.reason)
            if len(self._lines) >= MAX_BUFFERED_LINES:
                self.dropped += 1
                return
            self._lines.append((level, text))
            full = len(self._lines) >= self.batch_lines
        if full and self._loop is not None:
            self._loop.call_soon_threadsafe(self._ready.set)

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        """Stop the flusher and send whatever is still buffered, with the number of lines
        the limits dropped. Never raises: what cannot be sent after a second try is
        dropped, with a warning saying how many lines."""
        if self.budget.dropped and self.budget.reason is not None:
            self.line(lines_dropped(self.budget.dropped, self.budget.reason), "warning")
        if self._task is not None:
            # Not cancelled: a batch taken out of the buffer mid-flush would be lost with
            # its transaction. The flusher finishes the batch it is sending and stops.
            self._closing.set()
            self._ready.set()
            await self._task
        for last in (False, True):
            try:
                await self.flush()
                return
            except Exception as exc:  # noqa: BLE001 - logs must never break the stage
                log.warning("logs.flush_failed", error=type(exc).__name__,
                            waiting=self.waiting())
                if not last:
                    await asyncio.sleep(self.flush_seconds)
        with self._lock:
            lost = len(self._lines) + self.dropped
            self._lines.clear()
            self.dropped = 0
        log.warning("logs.lines_lost", execution_id=str(self.execution_id), stage=self.stage,
                    lines=lost)

    def waiting(self) -> int:
        """Lines buffered, not yet sent."""
        with self._lock:
            return len(self._lines)

    async def _run(self) -> None:
        while not self._closing.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), timeout=self.flush_seconds)
            self._ready.clear()
            if self._closing.is_set():
                return  # close() sends the rest
            try:
                await self.flush()
            except Exception as exc:  # noqa: BLE001 - logs must never break the stage
                log.warning("logs.flush_failed", error=type(exc).__name__,
                            waiting=self.waiting())
                await asyncio.sleep(self.flush_seconds)

    async def flush(self) -> None:
        """Send what is buffered, a batch per transaction. When the store refuses a batch
        it goes back to the front of the buffer (or, after ``SEND_ATTEMPTS``, is dropped
        and counted) and the error is raised."""
        while True:
            with self._lock:
                if not self._lines:
                    return
                batch = [
                    self._lines.popleft() for _ in range(min(self.batch_lines, len(self._lines)))
                ]
                dropped, self.dropped = self.dropped, 0
            try:
                await self._send(batch, dropped)
            except Exception:
                self._failed(batch, dropped)
                raise
            self._failures = 0

    def _failed(self, batch: list[tuple[str, str]], dropped: int) -> None:
        """A batch the store refused: back to the front of the buffer, or dropped and
        counted once it was refused ``SEND_ATTEMPTS`` times."""
        self._failures += 1
        with self._lock:
            if self._failures < SEND_ATTEMPTS:
                self._lines.extendleft(reversed(batch))
                self.dropped += dropped
                return
            self._failures = 0
            self.dropped += dropped + len(batch)
        log.warning("logs.batch_dropped", execution_id=str(self.execution_id),
                    stage=self.stage, lines=len(batch), attempts=SEND_ATTEMPTS)

    async def _send(self, batch: list[tuple[str, str]], dropped: int) -> None:
        lines = [self.redactor.redact(text) for _, text in batch]
        level = (
            "error"
            if any(lv == "error" for lv, _ in batch)
            else ("warning" if any(lv == "warning" for lv, _ in batch) else "info")
        )
        payload: dict[str, Any] = {
            "level": level,
            "stage": self.stage,
            "taskId": self.task_id,
            "lines": lines,
        }
        if dropped:
            payload["dropped"] = dropped
        await stream.append_alone(self.store, self.execution_id,
                                  [("execution-log", payload)])
