"""``Idempotency-Key`` claims and their stored responses (``gateway.idempotency``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import msgspec

from pipeline.store.common import Conn, dumps, loads


class KeyRow(msgspec.Struct, frozen=True, kw_only=True):
    """A claimed key as found (locked) by another request with the same key."""

    request_hash: str
    status: str
    response_status: int | None
    response_headers: dict[str, str] | None
    response_body: bytes | None
    locked: bool
    """Its lock has not run out (``locked_until > now()``)."""
    expired: bool
    """It outlived its TTL and counts as new."""


INSERT = (
    "INSERT INTO idempotency_keys (user_id, key, request_hash, status, locked_until, "
    "expires_at) VALUES ($1, $2, $3, 'in_flight', now() + $4::interval, now() + $5::interval) "
    "ON CONFLICT DO NOTHING RETURNING true"
)
LOCK = (
    "SELECT request_hash, status, response_status, response_headers, response_body, "
    "locked_until > now() AS locked, expires_at <= now() AS expired "
    "FROM idempotency_keys WHERE user_id = $1 AND key = $2 FOR UPDATE"
)
RETAKE = (
    "UPDATE idempotency_keys SET request_hash = $3, status = 'in_flight', "
    "response_status = NULL, response_headers = NULL, response_body = NULL, "
    "locked_until = now() + $4::interval, created_at = now(), expires_at = now() + $5::interval "
    "WHERE user_id = $1 AND key = $2"
)
FINISH = (
    "UPDATE idempotency_keys SET status = 'completed', response_status = $3, "
    "response_headers = $4::jsonb, response_body = $5 WHERE user_id = $1 AND key = $2"
)
RENEW = (
    "UPDATE idempotency_keys SET locked_until = now() + $3::interval "
    "WHERE user_id = $1 AND key = $2 AND status = 'in_flight'"
)
RELEASE = "DELETE FROM idempotency_keys WHERE user_id = $1 AND key = $2 AND status = 'in_flight'"
SWEEP = "DELETE FROM idempotency_keys WHERE expires_at <= now()"


def _count(status: str) -> int:
    """The row count of an asyncpg command status such as ``DELETE 3``."""
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


class PgIdempotency:
    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def insert(
        self, user_id: str, key: str, request_hash: str, *, lock: timedelta, ttl: timedelta
    ) -> bool:
        """Claim a new key (in flight, locked for ``lock``); False when it exists."""
        return bool(await self.conn.fetchval(INSERT, user_id, key, request_hash, lock, ttl))

    async def lock(self, user_id: str, key: str) -> KeyRow | None:
        record = await self.conn.fetchrow(LOCK, user_id, key)
        if record is None:
            return None
        values: dict[str, Any] = dict(record)
        values["response_headers"] = loads(values["response_headers"])
        if values["response_body"] is not None:
            values["response_body"] = bytes(values["response_body"])
        return msgspec.convert(values, KeyRow)

    async def retake(
        self, user_id: str, key: str, request_hash: str, *, lock: timedelta, ttl: timedelta
    ) -> None:
        """Claim an existing key anew (expired, or abandoned in flight)."""
        await self.conn.execute(RETAKE, user_id, key, request_hash, lock, ttl)

    async def finish(
        self, user_id: str, key: str, status: int, headers: dict[str, str], body: bytes
    ) -> None:
        """Store the operation's response."""
        await self.conn.execute(FINISH, user_id, key, status, dumps(headers), body)

    async def renew(self, user_id: str, key: str, *, lock: timedelta) -> None:
        await self.conn.execute(RENEW, user_id, key, lock)

    async def release(self, user_id: str, key: str) -> None:
        """Free a claim still in flight (its operation failed) for a retry."""
        await self.conn.execute(RELEASE, user_id, key)

    async def sweep(self) -> int:
        """Delete expired keys; how many."""
        return _count(await self.conn.execute(SWEEP))
