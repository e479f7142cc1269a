"""``GET /api/devteam/executions/{executionId}`` on the app with its real database: who may
see an execution, and what its detail says (from stage_runs, the event's task summaries
and the error records)."""

from __future__ import annotations

import json
import uuid

from sqlalchemy import text
from tests.integration.gateway.conftest import PROJECT, add_project, bearer, set_status, start

from pipeline.db import Store

DETAIL = "/api/devteam/executions"
SECRET = "ghp_" + "Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0FeDcBa"


async def _stage_run(store: Store, execution: uuid.UUID, task: str, stage: str, *,
                     attempt: int = 1, status: str = "succeeded", ms: int = 100,
                     usage: dict | None = None, result: dict | None = None) -> None:
    async with store.transaction() as session:
        await session.execute(
            text("INSERT INTO stage_runs (execution_id, task_id, stage, attempt, status, "
                 "duration_ms, usage, result, finished_at) VALUES (:e, :t, :s, :a, :st, :ms, "
                 "CAST(:u AS jsonb), CAST(:r AS jsonb), now())"),
            {"e": execution, "t": task, "s": stage, "a": attempt, "st": status, "ms": ms,
             "u": None if usage is None else json.dumps(usage),
             "r": None if result is None else json.dumps(result)},
        )


async def _finished_execution(store: Store) -> uuid.UUID:
    """A completed run of task 1.1 that took two rounds, as the pipeline records one."""
    execution = await start(store)
    await _stage_run(store, execution, "", "INIT", ms=40)
    await _stage_run(store, execution, "#1", "SELECT", ms=20)
    await _stage_run(store, execution, "1.1", "IMPLEMENT", ms=3000,
                     usage={"tokensSent": 1200, "tokensReceived": 80, "cost": 0.02,
                            "cpuSeconds": None, "peakMemoryBytes": None, "wallSeconds": 3.0})
    await _stage_run(store, execution, "1.1", "VERIFY", status="failed", ms=5000,
                     usage={"cpuSeconds": 1.5, "peakMemoryBytes": 50_000_000,
                            "wallSeconds": 5.0},
                     result={"results": {"tests": {"passed": False, "actual": "1 failed",
                                                   "required": "pass"}}})
    await _stage_run(store, execution, "1.1", "IMPLEMENT", attempt=2, ms=2000,
                     usage={"tokensSent": 900, "tokensReceived": 60, "cost": 0.01})
    await _stage_run(store, execution, "1.1", "VERIFY", attempt=2, ms=4000,
                     usage={"cpuSeconds": 1.0, "peakMemoryBytes": 70_000_000,
                            "wallSeconds": 4.0},
                     result={"results": {"tests": {"passed": True, "actual": "pass",
                                                   "required": "pass"},
                                         "coverage": {"passed": True, "actual": 92,
                                                      "required": 80}}})
    await _stage_run(store, execution, "1.1", "DONE", ms=10)
    await _stage_run(store, execution, "#2", "FINALIZE", ms=30)
    async with store.transaction() as session:
        await session.execute(
            text("UPDATE events SET task_context = CAST(:c AS jsonb) WHERE id = "
                 "(SELECT event_id FROM executions WHERE id = :e)"),
            {"e": execution, "c": json.dumps({"tasks": {"1.1": {
                "title": "Add and subtract", "status": "done",
                "branch": "task/1-1-add-and-subtract", "attempts": 2}}})},
        )
        await session.execute(
            text("INSERT INTO errors (id, execution_id, task_id, stage, classification, "
                 "message) VALUES (:id, :e, '1.1', 'VERIFY', 'verification', :m)"),
            {"id": uuid.uuid4(), "e": execution, "m": f"tests failed; push with {SECRET}"},
        )
        await session.execute(
            text("UPDATE executions SET status = 'completed', completed_tasks = 1, "
                 "total_tasks = 1, finished_at = now() WHERE id = :e"), {"e": execution})
    return execution


