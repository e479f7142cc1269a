"""The store's connections, lent first come, first served and kept between loans.

asyncpg's pool does a good deal of work on each acquire and release: a task of its own
for every release (``asyncio.shield``), an inactivity timer armed and cancelled, a new
proxy object, a reset coroutine. For a gateway whose requests are one short statement
each, that was about a third of a status read's CPU (in-process, 32 concurrent reads:
215 µs a request with the pool's acquire and release, 150 µs without). It is also unfair:
a task that asks just as a connection comes back takes it ahead of a task already waiting,
which goes to the back of the queue again, so under load a few requests wait many times
longer than the rest (status reads at 32 clients on 3 connections: p50 2 ms, p99 300 ms).

``Lending`` sits on the pool and keeps the connections it has taken from it:

- a loan takes a kept connection (the most recently used), or takes a new one from the
  pool while fewer than ``size`` are out, or queues; a connection that comes back goes to
  the longest-waiting task directly, so nobody is overtaken;
- a loan that ends in an exception (a failed statement, a cancelled query, a dropped
  connection) gives its connection back to the pool, whose release rolls back, waits out a
  cancelled query or terminates the connection, as before; so does a loan that comes back
  inside a transaction or closed, and every connection after ``RENEW_LOANS`` loans, so the
  pool's own limits (``max_queries``, expiry) keep applying;
- a connection kept unused for ``IDLE_SECONDS`` goes back to the pool too, which closes
  it after its own inactivity time, as an idle pooled connection was before;
- a connection the server drops is taken back by the pool itself, which detaches the
  connection object lent out: a detached or closed connection is never lent again.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from typing import Any

import asyncpg

RENEW_LOANS = 1000
"""Loans after which a connection goes back through the pool's release (its checks)."""
IDLE_SECONDS = 60.0
"""A kept connection unused this long goes back to the pool (which closes idle ones)."""


class Closing(Exception):
    """The lending is closing: no new loans."""


class _Kept:
    __slots__ = ("conn", "loans", "since")

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.loans = 0
        self.since = 0.0


class Loan:
    """One loan: a connection from ``__aenter__`` to ``__aexit__`` (a class, not a
    generator: it is entered on every query of the service)."""

    __slots__ = ("_kept", "_lending")

    def __init__(self, lending: Lending) -> None:
        self._lending = lending
        self._kept: _Kept | None = None

    async def __aenter__(self) -> Any:
        self._kept = await self._lending._borrow()
        return self._kept.conn

    async def __aexit__(self, kind: type[BaseException] | None, *_: object) -> None:
        kept, self._kept = self._kept, None
        assert kept is not None
        if kind is None:
            await self._lending._give_back(kept)
        else:
            await self._lending._to_pool(kept)


class Lending:
    """Connections of one asyncpg pool (``pool``), at most ``size`` out at once."""

    def __init__(self, pool: Any, size: int) -> None:
        self._pool = pool
        self._size = size
        self._kept: collections.deque[_Kept] = collections.deque()
        """Connections not on loan, least recently used first."""
        self._waiting: collections.deque[asyncio.Future[_Kept | None]] = collections.deque()
        """Tasks waiting for a loan, first come first; a result of None is a place to take
        a new connection from the pool."""
        self._out = 0
        """Connections taken from the pool and not given back to it (kept or on loan)."""
        self._closing = False
        self._returns: set[asyncio.Task[None]] = set()

    @property
    def out(self) -> int:
        """Connections taken from the pool and not given back (kept or on loan)."""
        return self._out

    @property
    def kept(self) -> int:
        """Connections kept, not on loan."""
        return len(self._kept)

    def connection(self) -> Loan:
        """``async with lending.connection() as conn``: a connection for the block."""
        return Loan(self)

    async def close(self) -> None:
        """Give every kept connection back and refuse new loans; connections on loan go
        back to the pool as their loans end (the pool's ``close`` waits for them)."""
        self._closing = True
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_exception(Closing("the store is closing"))
        while self._kept:
            await self._to_pool(self._kept.popleft())
        if self._returns:
            await asyncio.gather(*self._returns, return_exceptions=True)

    # ------------------------------------------------------------------------ internals
    async def _borrow(self) -> _Kept:
        while True:
            if self._closing:
                raise Closing("the store is closing")
            if self._kept and not self._waiting:
                kept = self._kept.pop()
            elif self._out < self._size and not self._waiting:
                self._out += 1
                kept = await self._new()
            else:
                kept_or_place = await self._wait()
                kept = kept_or_place if kept_or_place is not None else await self._new()
            if _gone(kept.conn):  # dropped while kept: the pool replaces it
                await self._to_pool(kept)
                continue
            kept.loans += 1
            return kept

    async def _new(self) -> _Kept:
        """A connection from the pool, for a place already counted in ``_out``."""
        try:
            return _Kept(await self._pool.acquire())
        except BaseException:
            self._drop_place()
            raise

    async def _wait(self) -> _Kept | None:
        waiter: asyncio.Future[_Kept | None] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                handed = waiter.result()  # handed over just as this task was cancelled
                if handed is None:
                    self._drop_place()
                else:
                    await self._give_back(handed)
            else:
                with contextlib.suppress(ValueError):
                    self._waiting.remove(waiter)
            raise

    async def _give_back(self, kept: _Kept) -> None:
        if self._closing or kept.loans >= RENEW_LOANS or _in_use(kept.conn):
            await self._to_pool(kept)
            return
        if self._hand_over(kept):
            return
        now = time.monotonic()
        kept.since = now
        self._kept.append(kept)
        while len(self._kept) > 1 and now - self._kept[0].since > IDLE_SECONDS:
            idle = self._kept.popleft()
            task = asyncio.get_running_loop().create_task(self._to_pool(idle))
            self._returns.add(task)
            task.add_done_callback(self._returns.discard)

    async def _to_pool(self, kept: _Kept) -> None:
        """Back to the pool (its release resets or terminates the connection); the place
        goes to the longest-waiting task, which takes a new connection."""
        self._out -= 1
        try:
            await self._pool.release(kept.conn)
        finally:
            self._pass_place()

    def _drop_place(self) -> None:
        """A place counted in ``_out`` that got no connection: free it for a waiter."""
        self._out -= 1
        self._pass_place()

    def _pass_place(self) -> None:
        if self._closing or self._out >= self._size:
            return
        self._out += 1
        if not self._hand_over(None):
            self._out -= 1

    def _hand_over(self, kept: _Kept | None) -> bool:
        """Give ``kept`` (None: a place to take a new connection) to the longest-waiting
        task still waiting; False when there is none."""
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(kept)
                return True
        return False


def _in_use(conn: Any) -> bool:
    """Whether a connection coming back from a loan cannot be kept as it is: inside a
    transaction, closed, or taken back by the pool (see ``_gone``)."""
    try:
        return bool(conn.is_in_transaction()) or bool(conn.is_closed())
    except asyncpg.InterfaceError:
        return True


def _gone(conn: Any) -> bool:
    """Whether a connection lent by the pool is closed, or was taken back by the pool
    (asyncpg does that when the server drops a pooled connection; the proxy then refuses
    every call). The pool's ``release`` of such a proxy does nothing."""
    try:
        return bool(conn.is_closed())
    except asyncpg.InterfaceError:
        return True
