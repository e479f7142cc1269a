"""The async engine and sessions, and the translation of driver errors at this edge.

Everything above this module sees ``StoreUnavailable`` (Postgres cannot be reached: a
transient condition) or its own domain errors, never an asyncpg or SQLAlchemy exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import asyncpg
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from pipeline.store.lending import Closing, Lending, Loan
from pipeline.store.listen import PgListening, listen
from pipeline.store.pg import PgTx, init_connection
from runner.errors import TransientError
from runner.settings import Settings


class StoreUnavailable(TransientError):
    """Postgres did not answer or dropped the connection; the operation may be retried."""


# SQLSTATE classes meaning "the server cannot serve you now": connection exceptions (08),
# insufficient resources (53), operator intervention such as a shutdown or restart (57).
_UNAVAILABLE_CLASSES = ("08", "53", "57")


def _unavailable(exc: DBAPIError) -> bool:
    orig = getattr(exc, "orig", None)
    driver = getattr(orig, "driver_exception", orig)
    state = str(getattr(driver, "sqlstate", "") or "")
    return state[:2] in _UNAVAILABLE_CLASSES


def make_engine(settings: Settings, *, pool_size: int | None = None) -> AsyncEngine:
    return create_async_engine(
        settings.database.url,
        pool_size=pool_size or settings.database.pool_size,
        max_overflow=10,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={"server_settings": {"application_name": "devteam"}, "timeout": 5},
    )


def asyncpg_dsn(url: str) -> str:
    """The plain ``postgresql://`` DSN asyncpg wants, from the SQLAlchemy URL."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


@contextlib.contextmanager
def _pg_errors() -> Iterator[None]:
    """asyncpg's "cannot serve you now" errors as ``StoreUnavailable``."""
    try:
        yield
    except (OSError, ConnectionError, TimeoutError, asyncpg.InterfaceError,
            asyncpg.PostgresConnectionError, Closing) as exc:
        raise StoreUnavailable(f"database unavailable: {type(exc).__name__}") from exc
    except asyncpg.PostgresError as exc:
        if str(getattr(exc, "sqlstate", "") or "")[:2] in _UNAVAILABLE_CLASSES:
            raise StoreUnavailable("database unavailable") from exc
        raise


async def _keep_session(_conn: Any) -> None:
    """A pooled connection goes back as it is (asyncpg has already ended any transaction
    left open): the port sets no session state, takes no session advisory lock and
    listens to nothing, so the default reset's round trip (``RESET ALL``, ``UNLISTEN *``,
    ...) on every release is saved."""


_NOTHING = contextlib.nullcontext()
"""An ``async with`` that does nothing (no turn, no transaction)."""


class _Unit:
    """An outer transaction on the store port, opened by the first ``tx()`` asked for
    inside it."""

    def __init__(self, stack: contextlib.AsyncExitStack) -> None:
        self.stack = stack
        self.tx: PgTx | None = None


