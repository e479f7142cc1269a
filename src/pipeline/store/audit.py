"""The audit log: who changed what, when, under which correlation id."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec

from pipeline.store.common import Conn, dumps, loads


class NewAuditEntry(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str
    action: str
    project_id: str | None
    execution_id: uuid.UUID | None
    correlation_id: str
    details: dict[str, Any]


class AuditRow(NewAuditEntry, frozen=True, kw_only=True):
    id: int
    at: datetime


INSERT = (
    "INSERT INTO audit_log (user_id, action, project_id, execution_id, correlation_id, "
    "details) VALUES ($1, $2, $3, $4, $5, $6::jsonb)"
)
OF_EXECUTION = (
    "SELECT id, at, user_id, action, project_id, execution_id, correlation_id, details "
    "FROM audit_log WHERE execution_id = $1 ORDER BY id"
)


class PgAudit:
    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def record(self, entry: NewAuditEntry) -> None:
        await self.conn.execute(INSERT, entry.user_id, entry.action, entry.project_id,
                                entry.execution_id, entry.correlation_id,
                                dumps(entry.details))

    async def of_execution(self, execution_id: uuid.UUID) -> list[AuditRow]:
        """The execution's audit entries, oldest first."""
        rows = await self.conn.fetch(OF_EXECUTION, execution_id)
        return [msgspec.convert({**dict(r), "details": loads(r["details"])}, AuditRow)
                for r in rows]
