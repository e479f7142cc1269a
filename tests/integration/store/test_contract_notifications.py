"""The store port's notifications as the live stream reads them, against asyncpg and the
in-memory store alike: the NOTIFY of an append carries the rows it wrote, exactly as the
table reads them back (or only its last position when they do not fit), and ``after``
reads the rows in position order."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import msgspec
import pytest
from tests.integration.store.test_contract import CUSTOMER, PROJECT, URL, backend, port, start

from pipeline import stream
from pipeline.store.memory import MemoryStore
from pipeline.store.notifications import NOTIFY_MAX, STREAM_CHANNEL, StreamRow, notified
from pipeline.store.port import StorePort

__all__ = ["backend", "port"]  # the fixtures, shared with the main contract suite

UPDATE = {"status": "running", "stage": "IMPLEMENT", "taskId": "1.2", "progress": 40,
          "branch": "devteam/1-2", "completedTasks": 1, "totalTasks": 3, "pauseReason": None}
LOG = {"level": "warning", "stage": "VERIFY", "taskId": "1.2",
       "lines": ['quote " backslash \\ newline \n tab \t', "é ü 中文 \u2028 \U0001f600"]}


class Notes:
    """The stream channel's NOTIFY payloads: Postgres LISTEN, or the memory store's log."""

    def __init__(self, port: StorePort) -> None:
        self.port = port
        self.got: list[str] = []
        self.conn: asyncpg.Connection | None = None

    async def start(self) -> None:
        if isinstance(self.port, MemoryStore):
            return
        from pipeline.db import asyncpg_dsn
        from runner.settings import get_settings

        self.conn = await asyncpg.connect(asyncpg_dsn(get_settings().database.url))
        await self.conn.add_listener(STREAM_CHANNEL, lambda *a: self.got.append(a[-1]))

    async def all(self, n: int) -> list[str]:
        """The first ``n`` payloads (waiting for Postgres to deliver them)."""
        if isinstance(self.port, MemoryStore):
            return [p for c, p in self.port.tables.notified if c == STREAM_CHANNEL][:n]
        async with asyncio.timeout(10):
            while len(self.got) < n:
                await asyncio.sleep(0.01)
        return self.got[:n]


@pytest.fixture
async def notes(port: StorePort) -> AsyncIterator[Notes]:
    listening = Notes(port)
    await listening.start()
    yield listening
    if listening.conn is not None:
        await listening.conn.close()


async def _execution(port: StorePort, project: str = PROJECT) -> uuid.UUID:
    async with port.tx() as tx:
        await tx.projects.upsert(project, CUSTOMER, URL)
        _, execution_id = await start(tx, project)
    return execution_id


def _view(row: StreamRow) -> tuple[object, ...]:
    """A row with its payload decoded (each store writes JSON text its own way)."""
    return (row.pos, row.execution_id, row.seq, row.customer_id, row.project_id, row.type,
            msgspec.json.decode(row.payload), row.level, row.task_id, row.status, row.stage,
            row.completed, row.total, row.created_at)


async def test_an_append_notifies_the_rows_it_wrote_as_the_table_reads_them(
        port: StorePort, notes: Notes) -> None:
    one = await _execution(port)
    other = await _execution(port, "acme/api")
    now = datetime.now(UTC)
    async with port.tx() as tx:
        head = await tx.notifications.head()
        await tx.notifications.append(one, [("execution-update", UPDATE), ("execution-log", LOG)],
                                      created_at=now)
    async with port.tx() as tx:
        await tx.notifications.append(other, [("execution-log", LOG)], created_at=now)
    first, second = await notes.all(2)
    last, rows = notified(first)
    assert last == head + 2 and [r.pos for r in rows] == [head + 1, head + 2]
    last2, rows2 = notified(second)
    assert last2 == head + 3 and [r.project_id for r in rows2] == ["acme/api"]
    async with port.reads() as tx:
        table = await tx.notifications.after(head, 10)
        assert await tx.notifications.head() == head + 3
    assert [_view(r) for r in [*rows, *rows2]] == [_view(r) for r in table]
    update = table[0]
    assert (update.execution_id, update.seq, update.type) == (str(one), 1, "execution-update")
    assert (update.level, update.task_id, update.status, update.stage, update.completed,
            update.total) == (None, "1.2", "running", "IMPLEMENT", "1", "3")
    assert (table[1].level, table[1].status) == ("warning", None)
    assert update.created_at == now and rows[0].created_at == now
    if not isinstance(port, MemoryStore):  # Postgres: the very text the table holds
        assert [bytes(r.payload) for r in rows] == [bytes(r.payload) for r in table[:2]]


async def test_rows_too_long_for_one_notify_are_announced_by_position_and_read_from_the_table(
        port: StorePort, notes: Notes) -> None:
    execution_id = await _execution(port)
    big = {**LOG, "lines": ["x" * 1000] * (NOTIFY_MAX // 1000 + 1)}
    async with port.tx() as tx:
        head = await tx.notifications.head()
        await tx.notifications.append(execution_id, [("execution-log", big)],
                                      created_at=datetime.now(UTC))
    (note,) = await notes.all(1)
    assert note == str(head + 1)
    assert notified(note) == (head + 1, [])
    async with port.reads() as tx:
        (row,) = await tx.notifications.after(head, 10)
    assert msgspec.json.decode(row.payload)["lines"] == big["lines"]


async def test_after_reads_in_position_order_at_most_limit(port: StorePort) -> None:
    execution_id = await _execution(port)
    async with port.tx() as tx:
        head = await tx.notifications.head()
        for i in range(5):
            await tx.notifications.append(execution_id, [("execution-log", {**LOG, "lines": [
                str(i)]})], created_at=datetime.now(UTC))
    async with port.reads() as tx:
        assert [r.pos for r in await tx.notifications.after(head, 3)] == [
            head + 1, head + 2, head + 3]
        assert [r.seq for r in await tx.notifications.after(head + 3, 10)] == [4, 5]
        assert await tx.notifications.after(head + 5, 10) == []


async def test_append_alone_writes_logs_in_one_statement_and_updates_in_a_transaction(
        port: StorePort, notes: Notes) -> None:
    execution_id = await _execution(port)
    async with port.reads() as tx:
        head = await tx.notifications.head()
    logged = await stream.append_alone(port, execution_id, [("execution-log", LOG)])
    updated = await stream.append_alone(port, execution_id, [("execution-update", UPDATE)])
    repeated = await stream.append_alone(port, execution_id, [("execution-update", UPDATE)])
    assert [f.id for f in logged + updated] == [str(head + 1), str(head + 2)]
    assert repeated == []  # an update identical to the last one is not appended
    first, second = await notes.all(2)
    assert [r.type for r in notified(first)[1] + notified(second)[1]] == [
        "execution-log", "execution-update"]
    async with port.reads() as tx:
        assert [r.seq for r in await tx.notifications.after(head, 10)] == [1, 2]


async def test_a_page_holds_the_rows_of_its_scope_in_its_range_and_the_watermark(
        port: StorePort) -> None:
    """``page`` (the live stream's replay read): rows ``after < pos <= upto`` of the given
    projects or customers (neither: all), oldest first, at most ``limit``, and retention's
    watermark as of the same read."""
    ids = {}
    for project in ("acme/web", "acme/api", "globex/site"):
        async with port.tx() as tx:
            await tx.projects.upsert(project, project.partition("/")[0], URL)
            _, ids[project] = await start(tx, project)
    async with port.reads() as tx:
        head = await tx.notifications.head()
    now = datetime.now(UTC)
    for project in ("acme/web", "acme/api", "globex/site", "acme/web"):
        async with port.tx() as tx:
            await tx.notifications.append(ids[project], [("execution-log", LOG)], created_at=now)

    async def page(after: int, upto: int, limit: int = 10, **scope: list[str]
                   ) -> tuple[list[tuple[int, str]], int]:
        async with port.reads() as tx:
            rows, pruned = await tx.notifications.page(after, upto, limit, **scope)
        return [(r.pos - head, r.project_id) for r in rows], pruned

    assert await page(head, head + 4) == (
        [(1, "acme/web"), (2, "acme/api"), (3, "globex/site"), (4, "acme/web")], 0)
    assert await page(head, head + 4, projects=["acme/web"]) == ([(1, "acme/web"),
                                                                  (4, "acme/web")], 0)
    assert await page(head, head + 4, projects=[], customers=["globex"]) == (
        [(3, "globex/site")], 0)
    assert await page(head, head + 4, projects=["acme/api"], customers=["globex"]) == (
        [(2, "acme/api"), (3, "globex/site")], 0)
    assert await page(head, head + 4, projects=[], customers=[]) == ([], 0)
    assert await page(head + 1, head + 3) == ([(2, "acme/api"), (3, "globex/site")], 0)
    assert await page(head, head + 4, 2) == ([(1, "acme/web"), (2, "acme/api")], 0)
    async with port.tx() as tx:
        await tx.retention.raise_watermark(head + 2)
    assert await page(head + 4, head + 4) == ([], head + 2)  # no row: the watermark still
