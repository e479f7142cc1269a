"""The async engine and sessions, and the translation of driver errors at this edge.

Everything above this module sees ``StoreUnavailable`` (Postgres cannot be reached: a
transient condition) or its own domain errors, never an asyncpg or SQLAlchemy exception.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

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


class Store:
    """Owns the engine and hands out transactional sessions.

    ``unit()`` opens an outer transaction that every ``transaction()`` inside it (in the
    same task) joins: the gateway uses it so a command's writes and the idempotency
    record of its response commit together.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._unit: contextvars.ContextVar[AsyncSession | None] = contextvars.ContextVar(
            f"devteam_unit_{id(self)}", default=None
        )

    @contextlib.asynccontextmanager
    async def unit(self) -> AsyncIterator[AsyncSession]:
        async with self.transaction() as session:
            token = self._unit.set(session)
            try:
                yield session
            finally:
                self._unit.reset(token)

    @classmethod
    def from_settings(cls, settings: Settings, *, pool_size: int | None = None) -> Store:
        return cls(make_engine(settings, pool_size=pool_size))

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One transaction: committed on success, rolled back on any exception."""
        joined = self._unit.get()
        if joined is not None:
            yield joined
            return
        try:
            async with self.sessions() as session, session.begin():
                yield session
        except (OperationalError, InterfaceError, OSError, ConnectionError) as exc:
            raise StoreUnavailable(f"database unavailable: {type(exc).__name__}") from exc
        except DBAPIError as exc:
            if exc.connection_invalidated or _unavailable(exc):
                raise StoreUnavailable("database unavailable") from exc
            raise

    async def scalar(self, sql: str, **params: Any) -> Any:
        """One read in a transaction of its own: the first column of its only row, or None
        when it returns no row."""
        async with self.transaction() as session:
            return (await session.execute(text(sql), params)).scalar_one_or_none()

    async def row(self, sql: str, **params: Any) -> tuple[Any, ...] | None:
        """One read in a transaction of its own: its only row, or None."""
        async with self.transaction() as session:
            row = (await session.execute(text(sql), params)).one_or_none()
        return None if row is None else tuple(row)

    async def close(self) -> None:
        await self.engine.dispose()
