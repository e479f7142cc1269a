"""Notifications (the stream) in memory."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from pipeline.store.memory.base import Base, json_value
from pipeline.store.notifications import NOTIFY_MAX, STREAM_CHANNEL, Appended, StreamRow

_KEYS = ("level", "taskId", "status", "stage", "completedTasks", "totalTasks")


def _text(value: Any) -> str | None:
    """A payload field as ``->>`` reads it."""
    if value is None or isinstance(value, str):
        return value
    return msgspec.json.encode(value).decode()


def _row(n: dict[str, Any]) -> StreamRow:
    level, task_id, status, stage, completed, total = (_text(n["payload"].get(k))
                                                       for k in _KEYS)
    return StreamRow(pos=n["pos"], execution_id=str(n["execution_id"]), seq=n["seq"],
                     customer_id=n["customer_id"], project_id=n["project_id"], type=n["type"],
                     payload=msgspec.Raw(msgspec.json.encode(n["payload"])), level=level,
                     task_id=task_id, status=status, stage=stage, completed=completed,
                     total=total, created_at=n["created_at"])


def _note(rows: list[dict[str, Any]], created_at: datetime) -> str:
    """The NOTIFY payload of an append (``notifications._Notified``), or its last position
    when too long."""
    first = rows[0]
    micros = (created_at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    note = msgspec.json.encode([
        str(first["execution_id"]), first["customer_id"], first["project_id"], micros,
        [[r["pos"], r["seq"], r["type"], r["payload"],
          *(_text(r["payload"].get(k)) for k in _KEYS)] for r in rows]]).decode()
    return note if len(note.encode()) <= NOTIFY_MAX else str(rows[-1]["pos"])


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
        rows = [{
            "pos": first_pos + i, "execution_id": execution_id, "seq": first_seq + i,
            "customer_id": x["customer_id"], "project_id": x["project_id"], "type": kind,
            "payload": json_value(payload), "created_at": created_at,
        } for i, (kind, payload) in enumerate(frames)]
        self.t.notifications.extend(rows)
        self.store.notify(STREAM_CHANNEL, _note(rows, created_at))
        return Appended(first_pos=first_pos, first_seq=first_seq,
                        customer_id=x["customer_id"], project_id=x["project_id"],
                        created_at=created_at)

    async def head(self, *, seconds: float | None = None) -> int:
        return self.t.stream_pos

    async def after(self, pos: int, limit: int, *, seconds: float | None = None
                    ) -> list[StreamRow]:
        rows = sorted((n for n in self.t.notifications if n["pos"] > pos),
                      key=lambda n: n["pos"])
        return [_row(n) for n in rows[:limit]]

    async def page(self, after: int, upto: int, limit: int, *,
                   projects: list[str] | None = None, customers: list[str] | None = None,
                   seconds: float | None = None) -> tuple[list[StreamRow], int]:
        every = projects is None and customers is None
        wanted_projects, wanted_customers = set(projects or ()), set(customers or ())
        rows = sorted((n for n in self.t.notifications if after < n["pos"] <= upto and (
            every or n["project_id"] in wanted_projects
            or n["customer_id"] in wanted_customers)), key=lambda n: n["pos"])
        return [_row(n) for n in rows[:limit]], self.t.pruned_pos
