"""Usage per stage run, customer and project: what the model and the sandbox consumed.

The usage object (CONTRACTS.md) stored in ``stage_runs.usage``::

    {"tokensSent", "tokensReceived", "cost", "cpuSeconds", "peakMemoryBytes",
     "wallSeconds", "containers"}

An IMPLEMENT round records the tokens and cost Aider printed (``cost`` null when the model
has no price); a stage that ran containers (SETUP, VERIFY, a re-setup inside VERIFY)
records their CPU seconds and wall time summed, their peak memory as the largest, and
how many there were. Fields a run did not measure are null.

The sums are named queries of the store (``pipeline.store.usage``); everything here is
pure and unit-tested.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from pipeline.metrics import aider_usage
from pipeline.store.usage import FIELDS, PEAK, DayUsage, UsageSums, combine, number
from runner.sandbox.usage import ContainerUsage

MAX_RANGE_DAYS = 366
"""The longest report ``GET /usage/{customerId}`` gives (``from`` to ``to`` inclusive)."""
DEFAULT_RANGE_DAYS = 30
"""The report's length when ``from`` is not given."""
EARLIEST, LATEST = date(1970, 1, 1), date(9998, 12, 31)
"""The days a report may name (so that the range and its bounds are always dates)."""


class RangeError(ValueError):
    """A usage report's dates are malformed, reversed or too far apart: ``field`` names the
    parameter at fault (``from`` or ``to``), the message says why; ``malformed`` when the
    parameter is wrong on its own (not a date), not only together with the other."""

    def __init__(self, field: str, message: str, *, malformed: bool = False) -> None:
        super().__init__(message)
        self.field = field
        self.malformed = malformed


def empty() -> dict[str, Any]:
    return dict.fromkeys(FIELDS)


def round_usage(usage_lines: list[str]) -> dict[str, Any]:
    """An IMPLEMENT round's usage from Aider's own usage lines (the artifact's
    ``outputs.usage_lines``, every one it printed, never the output's tail): its ``Tokens:
    … sent, … received. Cost: $… message`` lines summed (``metrics.aider_usage``); all null
    when it printed none (the round never reached the model)."""
    usage = empty()
    parsed = aider_usage("\n".join(usage_lines))
    if parsed is not None:
        usage["tokensSent"], usage["tokensReceived"], usage["cost"] = parsed
    usage["containers"] = 0
    return usage


def containers_usage(containers: Iterable[ContainerUsage | None]) -> dict[str, Any] | None:
    """The usage of a stage's containers together (a None is a container whose stats could
    not be read: counted, measured as nothing); None when it ran none."""
    usage = empty()
    count = 0
    for one in containers:
        count += 1
        if one is None:
            continue
        usage = rounded(combine([usage, {"cpuSeconds": one.cpu_seconds,
                                         PEAK: one.peak_memory_bytes,
                                         "wallSeconds": one.wall_seconds}]))
    if count == 0:
        return None
    usage["containers"] = count
    return usage


def rounded(usage: Mapping[str, Any]) -> dict[str, Any]:
    """A usage object for display: ``cost`` to 6 places, the seconds to 3."""
    total = dict(usage)
    if total["cost"] is not None:
        total["cost"] = round(total["cost"], 6)
    for name in ("cpuSeconds", "wallSeconds"):
        if total[name] is not None:
            total[name] = round(total[name], 3)
    return total


# --------------------------------------------------------------------------- the report
def parse_range(start: str | None, end: str | None, today: date) -> tuple[date, date]:
    """``from`` and ``to`` of a usage report (ISO ``YYYY-MM-DD``, inclusive, UTC days):
    ``to`` defaults to ``today``, ``from`` to ``DEFAULT_RANGE_DAYS`` days before ``to``.
    Raises :class:`RangeError` for a malformed date, ``from`` after ``to``, or more than
    ``MAX_RANGE_DAYS`` days."""
    last = _day("to", end) if end is not None else today
    first = _day("from", start) if start is not None else max(
        EARLIEST, last - timedelta(days=DEFAULT_RANGE_DAYS - 1))
    if first > last:
        raise RangeError("to", f"from ({first.isoformat()}) is after to ({last.isoformat()})")
    if (last - first).days + 1 > MAX_RANGE_DAYS:
        raise RangeError("from", f"from..to spans {(last - first).days + 1} days; at most "
                         f"{MAX_RANGE_DAYS} days per report")
    return first, last


def _day(name: str, value: str) -> date:
    if len(value) != 10 or not value.isascii():
        raise RangeError(name, f"{name} must be a date YYYY-MM-DD", malformed=True)
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise RangeError(name, f"{name} must be a date YYYY-MM-DD ({value!r} is not one)",
                         malformed=True) from None
    if not EARLIEST <= day <= LATEST:
        raise RangeError(name, f"{name} must be between {EARLIEST.isoformat()} and "
                               f"{LATEST.isoformat()}")
    return day


def view(sums: UsageSums) -> dict[str, Any]:
    """The usage object of summed runs (``cost`` to 6 places, seconds to 3), with
    ``implementRounds`` and ``containers``."""
    usage = rounded({
        "tokensSent": number(sums.tokens_sent), "tokensReceived": number(sums.tokens_received),
        "cost": number(sums.cost), "cpuSeconds": number(sums.cpu_seconds),
        PEAK: number(sums.peak_memory_bytes), "wallSeconds": number(sums.wall_seconds),
    })
    return {**usage, "implementRounds": sums.implement_rounds, "containers": sums.containers}


def _totals(days: Sequence[DayUsage]) -> dict[str, Any]:
    views = [view(d.sums) for d in days]
    return {**rounded(combine(views)), "implementRounds": sum(v["implementRounds"] for v in views),
            "containers": sum(v["containers"] for v in views)}


def report(customer_id: str, first: date, last: date,
           days: Sequence[DayUsage]) -> dict[str, Any]:
    """The body of ``GET /api/devteam/usage/{customerId}``: totals, then per project (by id)
    its totals and its days (oldest first; days without usage left out)."""
    projects: dict[str, list[DayUsage]] = {}
    for day in sorted(days, key=lambda d: (d.project_id, d.day)):
        projects.setdefault(day.project_id, []).append(day)
    return {
        "customerId": customer_id,
        "from": first.isoformat(),
        "to": last.isoformat(),
        "totals": _totals(days),
        "projects": [
            {
                "projectId": project_id,
                "totals": _totals(rows),
                "days": [{"date": d.day.isoformat(), **view(d.sums)} for d in rows],
            }
            for project_id, rows in projects.items()
        ],
    }


def bounds(first: date, last: date) -> tuple[datetime, datetime]:
    """``[start, stop)`` instants of the UTC days ``first`` to ``last``."""
    return (datetime.combine(first, time(), tzinfo=UTC),
            datetime.combine(last + timedelta(days=1), time(), tzinfo=UTC))


__all__ = [
    "FIELDS",
    "MAX_RANGE_DAYS",
    "RangeError",
    "bounds",
    "combine",
    "containers_usage",
    "parse_range",
    "report",
    "round_usage",
    "rounded",
    "view",
]