async def test_a_finished_execution_in_detail(client, alice, project, store) -> None:
    # Given a finished execution of alice's with two rounds and an error record
    execution = await _finished_execution(store)
    # When she asks for it
    r = await client.get(f"{DETAIL}/{execution}", headers=alice)
    # Then she sees its tasks, criteria, durations, usage, errors, and no action allowed
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["executionId"], body["projectId"], body["customerId"], body["userId"]) == (
        str(execution), PROJECT, "acme", "alice")
    assert body["status"] == "completed" and body["finishedAt"] and body["startedAt"]
    assert body["actions"] == {"pause": False, "resume": False, "stop": False}
    [task] = body["tasks"]
    assert (task["taskId"], task["title"], task["status"], task["branch"], task["attempts"]) == (
        "1.1", "Add and subtract", "done", "task/1-1-add-and-subtract", 2)
    assert task["criteria"] == [
        {"name": "tests", "required": "pass", "actual": "pass", "passed": True, "detail": None},
        {"name": "coverage", "required": 80, "actual": 92, "passed": True, "detail": None},
    ]
    assert {s["stage"]: (s["runs"], s["durationMs"]) for s in task["stages"]} == {
        "IMPLEMENT": (2, 5000), "VERIFY": (2, 9000), "DONE": (1, 10)}
    assert task["usage"]["tokensSent"] == 2100 and task["usage"]["tokensReceived"] == 140
    assert abs(task["usage"]["cost"] - 0.03) < 1e-9
    assert task["usage"]["peakMemoryBytes"] == 70_000_000  # the peak, not a sum
    assert task["usage"]["cpuSeconds"] == 2.5 and task["usage"]["wallSeconds"] == 12.0
    assert [s["stage"] for s in body["stages"]] == [
        "INIT", "SELECT", "IMPLEMENT", "VERIFY", "DONE", "FINALIZE"]
    assert body["usage"]["tokensSent"] == 2100
    [error] = body["errors"]
    assert (error["classification"], error["stage"], error["taskId"]) == (
        "verification", "VERIFY", "1.1")
    assert body["errorCount"] == 1
    assert SECRET not in r.text and "tests failed" in error["message"]  # redacted on the way


async def test_usage_is_null_where_no_stage_run_reported_it(client, alice, project,
                                                            store) -> None:
    execution = await start(store)
    await _stage_run(store, execution, "1.1", "PREP")
    body = (await client.get(f"{DETAIL}/{execution}", headers=alice)).json()
    assert body["tasks"][0]["usage"] == {
        "tokensSent": None, "tokensReceived": None, "cost": None, "cpuSeconds": None,
        "peakMemoryBytes": None, "wallSeconds": None}
    assert body["tasks"][0]["criteria"] == [] and body["errors"] == []


async def test_actions_follow_the_status_and_the_role(client, alice, project, store,
                                                      token_for) -> None:
    execution = await start(store)
    manager = bearer(token_for("maria", ["acme/*"], role="manager"))
    expected = {"running": {"pause": True, "resume": False, "stop": True},
                "paused": {"pause": False, "resume": True, "stop": True},
                "stopping": {"pause": False, "resume": False, "stop": False}}
    for status, allowed in expected.items():
        await set_status(store, PROJECT, status)
        mine = (await client.get(f"{DETAIL}/{execution}", headers=alice)).json()
        assert mine["actions"] == allowed, status
        # a manager reads it, and may do none of them
        read = (await client.get(f"{DETAIL}/{execution}", headers=manager)).json()
        assert read["actions"] == {"pause": False, "resume": False, "stop": False}


async def test_who_may_see_an_execution(client, alice, project, store, token_for,
                                        sample) -> None:
    # Given alice's execution in acme/web, and another customer's project
    execution = await start(store)
    await add_project(store, "globex/app", sample.url)
    other_customers = await start(store, "globex/app", user="gina")
    # another developer of acme does not see alice's run (as in the lists): 404
    bob = bearer(token_for("bob", ["acme/*"]))
    assert (await client.get(f"{DETAIL}/{execution}", headers=bob)).status_code == 404
    # a manager of acme and an admin do
    manager = bearer(token_for("maria", ["acme/*"], role="manager"))
    admin = bearer(token_for("root", [], role="admin"))
    for headers in (manager, admin):
        r = await client.get(f"{DETAIL}/{execution}", headers=headers)
        assert r.status_code == 200 and r.json()["executionId"] == str(execution)
    # a token without the project is 403, whatever the role
    for headers in (alice, manager):
        r = await client.get(f"{DETAIL}/{other_customers}", headers=headers)
        assert r.status_code == 403 and "globex" not in r.text
    # an unknown id is 404, a malformed one is refused, no token is 401
    assert (await client.get(f"{DETAIL}/{uuid.uuid4()}", headers=alice)).status_code == 404
    assert (await client.get(f"{DETAIL}/not-a-uuid", headers=alice)).status_code in (400, 404)
    assert (await client.get(f"{DETAIL}/{execution}")).status_code == 401


async def test_the_detail_is_documented_in_openapi(client) -> None:
    doc = (await client.get("/schema/openapi.json")).json()
    operation = doc["paths"]["/api/devteam/executions/{execution_id}"]["get"]
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    name = schema["$ref"].rsplit("/", 1)[1]
    properties = doc["components"]["schemas"][name]["properties"]
    assert {"tasks", "actions", "usage", "errors", "stages", "errorCount"} <= set(properties)
