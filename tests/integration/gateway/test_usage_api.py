"""``GET /api/devteam/usage/{customerId}`` on the app with its real database: who may read
a customer's usage, how the query is checked, and the per-project, per-day breakdown of
the stage runs' recorded usage."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from tests.integration.gateway.conftest import PROJECT, add_project, bearer, start

from pipeline.db import Store

USAGE = "/api/devteam/usage"
API = "acme/api"
DAY1 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DAY2 = datetime(2026, 3, 2, 23, 59, 59, tzinfo=UTC)
MODEL = {"tokensSent": 400, "tokensReceived": 120, "cost": 0.007, "cpuSeconds": None,
         "peakMemoryBytes": None, "wallSeconds": None, "containers": 0}


def _box(cpu: float, peak: int, wall: float, containers: int = 1) -> dict[str, Any]:
    return {"tokensSent": None, "tokensReceived": None, "cost": None, "cpuSeconds": cpu,
            "peakMemoryBytes": peak, "wallSeconds": wall, "containers": containers}


async def _run(store: Store, execution: uuid.UUID, stage: str, attempt: int,
               usage: dict[str, Any] | None, finished: datetime) -> None:
    async with store.transaction() as session:
        await session.execute(
            text("INSERT INTO stage_runs (execution_id, task_id, stage, attempt, status, "
                 "usage, finished_at) VALUES (:e, '1.1', :s, :a, 'succeeded', "
                 "CAST(:u AS jsonb), :f)"),
            {"e": execution, "s": stage, "a": attempt, "f": finished,
             "u": None if usage is None else json.dumps(usage)})


@pytest.fixture
async def recorded(store: Store, project: str) -> dict[str, uuid.UUID]:
    """acme/web ran on two days, acme/api on one; other/web (another customer) too."""
    await add_project(store, API, "file:///nowhere/api.git")
    await add_project(store, "other/web", "file:///nowhere/other.git")
    web = await start(store, PROJECT)
    api = await start(store, API)
    other = await start(store, "other/web", user="olga")
    await _run(store, web, "IMPLEMENT", 1, MODEL, DAY1)
    await _run(store, web, "VERIFY", 1, _box(1.5, 50_000_000, 5.0), DAY1)
    await _run(store, web, "IMPLEMENT", 2, {**MODEL, "cost": None}, DAY2)
    await _run(store, web, "VERIFY", 2, _box(0.5, 70_000_000, 4.0, containers=2), DAY2)
    await _run(store, web, "MERGE", 1, None, DAY2)
    await _run(store, api, "IMPLEMENT", 1, MODEL, DAY2)
    await _run(store, other, "IMPLEMENT", 1, {**MODEL, "tokensSent": 99_999}, DAY2)
    return {"web": web, "api": api, "other": other}


RANGE = {"from": "2026-03-01", "to": "2026-03-02"}


async def test_a_manager_of_the_customer_sees_totals_per_project_and_day(
    client, recorded, token_for
) -> None:
    manager = bearer(token_for("maria", ["acme/*"], role="manager"))
    r = await client.get(f"{USAGE}/acme", params=RANGE, headers=manager)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["customerId"], body["from"], body["to"]) == ("acme", "2026-03-01",
                                                              "2026-03-02")
    assert body["totals"] == {
        "tokensSent": 1200, "tokensReceived": 360, "cost": 0.014, "cpuSeconds": 2.0,
        "peakMemoryBytes": 70_000_000, "wallSeconds": 9.0, "implementRounds": 3,
        "containers": 3}
    assert [p["projectId"] for p in body["projects"]] == [API, PROJECT]
    web = body["projects"][1]
    assert web["totals"]["tokensSent"] == 800 and web["totals"]["implementRounds"] == 2
    assert web["days"] == [
        {"date": "2026-03-01", "tokensSent": 400, "tokensReceived": 120, "cost": 0.007,
         "cpuSeconds": 1.5, "peakMemoryBytes": 50_000_000, "wallSeconds": 5.0,
         "implementRounds": 1, "containers": 1},
        {"date": "2026-03-02", "tokensSent": 400, "tokensReceived": 120, "cost": None,
         "cpuSeconds": 0.5, "peakMemoryBytes": 70_000_000, "wallSeconds": 4.0,
         "implementRounds": 1, "containers": 2},
    ]
    # one day, one project
    r = await client.get(f"{USAGE}/acme", headers=manager,
                         params={"from": "2026-03-02", "to": "2026-03-02", "projectId": API})
    assert r.status_code == 200, r.text
    [api] = r.json()["projects"]
    assert api["projectId"] == API and [d["date"] for d in api["days"]] == ["2026-03-02"]
    assert r.json()["totals"]["tokensSent"] == 400


async def test_who_may_read_a_customers_usage(client, recorded, token_for) -> None:
    def get(token: str, customer: str = "acme", **params: str) -> Any:
        return client.get(f"{USAGE}/{customer}", params={**RANGE, **params},
                          headers=bearer(token))

    admin = token_for("root", [], role="admin")
    assert (await get(admin)).json()["totals"]["tokensSent"] == 1200
    assert (await get(admin, "other")).json()["totals"]["tokensSent"] == 99_999
    # another customer's manager, the customer's own developer: 403, nothing said
    for token in (token_for("olaf", ["other/*"], role="manager"),
                  token_for("alice", ["acme/*"], role="developer")):
        r = await get(token)
        assert r.status_code == 403, r.text
        said = r.json()
        said.pop("correlationId")  # random hex: it may hold "1200" by chance (it did once)
        assert "1200" not in str(said) and "acme/web" not in str(said)
    # a manager of one project sees that project only, and may not ask for another
    partial = token_for("pat", [API], role="manager")
    r = await get(partial)
    assert r.status_code == 200, r.text
    assert [p["projectId"] for p in r.json()["projects"]] == [API]
    assert r.json()["totals"]["tokensSent"] == 400
    assert (await get(partial, projectId=PROJECT)).status_code == 403
    # no token at all
    assert (await client.get(f"{USAGE}/acme", params=RANGE)).status_code == 401


@pytest.mark.parametrize(("params", "field", "status"), [
    ({"from": "2026-03-02", "to": "2026-03-01"}, "to", 422),
    ({"from": "2026-02-30", "to": "2026-03-01"}, "from", 400),
    ({"from": "2025-01-01", "to": "2026-03-01"}, "from", 422),
    ({"projectId": "other/web"}, "projectId", 422),
    ({"projectId": "acme"}, "projectId", 400),
])
async def test_a_bad_query_is_400_or_422_naming_the_field(client, recorded, token_for, params,
                                                          field, status) -> None:
    # 400: a parameter malformed on its own (the OpenAPI document says so); 422: each is
    # well-formed, together they contradict each other (no parameter schema can say it)
    admin = bearer(token_for("root", [], role="admin"))
    r = await client.get(f"{USAGE}/acme", params={**RANGE, **params}, headers=admin)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert [e["field"] for e in r.json()["errors"]] == [field]


@pytest.mark.parametrize("value", ["yesterday", "2026-3-1", "2026-03-01T00:00", "²⁰²⁶-03-01"])
async def test_a_malformed_date_is_refused(client, token_for, value) -> None:
    admin = bearer(token_for("root", [], role="admin"))
    r = await client.get(f"{USAGE}/acme", params={"from": value}, headers=admin)
    assert r.status_code == 400, r.text


async def test_a_malformed_customer_is_refused(client, token_for) -> None:
    admin = bearer(token_for("root", [], role="admin"))
    r = await client.get(f"{USAGE}/a%20b", headers=admin)
    assert r.status_code in (400, 404), r.text


async def test_the_default_range_is_the_last_thirty_days(client, project, token_for) -> None:
    admin = bearer(token_for("root", [], role="admin"))
    r = await client.get(f"{USAGE}/acme", headers=admin)
    assert r.status_code == 200, r.text
    today = datetime.now(UTC).date()
    body = r.json()
    assert date.fromisoformat(body["to"]) - date.fromisoformat(body["from"]) == timedelta(
        days=29)
    assert date.fromisoformat(body["to"]) in (today, today - timedelta(days=1))
    assert body["projects"] == [] and body["totals"]["implementRounds"] == 0


async def test_the_status_shows_the_executions_usage_so_far(client, recorded, alice) -> None:
    r = await client.get(f"/api/devteam/automation/status/{PROJECT}", headers=alice)
    assert r.status_code == 200, r.text
    assert r.json()["usage"] == {
        "tokensSent": 800, "tokensReceived": 240, "cost": 0.007, "cpuSeconds": 2.0,
        "peakMemoryBytes": 70_000_000, "wallSeconds": 9.0, "implementRounds": 2,
        "containers": 3}


@pytest.mark.parametrize("params", [{"to": "9999-12-31"}, {"from": "0001-01-01"},
                                    {"to": "0001-01-01"}])
async def test_days_at_the_ends_of_the_calendar_are_refused_not_a_500(client, token_for,
                                                                      params) -> None:
    # 9999-12-31 has no next day and 0001-01-01 no 29 days before it: both would overflow
    admin = bearer(token_for("root", [], role="admin"))
    r = await client.get(f"{USAGE}/acme", params=params, headers=admin)
    assert r.status_code == 422, r.text
    assert "between 1970-01-01 and 9998-12-31" in r.json()["detail"]
