"""Stage runs: one attempt of one stage of one task."""

from __future__ import annotations

import uuid

from pipeline.store.common import Conn

RUNNING = (
    "SELECT true FROM stage_runs WHERE execution_id = $1 AND status = 'running' "
    "AND lease_until > now() LIMIT 1"
)


class PgStageRuns:
    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def running(self, execution_id: uuid.UUID) -> bool:
        """Whether a stage of the execution runs under a live lease."""
        return bool(await self.conn.fetchval(RUNNING, execution_id))
