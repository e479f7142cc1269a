"""The event API, the automation lifecycle, error records, execution lists and health,
each for success and its documented errors."""

from __future__ import annotations

import re
import uuid

from sqlalchemy import text
from tests.integration.gateway.conftest import PROJECT, audit, rows, set_status, start

from pipeline.db import Store
from runner.settings import get_settings, reset_settings_cache

AUTO = "/api/devteam/automation"
EVENT = {"workflow_type": "DEVTEAM_AUTOMATION", "data": {"projectId": PROJECT}}
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


# ----------------------------------------------------------------------------- events
async def test_an_event_is_stored_with_its_outbox_row_and_read_back(
    client, project, alice, store
) -> None:
    body = {**EVENT, "data": {"projectId": PROJECT, "task": {"id": "1.1", "title": "Add"},
                              "options": {"stopPoint": "1.2"}}}
    r = await client.post("/events", json=body, headers=alice)
    assert r.status_code == 202, r.text
    accepted = r.json()
    assert accepted["status"] == "accepted" and set(accepted) == {
        "event_id", "task_id", "status", "correlationId"}
    outbox = await rows(store, "SELECT id, execution_id FROM outbox")
    assert [str(o["id"]) for o in outbox] == [accepted["task_id"]]
    record = await client.get(f"/events/{accepted['event_id']}", headers=alice)
    assert record.status_code == 200
    stored = record.json()
    assert stored["workflow_type"] == "DEVTEAM_AUTOMATION"
    assert stored["data"]["task"]["id"] == "1.1"
    assert stored["task_context"]["metadata"]["correlationId"] == accepted["correlationId"]
    assert ISO.match(stored["created_at"])
    assert stored["executionId"] == str(outbox[0]["execution_id"])


async def test_event_errors(client, project, alice, store) -> None:
    unknown = await client.post("/events", headers=alice, json={
        **EVENT, "data": {"projectId": "acme/nope"}})
    assert unknown.status_code == 404
    await start(store)
    busy = await client.post("/events", json=EVENT, headers=alice)
    assert busy.status_code == 409 and busy.json()["currentStatus"] == "initializing"
    missing = await client.get(f"/events/{uuid.uuid4()}", headers=alice)
    assert missing.status_code == 404
    not_a_uuid = await client.get("/events/42", headers=alice)
    assert not_a_uuid.status_code in (400, 404)


# -------------------------------------------------------------------------- automation
async def test_initialize_registers_the_project_and_starts(client, alice, sample, store) -> None:
    r = await client.post(f"{AUTO}/initialize", headers=alice, json={
        "projectId": "acme/new", "repositoryUrl": sample.url, "stopPoint": "1.2"})
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "initializing"
    project = (await rows(store, "SELECT repository_url FROM projects "
                                 "WHERE project_id = 'acme/new'"))[0]
    assert project["repository_url"] == sample.url
    entry = (await audit(store, "execution.start"))[0]
    assert (entry["user_id"], entry["project_id"]) == ("alice", "acme/new")
    status = (await client.get(f"{AUTO}/status/acme/new", headers=alice)).json()
    assert status["executionId"] == r.json()["executionId"]
    assert (status["status"], status["stopPoint"], status["customerId"]) == (
        "initializing", "1.2", "acme")
    assert ISO.match(status["startedAt"])


async def test_initialize_errors(client, alice, project, store) -> None:
    no_repo = await client.post(f"{AUTO}/initialize", json={"projectId": "acme/nope"},
                                headers=alice)
    assert no_repo.status_code == 404 and "repositoryUrl" in no_repo.json()["detail"]
    await start(store)
    busy = await client.post(f"{AUTO}/initialize", json={"projectId": PROJECT}, headers=alice)
    assert busy.status_code == 409
    bad = await client.post(f"{AUTO}/initialize", headers=alice,
                            json={"projectId": PROJECT, "repositoryUrl": "nope"})
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "repositoryUrl"


async def test_status_of_a_project_that_never_ran_is_404(client, alice, project) -> None:
    assert (await client.get(f"{AUTO}/status/{PROJECT}", headers=alice)).status_code == 404
    assert (await client.get(f"{AUTO}/status/not-a-project", headers=alice)).status_code == 400


async def test_pause_resume_stop_follow_the_transition_table(
    client, alice, project, store
) -> None:
    await start(store)
    await set_status(store, PROJECT, "running")
    paused = await client.post(f"{AUTO}/pause/{PROJECT}", headers=alice)
    assert paused.status_code == 200, paused.text
    assert (paused.json()["previousStatus"], paused.json()["status"]) == ("running", "paused")
    status = (await client.get(f"{AUTO}/status/acme%2Fweb", headers=alice)).json()
    assert status["pauseReason"] == "user"
    again = await client.post(f"{AUTO}/pause/{PROJECT}", headers=alice)
    assert again.status_code == 409
    assert again.json()["currentStatus"] == "paused"
    assert set(again.json()["validTransitions"]) == {"resume", "stop"}
    resumed = await client.post(f"{AUTO}/resume/{PROJECT}", headers=alice)
    assert resumed.json()["status"] == "running"
    stopped = await client.post(f"{AUTO}/stop/{PROJECT}", headers=alice)
    assert stopped.json()["status"] == "stopping"
    actions = [a["action"] for a in await rows(store, "SELECT action FROM audit_log ORDER BY id")]
    assert actions == ["execution.start", "execution.pause", "execution.resume",
                       "execution.stop"]


