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
        the limits dropped."""
        if self.budget.dropped and self.budget.reason is not None:
            self.line(lines_dropped(self.budget.dropped, self.budget.reason), "warning")
        if self._task is not None:
            # Not cancelled: a batch taken out of the buffer mid-flush would be lost with
            # its transaction. The flusher finishes the batch it is sending and stops.
            self._closing.set()
            self._ready.set()
            await self._task
        await self.flush()

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
                log.warning("logs.flush_failed", error=type(exc).__name__)
                await asyncio.sleep(self.flush_seconds)

    async def flush(self) -> None:
        while True:
            with self._lock:
                if not self._lines:
                    return
                batch = [
                    self._lines.popleft() for _ in range(min(self.batch_lines, len(self._lines)))
                ]
                dropped, self.dropped = self.dropped, 0
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
