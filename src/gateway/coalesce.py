"""Reads that arrive together, answered together: the keys asked for in one turn of the
event loop go to the database as one statement (``Coalesced.load``).

Dashboards poll each project's status; at a few thousand reads a second the gateway's
and the database's work per read is mostly the statement's own (a round trip, a pool
loan, an execution), not the rows. Under load many requests reach their read in the
same turn of the loop, and one statement for all of them costs about a third as much
per read. Nothing is cached: the statement starts after every request of its batch has
arrived, so each sees every commit that preceded it, as a read of its own would. Alone,
a read waits one turn of the loop (microseconds).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

MOST = 64
"""Keys in one statement at most; more in one turn go out as several statements."""


class Coalesced(Generic[K, V]):
    """``load(key)``: the value ``fetch`` finds for ``key`` (None when it has none), read
    by one call of ``fetch`` with every distinct key asked for in the same turn of the
    loop. ``fetch`` runs in a context of its own: it never sees the caller's context
    variables (so it never joins a caller's transaction, ``Store.unit``)."""

    def __init__(self, fetch: Callable[[list[K]], Awaitable[Mapping[K, V]]], *,
                 most: int = MOST) -> None:
        if most < 1:
            raise ValueError("a batch holds at least one key")
        self._fetch = fetch
        self._most = most
        self._waiting: dict[K, list[asyncio.Future[V | None]]] = {}
        self._scheduled = False
        self._running: set[asyncio.Task[None]] = set()

    async def load(self, key: K) -> V | None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[V | None] = loop.create_future()
        self._waiting.setdefault(key, []).append(future)
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush, context=contextvars.Context())
        return await future

    def _flush(self) -> None:
        """After the turn: one ``fetch`` for every ``most`` distinct keys waiting."""
        self._scheduled = False
        waiting, self._waiting = self._waiting, {}
        keys = list(waiting)
        for start in range(0, len(keys), self._most):
            batch = {key: waiting[key] for key in keys[start:start + self._most]}
            task = asyncio.get_running_loop().create_task(self._answer(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _answer(self, batch: dict[K, list[asyncio.Future[V | None]]]) -> None:
        try:
            found = await self._fetch(list(batch))
        except asyncio.CancelledError:
            for futures in batch.values():
                for future in futures:
                    future.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - each waiter gets it, as its own read would
            for futures in batch.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(exc)
            return
        for key, futures in batch.items():
            value = found.get(key)
            for future in futures:
                if not future.done():  # its request was cancelled (the client left)
                    future.set_result(value)

    async def close(self) -> None:
        """Wait for the statements under way (the store closes after)."""
        while self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
