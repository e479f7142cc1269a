"""Idempotency keys in memory."""

from __future__ import annotations

import copy
from datetime import timedelta

from pipeline.store.idempotency import KeyRow
from pipeline.store.memory.base import Base, json_value


class MemoryIdempotency(Base):
    async def insert(
        self, user_id: str, key: str, request_hash: str, *, lock: timedelta, ttl: timedelta
    ) -> bool:
        if (user_id, key) in self.t.idempotency:
            return False
        await self.retake(user_id, key, request_hash, lock=lock, ttl=ttl)
        return True

    async def lock(self, user_id: str, key: str) -> KeyRow | None:
        row = self.t.idempotency.get((user_id, key))
        if row is None:
            return None
        now = self.now()
        return KeyRow(request_hash=row["request_hash"], status=row["status"],
                      response_status=row["response_status"],
                      response_headers=copy.deepcopy(row["response_headers"]),
                      response_body=row["response_body"],
                      locked=row["locked_until"] > now, expired=row["expires_at"] <= now)

    async def retake(
        self, user_id: str, key: str, request_hash: str, *, lock: timedelta, ttl: timedelta
    ) -> None:
        now = self.now()
        self.t.idempotency[(user_id, key)] = {
            "request_hash": request_hash, "status": "in_flight", "response_status": None,
            "response_headers": None, "response_body": None, "locked_until": now + lock,
            "created_at": now, "expires_at": now + ttl,
        }

    async def finish(
        self, user_id: str, key: str, status: int, headers: dict[str, str], body: bytes
    ) -> None:
        row = self.t.idempotency.get((user_id, key))
        if row is not None:
            row.update(status="completed", response_status=status,
                       response_headers=json_value(headers), response_body=bytes(body))

    async def renew(self, user_id: str, key: str, *, lock: timedelta) -> None:
        row = self.t.idempotency.get((user_id, key))
        if row is not None and row["status"] == "in_flight":
            row["locked_until"] = self.now() + lock

    async def release(self, user_id: str, key: str) -> None:
        row = self.t.idempotency.get((user_id, key))
        if row is not None and row["status"] == "in_flight":
            del self.t.idempotency[(user_id, key)]

    async def sweep(self) -> int:
        now = self.now()
        expired = [k for k, row in self.t.idempotency.items() if row["expires_at"] <= now]
        for k in expired:
            del self.t.idempotency[k]
        return len(expired)
