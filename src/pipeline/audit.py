"""Who did what: one audit row per state change, written in the change's transaction."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """The authenticated caller of a command (a user, or the pipeline itself)."""

    user_id: str
    role: str = "developer"
    correlation_id: str


SYSTEM = "system:pipeline"


async def record(
    session: AsyncSession,
    *,
    principal: Principal,
    action: str,
    project_id: str | None,
    execution_id: uuid.UUID | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    await session.execute(
        text(
            "INSERT INTO audit_log (user_id, action, project_id, execution_id, correlation_id, "
            "details) VALUES (:u, :a, :p, :e, :c, CAST(:d AS jsonb))"
        ),
        {
            "u": principal.user_id,
            "a": action,
            "p": project_id,
            "e": execution_id,
            "c": principal.correlation_id,
            "d": msgspec.json.encode(details or {}).decode(),
        },
    )