async def test_transitions_of_a_project_that_never_ran_are_404(client, alice, project) -> None:
    for action in ("pause", "resume", "stop"):
        r = await client.post(f"{AUTO}/{action}/{PROJECT}", headers=alice)
        assert r.status_code == 404, action


async def test_resume_of_a_running_execution_is_409(client, alice, project, store) -> None:
    await start(store)
    await set_status(store, PROJECT, "running")
    r = await client.post(f"{AUTO}/resume/{PROJECT}", headers=alice)
    assert r.status_code == 409 and r.json()["currentStatus"] == "running"


# ------------------------------------------------------------------- errors and lists
async def test_an_error_record_is_shown_redacted(client, alice, project, store) -> None:
    execution = await start(store)
    error_id = uuid.uuid4()
    token = "ghp_" + "Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0FeDcBa"
    async with store.transaction() as session:
        await session.execute(
            text("INSERT INTO errors (id, execution_id, task_id, stage, classification, "
                 "message, details) VALUES (:id, :e, '1.1', 'PREP', 'config', :m, "
                 "CAST(:d AS jsonb))"),
            {"id": error_id, "e": execution, "m": f"clone failed with {token}",
             "d": f'{{"stderr": "token {token}"}}'},
        )
    r = await client.get(f"/api/devteam/errors/{execution}/{error_id}", headers=alice)
    assert r.status_code == 200, r.text
    assert r.json()["classification"] == "config" and r.json()["attempts"] == 1
    assert token not in r.text
    other = await client.get(f"/api/devteam/errors/{uuid.uuid4()}/{error_id}", headers=alice)
    assert other.status_code == 404


async def test_active_and_history_lists(client, alice, project, store) -> None:
    first = await start(store)
    await set_status(store, PROJECT, "completed")
    second = await start(store)
    active = await client.get("/api/devteam/executions/active/alice", headers=alice)
    history = await client.get("/api/devteam/executions/history/alice", headers=alice)
    assert [e["executionId"] for e in active.json()] == [str(second)]
    assert [e["executionId"] for e in history.json()] == [str(second), str(first)]
    limited = await client.get("/api/devteam/executions/history/alice?limit=1", headers=alice)
    assert len(limited.json()) == 1
    for bad in ("0", "501", "x"):
        r = await client.get(f"/api/devteam/executions/history/alice?limit={bad}",
                             headers=alice)
        assert r.status_code == 400 and r.json()["errors"][0]["field"] == "limit"


# ----------------------------------------------------------------------------- health
async def test_health_checks_every_dependency(client, alice) -> None:
    r = await client.get("/health", headers=alice)
    body = r.json()
    assert set(body["checks"]) == {"postgres", "redis", "docker", "git", "aider", "filesystem",
                                   "sandboxImage"}
    assert body["checks"]["postgres"]["ok"] is True
    assert r.status_code == 200 and body["status"] in ("ok", "degraded")


async def test_health_is_503_down_and_writes_503_when_postgres_is_gone(
    client, alice, monkeypatch
) -> None:
    # Given the gateway's database going away after start-up
    gone = get_settings().database.url.rsplit("@", 1)[0] + "@127.0.0.1:1/none"
    monkeypatch.setenv("DEVTEAM_DATABASE_URL", gone)
    reset_settings_cache()
    client.app.state.store = Store.from_settings(get_settings())
    # When health is asked and an event is posted
    r = await client.get("/health", headers=alice)
    events = await client.post("/events", json=EVENT, headers=alice)
    # Then health is down (503) and the write is a 503 to retry, without driver details
    assert r.status_code == 503 and r.json()["status"] == "down"
    assert r.json()["checks"]["postgres"]["ok"] is False
    assert events.status_code == 503 and events.headers["retry-after"]
    assert "127.0.0.1:1" not in events.text and "asyncpg" not in events.text.lower()


async def test_an_unexpected_failure_is_a_bare_500(client, alice, monkeypatch) -> None:
    from pipeline import projects

    async def broken(*_args, **_kwargs):
        raise RuntimeError("SELECT secret FROM vault WHERE token = 'sk-live-123'")

    monkeypatch.setattr(projects, "next_task", broken)
    r = await client.get("/tasks/next?projectId=acme/web", headers=alice)
    assert r.status_code == 500
    assert r.headers["content-type"] == "application/problem+json"
    assert "SELECT" not in r.text and "sk-live" not in r.text and "Traceback" not in r.text
    assert r.json()["correlationId"] == r.headers["x-correlation-id"]