class Store:
    """Owns the engine and hands out transactions: the store port on asyncpg (``tx()``,
    ``reads()``, ``statement()``: a pool of its own, whose connections the store lends
    itself, first come, first served (``store.lending``), and prepared statements; at
    most ``writers`` transactions at once, see ``_turn``), and
    SQLAlchemy sessions (``transaction()``), which no code of the service uses any more:
    tests and benchmarks write their raw SQL set-ups through them.

    ``unit()`` opens an outer transaction that every ``tx()`` inside it (in the same task)
    joins: the gateway uses it so a command's writes and the idempotency record of its
    response commit together. ``transaction()`` cannot join a unit (a session cannot adopt
    an asyncpg connection).

    For the pool's connections: ``warm`` runs on each new one (after its codecs are set),
    so statements that must be fast from a connection's first use are prepared there;
    ``generic_plans`` has Postgres plan each statement once per connection
    (``plan_cache_mode = force_generic_plan``). By default it plans a prepared statement
    afresh at each of its first five runs on a connection, and goes on doing so for as
    long as those plans cost less than the generic one: the gateway's batched status read
    has a one-key batch's plan cheaper than the generic plan (which expects ten keys), so
    on a connection that served mostly small batches it was planned at every read (about
    a millisecond of the server's CPU each). The statements whose filters are optional
    and that may read many rows are built for the filters given (``executions.list_for``,
    ``usage.daily``), so a generic plan loses nothing a custom one would know; the one
    left (``stage_runs.result``'s attempt) filters one task's runs found by their key.
    """

    def __init__(self, engine: AsyncEngine, *, dsn: str | None = None,
                 pool_size: int | None = None, writers: int | None = None,
                 warm: Callable[[Any], Awaitable[None]] | None = None,
                 generic_plans: bool = False) -> None:
        self.engine = engine
        self._warm = warm
        self._server_settings = {"application_name": "devteam"}
        if generic_plans:
            self._server_settings["plan_cache_mode"] = "force_generic_plan"
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._unit: contextvars.ContextVar[_Unit | None] = contextvars.ContextVar(
            f"devteam_unit_{id(self)}", default=None
        )
        self._dsn = dsn or asyncpg_dsn(engine.url.render_as_string(hide_password=False))
        self._pool_size = pool_size or 10
        self._writers = max(1, min(writers or 4, self._pool_size))
        self._turns = asyncio.Semaphore(self._writers)
        self._in_turn: contextvars.ContextVar[bool] = contextvars.ContextVar(
            f"devteam_turn_{id(self)}", default=False
        )
        self._pool: Any = None
        self._pool_lock = asyncio.Lock()
        self._lending: Lending | None = None

    @contextlib.asynccontextmanager
    async def unit(self) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            token = self._unit.set(_Unit(stack))
            try:
                yield
            finally:
                self._unit.reset(token)

    @classmethod
    def from_settings(cls, settings: Settings, *, pool_size: int | None = None,
                      writers: int | None = None,
                      warm: Callable[[Any], Awaitable[None]] | None = None,
                      generic_plans: bool = False) -> Store:
        return cls(make_engine(settings, pool_size=pool_size),
                   dsn=asyncpg_dsn(settings.database.url),
                   pool_size=pool_size or settings.database.pool_size,
                   writers=writers or settings.database.writers, warm=warm,
                   generic_plans=generic_plans)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One SQLAlchemy transaction (for tests' and benchmarks' raw SQL): committed on
        success, rolled back on any exception. Not inside a ``unit()``."""
        if self._unit.get() is not None:
            raise RuntimeError("a session cannot join a unit: use the store port (tx())")
        async with self._session() as session:
            yield session

    @contextlib.asynccontextmanager
    async def _session(self) -> AsyncIterator[AsyncSession]:
        try:
            async with self.sessions() as session, session.begin():
                yield session
        except (OperationalError, InterfaceError, OSError, ConnectionError) as exc:
            raise StoreUnavailable(f"database unavailable: {type(exc).__name__}") from exc
        except DBAPIError as exc:
            if exc.connection_invalidated or _unavailable(exc):
                raise StoreUnavailable("database unavailable") from exc
            raise

    @contextlib.asynccontextmanager
    async def tx(self) -> AsyncIterator[PgTx]:
        """One transaction on the store port (asyncpg): committed on success, rolled back
        on any exception. Inside a ``unit()`` it joins the unit's transaction."""
        joined = self._unit.get()
        if joined is not None:
            if joined.tx is None:
                joined.tx = await joined.stack.enter_async_context(self._pg_tx())
            yield joined.tx
            return
        async with self._pg_tx() as tx:
            yield tx

    def reads(self) -> contextlib.AbstractAsyncContextManager[PgTx]:
        """The store port outside a transaction: each query is a statement of its own
        (one round trip: for a single read). Inside a ``unit()`` it joins the unit."""
        return self._outside()

    def snapshot(self) -> contextlib.AbstractAsyncContextManager[PgTx]:
        """Several reads that see one snapshot: a read-only transaction (repeatable read),
        which takes no turn (it takes no lock a writer waits for). Inside a ``unit()`` it
        joins the unit."""
        return self._outside(snapshot=True)

    def statement(self) -> contextlib.AbstractAsyncContextManager[PgTx]:
        """The store port for one statement that is a whole transaction by itself
        (committed when it returns, as durably as any commit): no ``BEGIN``/``COMMIT``
        round trips, and any row lock it takes is released by the server at its commit,
        not held until the client's next message. It takes a turn as a transaction does
        (``_turn``). Inside a ``unit()`` it joins the unit."""
        return self._outside(turn=True)

    @contextlib.asynccontextmanager
    async def _outside(self, *, turn: bool = False, snapshot: bool = False
                       ) -> AsyncIterator[PgTx]:
        """A connection outside ``tx()``: with a turn (``turn``), in a read-only
        transaction (``snapshot``); inside a ``unit()``, the unit's transaction."""
        if self._unit.get() is not None:
            async with self.tx() as tx:
                yield tx
            return
        with _pg_errors():
            async with (self._turn() if turn else _NOTHING), await self._lent() as conn, (
                    conn.transaction(isolation="repeatable_read", readonly=True)
                    if snapshot else _NOTHING):
                yield PgTx(conn)

    async def listen(self, channel: str, on_notify: Callable[[str], None]) -> PgListening:
        """A connection of its own LISTENing on ``channel`` (``store.listen``)."""
        with _pg_errors():
            return await listen(self._dsn, channel, on_notify)

    @property
    def lending(self) -> Lending | None:
        """The lending of the pool's connections (None before the first query)."""
        return self._lending

    async def pool(self) -> Any:
        """The asyncpg pool, created at first use (one per store, so one per app)."""
        if self._pool is None:
            async with self._pool_lock:
                if self._pool is None:
                    try:
                        self._pool = await asyncpg.create_pool(
                            self._dsn, min_size=1, max_size=self._pool_size, timeout=5,
                            init=self._init_connection, reset=_keep_session,
                            server_settings=self._server_settings)
                        self._lending = Lending(self._pool, self._pool_size)
                    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError,
                            TimeoutError) as exc:
                        raise StoreUnavailable(
                            f"database unavailable: {type(exc).__name__}") from exc
        return self._pool

    async def _init_connection(self, conn: Any) -> None:
        """A new pooled connection: its codecs, then the store's ``warm``."""
        await init_connection(conn)
        if self._warm is not None:
            await self._warm(conn)

    async def _lent(self) -> Loan:
        """A loan of one of the pool's connections, first come, first served
        (``store.lending``)."""
        if self._lending is None:
            await self.pool()
            assert self._lending is not None
        return self._lending.connection()

    @property
    def writers(self) -> int:
        """Transactions of this store at once (``tx()`` and ``statement()``; single reads
        are not counted)."""
        return self._writers

    @contextlib.asynccontextmanager
    async def _turn(self) -> AsyncIterator[None]:
        """A turn to run a transaction: at most ``writers`` at once, first come, first
        served. Every transaction that writes a frame takes the stream's one position row
        lock and holds it until its commit, so beyond a few at once they only queue on
        that lock inside Postgres, where each wait and wake-up costs the server CPU
        (``POST /events`` at 32 clients: 0.60 to 0.65 ms of database CPU a start with 10
        at once, 0.48 with 4, 0.41 with 2). Here they queue in the process, for nothing.
        A transaction opened while its task already has a turn (nested) takes none: it
        would wait for itself."""
        if self._in_turn.get():
            yield
            return
        async with self._turns:
            token = self._in_turn.set(True)
            try:
                yield
            finally:
                self._in_turn.reset(token)

    @contextlib.asynccontextmanager
    async def _pg_tx(self) -> AsyncIterator[PgTx]:
        with _pg_errors():
            async with self._turn(), await self._lent() as conn, conn.transaction():
                yield PgTx(conn)

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            lending, self._lending = self._lending, None
            if lending is not None:
                await lending.close()
            await pool.close()
        await self.engine.dispose()
