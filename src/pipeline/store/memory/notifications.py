"""Notifications (the stream) in memory."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pipeline.store.memory.base import Base, json_value
from pipeline.store.notifications import Appended


class MemoryNotifications(Base):
    async def append(
        self,
        execution_id: uuid.UUID,
        frames: list[tuple[str, dict[str, Any]]],
        *,
        created_at: datetime,
        last_update: Any = None,
    ) -> Appended:
        x = self.t.executions.get(execution_id)
        if x is None:
            raise LookupError(f"no execution {execution_id}")
        n = len(frames)
        x["last_seq"] += n
        x["updated_at"] = self.now()
        if last_update is not None:
            x["last_update"] = json_value(last_update)
        first_seq = x["last_seq"] - n + 1
        first_pos = self.t.stream_pos + 1
        self.t.stream_pos += n
        for i, (kind, payload) in enumerate(frames):
            self.t.notifications.append({
                "pos": first_pos + i, "execution_id": execution_id, "seq": first_seq + i,
                "customer_id": x["customer_id"], "project_id": x["project_id"], "type": kind,
                "payload": json_value(payload), "created_at": created_at,
            })
        self.store.notify("devteam_stream", str(self.t.stream_pos))
        return Appended(first_pos=first_pos, first_seq=first_seq,
                        customer_id=x["customer_id"], project_id=x["project_id"],
                        created_at=created_at)
