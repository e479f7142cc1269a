"""The database server itself: whether it answers (the health check's probe)."""

from __future__ import annotations

from pipeline.store.common import Conn

PING = "SELECT 1"


class PgServer:
    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def ping(self) -> None:
        """One round trip on a pooled connection (the pool the API's queries use)."""
        await self.conn.fetchval(PING)
