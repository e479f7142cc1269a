"""Usage: what finished stage runs consumed (``stage_runs.usage``), summed per customer's
project and UTC day, or per execution."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any

import msgspec

from pipeline.store.common import Conn

SUMS = """
    SUM((r.usage->>'tokensSent')::bigint)::bigint AS tokens_sent,
    SUM((r.usage->>'tokensReceived')::bigint)::bigint AS tokens_received,
    SUM((r.usage->>'cost')::float8) AS cost,
    SUM((r.usage->>'cpuSeconds')::float8) AS cpu_seconds,
    MAX((r.usage->>'peakMemoryBytes')::bigint) AS peak_memory_bytes,
    SUM((r.usage->>'wallSeconds')::float8) AS wall_seconds,
    COUNT(*) FILTER (WHERE r.stage = 'IMPLEMENT') AS implement_rounds,
    COALESCE(SUM((r.usage->>'containers')::int), 0)::bigint AS containers
"""

_DAILY = f"""
    SELECT x.project_id, (r.finished_at AT TIME ZONE 'UTC')::date AS day, {SUMS}
    FROM stage_runs r JOIN executions x ON x.id = r.execution_id
    WHERE x.customer_id = $1 AND r.usage IS NOT NULL
      AND r.finished_at >= $2 AND r.finished_at < $3{{project}}
    GROUP BY 1, 2
    ORDER BY 1, 2
"""
DAILY = _DAILY.format(project="")
DAILY_OF_PROJECT = _DAILY.format(project=" AND x.project_id = $4")
"""``daily`` of one project: a statement of its own, planned for that filter (generic
plans, as the gateway's store makes them, would give one plan for both)."""

OF_EXECUTION = f"""
    SELECT {SUMS} FROM stage_runs r WHERE r.execution_id = $1 AND r.usage IS NOT NULL
"""


class UsageSums(msgspec.Struct, frozen=True, kw_only=True):
    """Stage runs' usage together: each field summed over the runs that have it (the peak
    memory is the largest), None when none has it; how many IMPLEMENT rounds and
    containers they were."""

    tokens_sent: int | None = None
    tokens_received: int | None = None
    cost: float | None = None
    cpu_seconds: float | None = None
    peak_memory_bytes: int | None = None
    wall_seconds: float | None = None
    implement_rounds: int = 0
    containers: int = 0


class DayUsage(msgspec.Struct, frozen=True, kw_only=True):
    """One project's usage on one UTC day (the stage runs that finished that day)."""

    project_id: str
    day: date
    sums: UsageSums


def _sums(row: Mapping[str, Any]) -> UsageSums:
    return msgspec.convert({name: row[name] for name in UsageSums.__struct_fields__},
                           UsageSums)


FIELDS = ("tokensSent", "tokensReceived", "cost", "cpuSeconds", "peakMemoryBytes",
          "wallSeconds")
"""The shared usage object's fields (CONTRACTS.md; the stored object adds ``containers``)."""
PEAK = "peakMemoryBytes"
"""Combined as the largest; every other field is summed."""


def number(value: Any) -> int | float | None:
    """A usage field's value when it is a number (a bool or a string is none)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


def combine(usages: Iterable[Mapping[str, Any] | None]) -> dict[str, Any]:
    """Several usage objects as one, as ``SUMS`` adds them up in SQL: each field summed
    over those that have it as a number (the peak is the largest), None when none has it.

    The one place usage is added up: the execution detail's totals
    (``pipeline.detail``), the container and report sums (``pipeline.usage``, which
    rounds for display) and the memory store's ``sum_runs`` all call it."""
    total: dict[str, Any] = dict.fromkeys(FIELDS)
    for usage in usages:
        for name in FIELDS:
            value = number((usage or {}).get(name))
            if value is None:
                continue
            seen = total[name]
            total[name] = value if seen is None else (
                max(seen, value) if name == PEAK else seen + value)
    return total


_KEYS = {"tokens_sent": "tokensSent", "tokens_received": "tokensReceived", "cost": "cost",
         "cpu_seconds": "cpuSeconds", "peak_memory_bytes": PEAK, "wall_seconds": "wallSeconds"}


def sum_runs(runs: Iterable[tuple[str, Mapping[str, Any]]]) -> UsageSums:
    """What the SQL computes, over ``(stage, usage object)`` pairs (the memory store's):
    the usage ``combine``d, with the IMPLEMENT rounds and containers counted."""
    runs = list(runs)
    total = combine(usage for _, usage in runs)
    return msgspec.convert({
        **{field: total[key] for field, key in _KEYS.items()},
        "implement_rounds": sum(stage == "IMPLEMENT" for stage, _ in runs),
        "containers": sum(int(number(usage.get("containers")) or 0) for _, usage in runs),
    }, UsageSums)


class PgUsage:
    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def daily(self, customer_id: str, start: datetime, stop: datetime,
                    project_id: str | None = None) -> list[DayUsage]:
        """Per project (by id) and UTC day (oldest first): the usage of the customer's
        stage runs that finished in ``[start, stop)`` (only ``project_id``'s when given)."""
        rows = await (self.conn.fetch(DAILY, customer_id, start, stop) if project_id is None
                      else self.conn.fetch(DAILY_OF_PROJECT, customer_id, start, stop,
                                           project_id))
        return [DayUsage(project_id=r["project_id"], day=r["day"], sums=_sums(r)) for r in rows]

    async def of_execution(self, execution_id: uuid.UUID) -> UsageSums:
        """The execution's usage so far: its stage runs that finished."""
        return _sums(await self.conn.fetchrow(OF_EXECUTION, execution_id))
