"""``Idempotency-Key``: replay byte for byte, 422 for another body, 409 while the first is
in flight, a new run after expiry, and the sweeper."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from tests.integration.gateway.conftest import PROJECT, add_project, bearer, rows, start

import gateway.app
from gateway import idempotency
from gateway.app import create_app
from runner.settings import get_settings

EVENT = {"workflow_type": "DEVTEAM_AUTOMATION", "data": {"projectId": PROJECT}}


def keyed(headers: dict[str, str], key: str) -> dict[str, str]:
    return {**headers, "Idempotency-Key": key}


async def test_a_repeat_is_replayed_byte_for_byte(client, project, alice, store) -> None:
    first = await client.post("/events", json=EVENT, headers=keyed(alice, "k-1"))
    again = await client.post("/events", json=EVENT, headers=keyed(alice, "k-1"))
    assert first.status_code == again.status_code == 202
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert again.headers["content-type"] == first.headers["content-type"]
    assert len(await rows(store, "SELECT id FROM events")) == 1


async def test_a_repeated_task_edit_commits_once(client, project, alice, sample) -> None:
    import pygit2

    url = f"/api/devteam/repository/tasks/{PROJECT}/2.1"
    first = await client.put(url, json={"title": "Powers"}, headers=keyed(alice, "edit-1"))
    tip = pygit2.Repository(str(sample.remote)).references["refs/heads/main"].target
    again = await client.put(url, json={"title": "Powers"}, headers=keyed(alice, "edit-1"))
    assert again.content == first.content and again.headers["idempotent-replayed"] == "true"
    assert pygit2.Repository(str(sample.remote)).references["refs/heads/main"].target == tip


async def test_a_problem_is_replayed_too(client, project, alice) -> None:
    first = await client.post(f"/api/devteam/automation/pause/{PROJECT}",
                              headers=keyed(alice, "p-1"))
    again = await client.post(f"/api/devteam/automation/pause/{PROJECT}",
                              headers=keyed(alice, "p-1"))
    assert first.status_code == again.status_code == 404
    assert again.content == first.content and again.headers["idempotent-replayed"] == "true"


async def test_the_same_key_with_another_body_is_422(client, project, alice) -> None:
    await client.post("/events", json=EVENT, headers=keyed(alice, "k-2"))
    other = {**EVENT, "data": {"projectId": PROJECT, "options": {"stopPoint": "1.2"}}}
    r = await client.post("/events", json=other, headers=keyed(alice, "k-2"))
    assert r.status_code == 422
    assert r.json()["type"].endswith("idempotency-key-reused")


async def test_the_same_key_on_another_endpoint_is_422(client, project, alice) -> None:
    await client.post(f"/api/devteam/automation/pause/{PROJECT}", headers=keyed(alice, "k-3"))
    r = await client.post(f"/api/devteam/automation/stop/{PROJECT}", headers=keyed(alice, "k-3"))
    assert r.status_code == 422


async def test_keys_belong_to_their_user(client, project, alice, token_for) -> None:
    bob = bearer(token_for("bob", ["acme/*"]))
    a = await client.post("/api/devteam/tasks/inject", headers=keyed(alice, "same"), json={
        "projectId": PROJECT, "injectionType": "priority", "reason": "r", "task": {"title": "A"}})
    b = await client.post("/api/devteam/tasks/inject", headers=keyed(bob, "same"), json={
        "projectId": PROJECT, "injectionType": "priority", "reason": "r", "task": {"title": "A"}})
    assert a.status_code == b.status_code == 201
    assert a.json()["taskId"] != b.json()["taskId"]
    assert "idempotent-replayed" not in b.headers


async def test_a_malformed_key_is_400(client, project, alice) -> None:
    for key in ("", "with space", "x" * 256, "tab\tkey"):
        r = await client.post("/events", json=EVENT, headers=keyed(alice, key))
        assert r.status_code == 400, key
        assert r.json()["errors"][0]["field"] == "Idempotency-Key"


async def test_an_expired_key_is_accepted_anew(client, project, alice, store) -> None:
    first = await client.post("/events", json=EVENT, headers=keyed(alice, "k-4"))
    async with store.transaction() as session:
        await session.execute(text("UPDATE executions SET status = 'completed'"))
        await session.execute(text("UPDATE idempotency_keys SET expires_at = now() - "
                                   "interval '1 minute' WHERE key = 'k-4'"))
    other = {**EVENT, "data": {"projectId": PROJECT, "options": {"stopPoint": "1.2"}}}
    second = await client.post("/events", json=other, headers=keyed(alice, "k-4"))
    assert second.status_code == 202, second.text
    assert "idempotent-replayed" not in second.headers
    assert second.json()["event_id"] != first.json()["event_id"]
    assert len(await rows(store, "SELECT id FROM events")) == 2


async def test_the_body_option_idempotency_key_is_honoured(client, project, alice, store) -> None:
    body = {**EVENT, "data": {"projectId": PROJECT, "options": {"idempotencyKey": "opt-1"}}}
    first = await client.post("/events", json=body, headers=alice)
    again = await client.post("/events", json=body, headers=alice)
    assert first.status_code == again.status_code == 202
    assert again.json()["event_id"] == first.json()["event_id"]
    assert len(await rows(store, "SELECT id FROM events")) == 1


async def test_a_duplicate_while_the_first_is_in_flight_is_409(
    procs, store, sample, alice
) -> None:
    # Given a real gateway, and the project's row locked so the first request waits
    await add_project(store, PROJECT, sample.url)
    gateway_proc = procs.gateway()
    headers = keyed(alice, "k-live")
    async with httpx.AsyncClient(base_url=gateway_proc.url, timeout=30) as http:
        async with store.transaction() as session:
            await session.execute(text("SELECT 1 FROM projects WHERE project_id = :p "
                                       "FOR UPDATE"), {"p": PROJECT})
            first = asyncio.create_task(http.post("/events", json=EVENT, headers=headers))
            await _until_in_flight(store, "k-live")
            # When the same request comes again while the first is still running
            duplicate = await http.post("/events", json=EVENT, headers=headers)
        done = await first
        replay = await http.post("/events", json=EVENT, headers=headers)
    # Then the duplicate is 409, the first completes, and later repeats replay it
    assert duplicate.status_code == 409, duplicate.text
    assert duplicate.json()["type"].endswith("idempotency-in-flight")
    assert duplicate.headers["retry-after"]
    assert done.status_code == 202
    assert replay.content == done.content and replay.headers["idempotent-replayed"] == "true"


async def _until_in_flight(store, key: str) -> None:
    for _ in range(600):
        found = await rows(store, "SELECT status FROM idempotency_keys WHERE key = :k", k=key)
        if found and found[0]["status"] == "in_flight":
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the first request never claimed its key")


async def _expire(store, user: str, key: str, *, past: bool) -> None:
    async with store.transaction() as session:
        await session.execute(
            text("INSERT INTO idempotency_keys (user_id, key, request_hash, status, "
                 "locked_until, expires_at) VALUES (:u, :k, 'h', 'completed', now(), "
                 "now() + CASE WHEN :past THEN interval '-1 hour' ELSE interval '1 hour' END)"),
            {"u": user, "k": key, "past": past},
        )


async def test_the_sweeper_deletes_expired_keys_only(store) -> None:
    await _expire(store, "alice", "old", past=True)
    await _expire(store, "alice", "fresh", past=False)
    assert await idempotency.sweep(store) == 1
    assert [r["key"] for r in await rows(store, "SELECT key FROM idempotency_keys")] == ["fresh"]


async def test_the_gateway_runs_the_sweeper(env, store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gateway.app, "SWEEP_SECONDS", 0.05)
    await _expire(store, "alice", "old", past=True)
    async with AsyncTestClient(create_app(get_settings()), base_url="http://gateway.local"):
        for _ in range(200):
            if not await rows(store, "SELECT key FROM idempotency_keys"):
                break
            await asyncio.sleep(0.05)
    assert await rows(store, "SELECT key FROM idempotency_keys") == []


async def test_a_second_event_for_a_busy_project_is_409_not_a_replay(
    client, project, alice, store
) -> None:
    await start(store)
    r = await client.post("/events", json=EVENT, headers=keyed(alice, "k-5"))
    assert r.status_code == 409
    assert r.json()["currentStatus"] == "initializing"
    assert r.json()["validTransitions"] == ["stop"]
