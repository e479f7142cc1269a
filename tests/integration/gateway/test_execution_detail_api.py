"""``GET /api/devteam/executions/{executionId}`` on the app with its real database: who may
see an execution, and what its detail says (from stage_runs, the event's task summaries
and the error records)."""

from __future__ import annotations

import uuid

from tests.integration.gateway.conftest import PROJECT, add_project, bearer, set_status, start
from tests.support.detail import SECRET, finish_two_rounds, stage_run

from pipeline.db import Store

DETAIL = "/api/devteam/executions"
AUTOMATION = "/api/devteam/automation"
STATUS = f"{AUTOMATION}/status"


async def _finished_execution(store: Store) -> uuid.UUID:
    execution = await start(store)
    await finish_two_rounds(store, execution)
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
    await stage_run(store, execution, "1.1", "PREP")
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


async def test_a_developer_of_the_project_sees_and_controls_a_colleagues_execution(
        client, alice, project, store, token_for) -> None:
    # Given alice's running execution, and bob, another developer of acme
    execution = await start(store)
    await set_status(store, PROJECT, "running")
    bob = bearer(token_for("bob", ["acme/*"]))
    # the project's status shows him that execution
    status = await client.get(f"{STATUS}/{PROJECT}", headers=bob)
    assert status.status_code == 200 and status.json()["executionId"] == str(execution)
    # When he asks for its detail, he gets it, offering pause and stop
    r = await client.get(f"{DETAIL}/{execution}", headers=bob)
    assert r.status_code == 200, r.text
    assert r.json()["userId"] == "alice"
    assert r.json()["actions"] == {"pause": True, "resume": False, "stop": True}
    # and pausing it as offered works
    paused = await client.post(f"{AUTOMATION}/pause/{PROJECT}", headers=bob)
    assert paused.status_code == 200, paused.text
    assert paused.json()["executionId"] == str(execution)
    # now the detail offers resume and stop, and another pause is refused as it says
    after = (await client.get(f"{DETAIL}/{execution}", headers=bob)).json()
    assert after["status"] == "paused"
    assert after["actions"] == {"pause": False, "resume": True, "stop": True}
    assert (await client.post(f"{AUTOMATION}/pause/{PROJECT}", headers=bob)).status_code == 409


async def test_actions_say_what_the_control_endpoints_accept(client, alice, project, store,
                                                             token_for) -> None:
    # Given alice's execution, for each status and each token that may read it
    execution = await start(store)
    tokens = {
        "alice": alice,
        "bob (developer of acme)": bearer(token_for("bob", ["acme/*"])),
        "carl (developer of acme/web)": bearer(token_for("carl", [PROJECT])),
        "maria (manager)": bearer(token_for("maria", ["acme/*"], role="manager")),
        "root (admin)": bearer(token_for("root", [], role="admin")),
    }
    offered: dict[str, set[tuple[str, str]]] = {}
    for status in ("running", "paused", "stopping", "completed"):
        for who, headers in tokens.items():
            for action in ("pause", "resume", "stop"):
                await set_status(store, PROJECT, status)
                detail = await client.get(f"{DETAIL}/{execution}", headers=headers)
                assert detail.status_code == 200, (who, detail.text)
                allowed = detail.json()["actions"][action]
                # Then the POST succeeds exactly when the detail offered it
                r = await client.post(f"{AUTOMATION}/{action}/{PROJECT}", headers=headers)
                assert (r.status_code == 200) == allowed, (who, status, action, r.text)
                if allowed:
                    offered.setdefault(who, set()).add((status, action))
    # (and what is offered is the transition table, to everyone but the manager)
    table = {("running", "pause"), ("running", "stop"), ("paused", "resume"),
             ("paused", "stop")}
    assert offered == {who: table for who in tokens if who != "maria (manager)"}


async def test_who_may_see_an_execution(client, alice, project, store, token_for,
                                        sample) -> None:
    # Given alice's execution in acme/web, and another customer's project
    execution = await start(store)
    await add_project(store, "globex/app", sample.url)
    other_customers = await start(store, "globex/app", user="gina")
    # whoever may read the project's status sees it: another developer of acme (by the
    # customer or by the project), a manager of acme and an admin
    bob = bearer(token_for("bob", ["acme/*"]))
    carl = bearer(token_for("carl", [PROJECT]))
    manager = bearer(token_for("maria", ["acme/*"], role="manager"))
    admin = bearer(token_for("root", [], role="admin"))
    for headers in (bob, carl, manager, admin):
        r = await client.get(f"{DETAIL}/{execution}", headers=headers)
        assert r.status_code == 200 and r.json()["executionId"] == str(execution)
    # a developer of another acme project reads neither the status nor the detail
    dora = bearer(token_for("dora", ["acme/other"]))
    assert (await client.get(f"{STATUS}/{PROJECT}", headers=dora)).status_code == 403
    assert (await client.get(f"{DETAIL}/{execution}", headers=dora)).status_code == 403
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
