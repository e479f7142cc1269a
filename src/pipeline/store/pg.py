"""The port on asyncpg: ``PgTx`` over one connection in a transaction.

A connection comes from the store's asyncpg pool (``pipeline.db.Store.tx``); the service
opens no SQLAlchemy sessions (those remain for the models, Alembic, and tests' raw-SQL
setups through ``Store.transaction``).
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import msgspec

from pipeline.store.audit import PgAudit
from pipeline.store.common import Conn
from pipeline.store.details import PgDetails
from pipeline.store.executions import PgExecutions
from pipeline.store.idempotency import PgIdempotency
from pipeline.store.leases import PgLeases
from pipeline.store.notifications import PgNotifications
from pipeline.store.outbox import PgOutbox
from pipeline.store.projects import PgProjects
from pipeline.store.retention import PgRetention
from pipeline.store.server import PgServer
from pipeline.store.stage_runs import PgStageRuns
from pipeline.store.usage import PgUsage


class PgTx:
    """The queries of every noun on one asyncpg connection (in a transaction)."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    @cached_property
    def executions(self) -> PgExecutions:
        return PgExecutions(self.conn)

    @cached_property
    def stage_runs(self) -> PgStageRuns:
        return PgStageRuns(self.conn)

    @cached_property
    def outbox(self) -> PgOutbox:
        return PgOutbox(self.conn)

    @cached_property
    def notifications(self) -> PgNotifications:
        return PgNotifications(self.conn)

    @cached_property
    def projects(self) -> PgProjects:
        return PgProjects(self.conn)

    @cached_property
    def idempotency(self) -> PgIdempotency:
        return PgIdempotency(self.conn)

    @cached_property
    def audit(self) -> PgAudit:
        return PgAudit(self.conn)

    @cached_property
    def usage(self) -> PgUsage:
        return PgUsage(self.conn)

    @cached_property
    def details(self) -> PgDetails:
        return PgDetails(self.conn)

    @cached_property
    def leases(self) -> PgLeases:
        return PgLeases(self.conn)

    @cached_property
    def retention(self) -> PgRetention:
        return PgRetention(self.conn)

    @cached_property
    def server(self) -> PgServer:
        return PgServer(self.conn)


def _jsonb_encode(value: str) -> bytes:
    return b"\x01" + value.encode()


def _jsonb_decode(value: bytes) -> Any:
    return msgspec.json.decode(value[1:])


def _json_decode(value: bytes) -> Any:
    return msgspec.json.decode(value)


async def init_connection(conn: Conn) -> None:
    """Codecs as SQLAlchemy's asyncpg dialect sets them (JSON in as text, out decoded), so
    a query reads the same on a pooled connection and on a session's."""
    await conn.set_type_codec("jsonb", encoder=_jsonb_encode, decoder=_jsonb_decode,
                              schema="pg_catalog", format="binary")
    await conn.set_type_codec("json", encoder=str.encode, decoder=_json_decode,
                              schema="pg_catalog", format="binary")
