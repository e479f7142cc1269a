"""``GET /api/devteam/usage/{customerId}``: what a customer's executions consumed — the
model's tokens and cost, the sandbox's CPU seconds, peak memory and wall time — in
total, per project and per UTC day.

Who may read it: an admin, and a manager of the customer. A manager granted the whole
customer (``customer/*``) sees every project; one granted some of its projects sees only
those. Anyone else gets 403 (a developer too: usage is money, not code), checked before
the query is looked at, so a 403 says nothing about the customer.

``from`` and ``to`` are UTC days ``YYYY-MM-DD``, inclusive (``to`` defaults to today,
``from`` to 29 days before ``to``), at most 366 days apart; a stage run counts on the day
it finished. ``projectId`` narrows the report to one project of the customer.

A parameter that is malformed on its own (not a date, not ``customer/project``) is a 400,
as the OpenAPI document says (``format: date``, the project pattern); parameters that are
each well-formed but contradict each other (``from`` after ``to``, more than 366 days, a
project of another customer) are a 422 naming the field: no parameter schema can state
them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get
from litestar.params import PathParameter, QueryParameter

from gateway.auth import Principal, is_project_id
from gateway.http import docs, principal_of, respond, store_of
from gateway.problems import Problem
from gateway.schemas import END, PROJECT_PATTERN, UsageTotals
from pipeline import usage


class UsageDay(UsageTotals):
    date: str
    """UTC day ``YYYY-MM-DD``."""


class UsageProject(msgspec.Struct, rename="camel", kw_only=True):
    project_id: str
    totals: UsageTotals
    days: list[UsageDay]
    """Oldest first; days without usage are left out."""


class UsageReport(msgspec.Struct, rename="camel", kw_only=True):
    customer_id: str
    from_: str = msgspec.field(name="from")
    to: str
    totals: UsageTotals
    projects: list[UsageProject]
    """By project id; projects without usage in the range are left out."""


_TOTALS = {"tokensSent": 8420, "tokensReceived": 776, "cost": 0.0246, "cpuSeconds": 6.4,
           "peakMemoryBytes": 73400320, "wallSeconds": 23.0, "implementRounds": 2,
           "containers": 3}
EXAMPLE = {
    "customerId": "customer-123", "from": "2026-01-01", "to": "2026-01-31",
    "totals": _TOTALS,
    "projects": [{"projectId": "customer-123/project-abc", "totals": _TOTALS,
                  "days": [{"date": "2026-01-02", **_TOTALS}]}],
}

CustomerId = Annotated[str, PathParameter(pattern=r"^[A-Za-z0-9_-]{1,100}" + END,
                                          max_length=100)]
_DAY = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}" + END


def scope(principal: Principal, customer_id: str) -> list[str] | None:
    """The projects of ``customer_id`` whose usage ``principal`` may read (None: all of
    them); 403 for anyone but an admin or a manager of the customer."""
    if principal.is_admin:
        return None
    if principal.role != "manager":
        raise Problem(403, f"role '{principal.role}' may not read usage; managers and admins "
                           "may")
    if customer_id in principal.customers:
        return None
    own = [p for p in principal.projects if p.split("/", 1)[0] == customer_id]
    if not own:
        raise Problem(403, "this token does not grant access to that customer")
    return own


def _bad(field: str, message: str, status: int = 400) -> Problem:
    return Problem(status, message, errors=[{"field": field, "message": message}])


@get(
    "/api/devteam/usage/{customer_id:str}",
    summary="A customer's usage (tokens, cost, CPU, memory, wall time) per project and day",
    responses=docs(200, UsageReport, EXAMPLE, 422),
    tags=["usage"],
)
async def usage_report(
    request: Request[Any, Any, Any],
    customer_id: CustomerId,
    start: Annotated[str | None, QueryParameter(
        name="from", description="first UTC day YYYY-MM-DD (inclusive)", pattern=_DAY,
        max_length=10, format="date")] = None,
    end: Annotated[str | None, QueryParameter(
        name="to", description="last UTC day YYYY-MM-DD (inclusive)", pattern=_DAY,
        max_length=10, format="date")] = None,
    project_id: Annotated[str | None, QueryParameter(
        name="projectId", description="one project of the customer (customer/project)",
        pattern=PROJECT_PATTERN, max_length=200)] = None,
) -> Response[bytes]:
    allowed = scope(principal_of(request), customer_id)
    try:
        first, last = usage.parse_range(start, end, datetime.now(UTC).date())
    except usage.RangeError as exc:
        raise _bad(exc.field, str(exc), 400 if exc.malformed else 422) from None
    if project_id is not None:
        if not is_project_id(project_id):
            raise _bad("projectId", "projectId must be customer/project")
        if project_id.split("/", 1)[0] != customer_id:
            raise _bad("projectId", f"projectId must be a project of {customer_id} "
                                    f"({customer_id}/<project>)", 422)
        if allowed is not None and project_id not in allowed:
            raise Problem(403, "this token does not grant access to that project")
    begin, stop = usage.bounds(first, last)
    async with store_of(request).snapshot() as tx:
        days = await tx.usage.daily(customer_id, begin, stop, project_id)
    if allowed is not None:
        days = [d for d in days if d.project_id in allowed]
    return respond(msgspec.convert(usage.report(customer_id, first, last, days), UsageReport))


handlers = [usage_report]
