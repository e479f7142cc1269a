"""Who did what: one audit row per state change, written in the change's transaction."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec

from pipeline.store.audit import NewAuditEntry
from pipeline.store.port import Tx


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """The authenticated caller of a command (a user, or the pipeline itself)."""

    user_id: str
    role: str = "developer"
    correlation_id: str


SYSTEM = "system:pipeline"


async def record(
    db: Tx,
    *,
    principal: Principal,
    action: str,
    project_id: str | None,
    execution_id: uuid.UUID | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    await db.audit.record(NewAuditEntry(
        user_id=principal.user_id, action=action, project_id=project_id,
        execution_id=execution_id, correlation_id=principal.correlation_id,
        details=details or {}))
