"""The store port in memory: the same named queries over dicts, for the unit tier.

One ``MemoryStore`` is one database. A transaction works on the live tables and, when
it raises, puts back the copy taken when it began (rollback); transactions run one at a
time (a single lock stands in for Postgres's row locks). ``clock`` gives ``now()``, so a
test can move time. The contract suite holds it to ``pg``'s behaviour.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import copy
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

from pipeline.store.memory.audit import MemoryAudit
from pipeline.store.memory.base import Tables
from pipeline.store.memory.details import MemoryDetails
from pipeline.store.memory.executions import MemoryExecutions
from pipeline.store.memory.idempotency import MemoryIdempotency
from pipeline.store.memory.leases import MemoryLeases
from pipeline.store.memory.listen import MemoryListening
from pipeline.store.memory.notifications import MemoryNotifications
from pipeline.store.memory.outbox import MemoryOutbox
from pipeline.store.memory.projects import MemoryProjects
from pipeline.store.memory.retention import MemoryRetention
from pipeline.store.memory.server import MemoryServer
from pipeline.store.memory.stage_runs import MemoryStageRuns
from pipeline.store.memory.usage import MemoryUsage


def _utcnow() -> datetime:
    return datetime.now(UTC)


class MemoryTx:
    def __init__(self, store: MemoryStore) -> None:
        self.executions = MemoryExecutions(store)
        self.stage_runs = MemoryStageRuns(store)
        self.outbox = MemoryOutbox(store)
        self.notifications = MemoryNotifications(store)
        self.projects = MemoryProjects(store)
        self.idempotency = MemoryIdempotency(store)
        self.audit = MemoryAudit(store)
        self.usage = MemoryUsage(store)
        self.details = MemoryDetails(store)
        self.leases = MemoryLeases(store)
        self.retention = MemoryRetention(store)
        self.server = MemoryServer(store)


class MemoryStore:
    """The port in memory; ``tables`` holds the rows (a test may look)."""

    def __init__(self, *, clock: Callable[[], datetime] = _utcnow) -> None:
        self.tables = Tables()
        self.clock = clock
        self._lock = asyncio.Lock()
        self._pending: list[tuple[str, str]] | None = None
        self._unit: contextvars.ContextVar[MemoryTx | None] = contextvars.ContextVar(
            f"memory_unit_{id(self)}", default=None)
        self._listeners: list[MemoryListening] = []

    def current(self) -> MemoryTx:
        """The queries of the transaction under way (one runs at a time)."""
        return MemoryTx(self)

    async def listen(self, channel: str,
                     on_notify: Callable[[str], None]) -> MemoryListening:
        """LISTEN: ``on_notify(payload)`` for each NOTIFY on ``channel`` committed from now
        on (``memory.listen``)."""
        listening = MemoryListening(channel, on_notify, self._listeners)
        self._listeners.append(listening)
        return listening

    def notify(self, channel: str, payload: str) -> None:
        """NOTIFY: delivered at commit, once per distinct ``(channel, payload)``."""
        if self._pending is not None and (channel, payload) not in self._pending:
            self._pending.append((channel, payload))

    @contextlib.asynccontextmanager
    async def _begin(self) -> AsyncIterator[MemoryTx]:
        async with self._lock:
            saved = copy.deepcopy(self.tables.__dict__ | {"ids": None})
            ids = self.tables.ids
            self._pending = []
            try:
                yield MemoryTx(self)
            except BaseException:
                self.tables.__dict__.update(saved)
                self.tables.ids = ids
                raise
            else:
                self.tables.notified.extend(self._pending)
                for listener in list(self._listeners):
                    listener.deliver(self._pending)
            finally:
                self._pending = None

    @contextlib.asynccontextmanager
    async def tx(self) -> AsyncIterator[MemoryTx]:
        joined = self._unit.get()
        if joined is not None:
            yield joined
            return
        async with self._begin() as tx:
            yield tx

    @contextlib.asynccontextmanager
    async def reads(self) -> AsyncIterator[MemoryTx]:
        async with self.tx() as tx:
            yield tx

    @contextlib.asynccontextmanager
    async def statement(self) -> AsyncIterator[MemoryTx]:
        async with self.tx() as tx:
            yield tx

    @contextlib.asynccontextmanager
    async def snapshot(self) -> AsyncIterator[MemoryTx]:
        async with self.tx() as tx:
            yield tx

    @contextlib.asynccontextmanager
    async def unit(self) -> AsyncIterator[None]:
        async with self._begin() as tx:
            token = self._unit.set(tx)
            try:
                yield
            finally:
                self._unit.reset(token)
