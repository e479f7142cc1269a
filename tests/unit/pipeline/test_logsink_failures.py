"""The log sink when the store refuses a batch: the batch is sent again (nothing lost, in
order), dropped and counted only after ``SEND_ATTEMPTS`` refusals, and ``close`` never
raises past the engine (the stage's outcome is recorded all the same)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
from structlog.testing import capture_logs
from tests.integration.store.test_contract import CUSTOMER, PROJECT, URL, start

from pipeline.logsink import SEND_ATTEMPTS, LogSink
from pipeline.store.memory import MemoryStore
from runner.redact import Redactor


class FlakyStore(MemoryStore):
    """A memory store whose single statements (a log batch's) fail while ``refusals`` is
    above zero, each failure taking one off; ``attempts`` counts the statements tried."""

    def __init__(self) -> None:
        super().__init__()
        self.refusals = 0
        self.attempts = 0

    @contextlib.asynccontextmanager
    async def statement(self) -> AsyncIterator[Any]:
        self.attempts += 1
        if self.refusals > 0:
            self.refusals -= 1
            raise asyncpg.exceptions.QueryCanceledError("canceling statement due to timeout")
        async with super().statement() as tx:
            yield tx


async def _sink(store: FlakyStore, batch_lines: int = 3) -> LogSink:
    async with store.tx() as tx:
        await tx.projects.upsert(PROJECT, CUSTOMER, URL)
        _, execution_id = await start(tx, status="running")
    return LogSink(store, Redactor(), execution_id=execution_id, stage="IMPLEMENT",
                   task_id="1.1", flush_ms=10, batch_lines=batch_lines)


def _logged(store: MemoryStore) -> list[dict[str, Any]]:
    return [n["payload"] for n in store.tables.notifications if n["type"] == "execution-log"]


def _lines(store: MemoryStore) -> list[str]:
    return [line for p in _logged(store) for line in p["lines"]]


async def test_given_a_refused_flush_then_the_batch_is_sent_again_in_order() -> None:
    store = FlakyStore()
    sink = await _sink(store)
    sink.start()
    # Given the store refuses the first two sends
    store.refusals = 2
    write = sink.sink()
    for i in range(7):
        write(f"line {i}")
    async with asyncio.timeout(5):
        while store.attempts < 3 or sink.waiting():
            await asyncio.sleep(0.01)
    for i in range(7, 9):
        write(f"line {i}")

    # When the stage ends
    await sink.close()

    # Then every line reached the stream once, in order, none counted as dropped
    assert _lines(store) == [f"line {i}" for i in range(9)]
    assert not any("dropped" in p for p in _logged(store))


async def test_given_a_batch_refused_every_time_then_it_is_dropped_and_counted() -> None:
    store = FlakyStore()
    sink = await _sink(store, batch_lines=2)
    write = sink.sink()
    for i in range(3):
        write(f"line {i}")
    # Given the store refuses the first batch SEND_ATTEMPTS times
    store.refusals = SEND_ATTEMPTS
    with capture_logs() as logs:
        for _ in range(SEND_ATTEMPTS):
            with contextlib.suppress(asyncpg.PostgresError):
                await sink.flush()
        # When the store is back
        await sink.close()

    # Then the rest is sent and says how many lines were dropped
    assert _lines(store) == ["line 2"]
    assert _logged(store)[0]["dropped"] == 2
    assert [e["lines"] for e in logs if e["event"] == "logs.batch_dropped"] == [2]


async def test_given_the_store_down_for_good_then_close_returns_and_says_what_was_lost() -> None:
    store = FlakyStore()
    sink = await _sink(store)
    sink.start()
    write = sink.sink()
    for i in range(5):
        write(f"line {i}")
    # Given the store refuses every statement
    store.refusals = 1_000

    # When the stage ends, Then close neither raises nor waits for the store
    with capture_logs() as logs:
        async with asyncio.timeout(5):
            await sink.close()

    assert _logged(store) == []
    lost = [e for e in logs if e["event"] == "logs.lines_lost"]
    assert len(lost) == 1 and lost[0]["lines"] == 5
    assert lost[0]["log_level"] == "warning"
    assert sink.waiting() == 0


async def test_given_a_line_with_nul_then_it_is_sent() -> None:
    store = FlakyStore()
    sink = await _sink(store)
    sink.line("a\x00b")
    await sink.close()
    assert _lines(store) == ["a\ufffdb"]
