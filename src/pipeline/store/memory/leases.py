"""Sandbox slot leases in memory (``pipeline.store.leases`` over a list of dicts).

``serialize`` has nothing to take: the memory store runs one transaction at a time, so
every grant already runs alone (what the advisory lock gives in Postgres).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from pipeline.store.leases import LeaseWait, Vacated
from pipeline.store.memory.base import Base


def _order(lease: dict[str, Any]) -> tuple[datetime, int]:
    return lease["requested_at"], lease["id"]


def wait_of(rows: list[dict[str, Any]], now: datetime,
            mine: Callable[[dict[str, Any]], bool]) -> LeaseWait | None:
    """The oldest live waiting lease among ``mine`` and where it stands in line."""
    waiting = sorted((x for x in rows if x["granted_at"] is None and x["alive_until"] >= now),
                     key=_order)
    lease = next((x for x in waiting if mine(x)), None)
    if lease is None:
        return None
    granted = [x for x in rows if x["granted_at"] is not None]
    return LeaseWait(
        holder=lease["holder"], customer_id=lease["customer_id"],
        requested_at=lease["requested_at"],
        seconds=(now - lease["requested_at"]).total_seconds(),
        position=1 + sum(1 for w in waiting if w["customer_id"] == lease["customer_id"]
                         and _order(w) < _order(lease)),
        waiting=len(waiting),
        customer_running=sum(1 for x in granted if x["customer_id"] == lease["customer_id"]),
        running=len(granted))


def per_customer(rows: list[dict[str, Any]], now: datetime) -> tuple[dict[str, int],
                                                                      dict[str, int]]:
    """Granted leases per customer, and live waiting ones (the fleet's gauges)."""
    running: dict[str, int] = {}
    waiting: dict[str, int] = {}
    for x in rows:
        if x["granted_at"] is not None:
            running[x["customer_id"]] = running.get(x["customer_id"], 0) + 1
        elif x["alive_until"] >= now:
            waiting[x["customer_id"]] = waiting.get(x["customer_id"], 0) + 1
    return running, waiting


class MemoryLeases(Base):
    @property
    def rows(self) -> list[dict[str, Any]]:
        return self.t.sandbox_leases

    def _of(self, holder: str) -> dict[str, Any] | None:
        return next((x for x in self.rows if x["holder"] == holder), None)

    async def serialize(self) -> None:
        return None

    async def request(self, customer_id: str, holder: str, execution_id: str | None, *,
                      ttl: float, alive: float, create: float) -> None:
        now = self.now()
        lease = self._of(holder)
        if lease is None:
            self.rows.append({
                "id": next(self.t.ids), "customer_id": customer_id, "holder": holder,
                "execution_id": execution_id, "requested_at": now, "granted_at": None,
                "placed_at": None, "expires_at": now + timedelta(seconds=ttl),
                "alive_until": now + timedelta(seconds=create)})
            return
        lease.update(
            expires_at=now + timedelta(seconds=ttl),
            execution_id=execution_id if execution_id is not None else lease["execution_id"],
            placed_at=None,
            alive_until=now + timedelta(seconds=alive if lease["granted_at"] is None
                                        else create))

    async def drop_dead(self) -> int:
        now = self.now()
        kept = [x for x in self.rows if not (
            x["expires_at"] < now or (x["granted_at"] is None and x["alive_until"] < now))]
        dropped = len(self.rows) - len(kept)
        self.rows[:] = kept
        return dropped

    async def grant(self, *, per_customer: int, global_limit: int, create: float) -> int:
        now = self.now()
        held: dict[str, int] = {}
        for x in self.rows:
            if x["granted_at"] is not None:
                held[x["customer_id"]] = held.get(x["customer_id"], 0) + 1
        turns: list[tuple[int, datetime, int, dict[str, Any]]] = []
        seen: dict[str, int] = {}
        for x in sorted((x for x in self.rows if x["granted_at"] is None), key=_order):
            seen[x["customer_id"]] = seen.get(x["customer_id"], 0) + 1
            turn = held.get(x["customer_id"], 0) + seen[x["customer_id"]]
            if turn <= per_customer:
                turns.append((turn, x["requested_at"], x["id"], x))
        free = global_limit - sum(held.values())
        chosen = [t[3] for t in sorted(turns, key=lambda t: t[:3])][:max(free, 0)]
        for x in chosen:
            x.update(granted_at=now, alive_until=now + timedelta(seconds=create))
        return len(chosen)

    async def granted(self, holder: str) -> bool:
        lease = self._of(holder)
        return lease is not None and lease["granted_at"] is not None

    async def wait(self, holder: str) -> LeaseWait | None:
        return wait_of(self.rows, self.now(), lambda x: x["holder"] == holder)

    async def placed(self, holder: str) -> None:
        lease = self._of(holder)
        if lease is not None:
            lease["placed_at"] = self.now()

    async def release(self, holder: str) -> None:
        self.rows[:] = [x for x in self.rows if x["holder"] != holder]

    async def clock(self) -> datetime:
        return self.now()

    async def vacate(self, existing: list[str], listed_at: datetime) -> list[Vacated]:
        names = set(existing)
        gone = [x for x in self.rows if x["granted_at"] is not None
                and x["holder"] not in names
                and ((x["placed_at"] is not None and x["placed_at"] < listed_at)
                     or x["alive_until"] < listed_at)]
        self.rows[:] = [x for x in self.rows if x not in gone]
        return [Vacated(x["holder"], x["customer_id"]) for x in gone]
