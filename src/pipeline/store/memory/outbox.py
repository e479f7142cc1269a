"""The outbox in memory."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

from pipeline.store.memory.base import Base, json_value
from pipeline.store.memory.leases import per_customer
from pipeline.store.outbox import Claimed, CommandRow, Fleet, NewCommand


class MemoryOutbox(Base):
    async def enqueue(self, command: NewCommand) -> int:
        command_id = next(self.t.ids)
        now = self.now()
        self.t.outbox.append({
            "id": command_id, "execution_id": command.execution_id,
            "customer_id": command.customer_id, "actor": command.actor,
            "payload": json_value(command.payload), "correlation_id": command.correlation_id,
            "created_at": now, "available_at": now + timedelta(seconds=command.delay_seconds),
            "dispatched_at": None, "dispatch_count": 0, "completed_at": None,
        })
        self.store.notify("devteam_outbox", "")
        return command_id

    def _get(self, command_id: int) -> dict[str, Any] | None:
        return next((c for c in self.t.outbox if c["id"] == command_id), None)

    async def load(self, command_id: int) -> CommandRow | None:
        c = self._get(command_id)
        if c is None:
            return None
        return CommandRow(payload=copy.deepcopy(c["payload"]), customer_id=c["customer_id"],
                          correlation_id=c["correlation_id"])

    async def complete(self, command_id: int) -> None:
        c = self._get(command_id)
        if c is not None and c["completed_at"] is None:
            c["completed_at"] = self.now()

    async def claim_batch(self, *, per_customer: int, batch: int) -> list[Claimed]:
        now = self.now()
        inflight: dict[str, int] = {}
        for c in self.t.outbox:
            if c["dispatched_at"] is not None and c["completed_at"] is None:
                inflight[c["customer_id"]] = inflight.get(c["customer_id"], 0) + 1
        turns: list[tuple[int, int, str]] = []
        seen: dict[str, int] = {}
        for c in sorted(self.t.outbox, key=lambda c: c["id"]):
            if c["dispatched_at"] is None and c["available_at"] <= now:
                seen[c["customer_id"]] = seen.get(c["customer_id"], 0) + 1
                turn = seen[c["customer_id"]] + inflight.get(c["customer_id"], 0)
                if turn <= per_customer:
                    turns.append((turn, c["id"], c["actor"]))
        return [Claimed(id=i, actor=a) for _, i, a in sorted(turns)[:batch]]

    async def mark_dispatched(self, ids: list[int]) -> None:
        for c in self.t.outbox:
            if c["id"] in ids:
                c["dispatched_at"] = self.now()
                c["dispatch_count"] += 1

    async def requeue_stale(self, *, grace_seconds: float) -> list[int]:
        now = self.now()

        def runs_of(c: dict[str, Any]) -> list[dict[str, Any]]:
            p = c["payload"]
            return [s for s in self.t.stage_runs
                    if str(s["execution_id"]) == p.get("execution_id")
                    and s["task_id"] == p.get("task_id") and s["stage"] == p.get("stage")
                    and s.get("pass_no", 1) == (p.get("pass_no") or 1)
                    and s["attempt"] == p.get("attempt") and s["status"] == "running"]

        requeued = []
        for c in self.t.outbox:
            if c["dispatched_at"] is None or c["completed_at"] is not None:
                continue
            runs = runs_of(c)
            lapsed = any(s["lease_until"] <= now and c["dispatched_at"] < s["lease_until"]
                         for s in runs)
            lost = (c["dispatched_at"] < now - timedelta(seconds=grace_seconds)
                    and not any(s["lease_until"] > now for s in runs))
            if lapsed or lost:
                c["dispatched_at"], c["available_at"] = None, now
                requeued.append(c["id"])
        return requeued

    async def fleet(self) -> Fleet:
        now = self.now()
        due = [c["available_at"] for c in self.t.outbox
               if c["dispatched_at"] is None and c["available_at"] <= now]
        statuses: dict[str, int] = {}
        for x in self.t.executions.values():
            statuses[x["status"]] = statuses.get(x["status"], 0) + 1
        running, waiting = per_customer(self.t.sandbox_leases, now)
        return Fleet(backlog=sum(1 for c in self.t.outbox if c["dispatched_at"] is None),
                     oldest_age=(now - min(due)).total_seconds() if due else 0.0,
                     executions=statuses, running=running, waiting=waiting)
