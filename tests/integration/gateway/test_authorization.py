"""Who may do what: every endpoint × {no token, bad signature, expired, another customer's
project, a manager, the project's developer, an admin} gives exactly the expected status.

A 403 never says whether the project exists: it is checked before anything is looked
up, so the other customer gets 403 for ``acme/web`` and for a project that does not exist.
``/implement`` and ``/verify`` are asked for a branch that does not exist: 422 proves the
request got past authorisation without running Aider or a container (their own tests do).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest
from sqlalchemy import text
from tests.integration.gateway.conftest import PROJECT, bearer, set_status, start

from pipeline.db import Store
from runner.settings import get_settings

CALLERS = ("none", "bad_signature", "expired", "other_customer", "manager", "developer",
           "admin")


def write(ok: int) -> dict[str, int]:
    return {"none": 401, "bad_signature": 401, "expired": 401, "other_customer": 403,
            "manager": 403, "developer": ok, "admin": ok}


def read(ok: int) -> dict[str, int]:
    return {**write(ok), "manager": ok}


def anyone(ok: int) -> dict[str, int]:
    return {**read(ok), "other_customer": ok}


Arrange = Callable[[Store], Awaitable[None]]


async def no_active_execution(store: Store) -> None:
    async with store.transaction() as session:
        await session.execute(text("UPDATE executions SET status = 'completed'"))


def status(value: str, reason: str | None = None) -> Arrange:
    async def arrange(store: Store) -> None:
        await set_status(store, PROJECT, value, reason)

    return arrange


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    expected: dict[str, int]
    body: dict[str, Any] | None = None
    arrange: Arrange | None = None
    id: str = field(default="")


EVENT = {"workflow_type": "DEVTEAM_AUTOMATION", "data": {"projectId": PROJECT}}
STEP = {"projectId": PROJECT, "taskId": "1.1", "branch": "task/none"}
ENDPOINTS = [
    Endpoint("POST", "/events", write(202), EVENT, no_active_execution),
    Endpoint("GET", "/events/{event}", read(200)),
    Endpoint("POST", "/prep", write(200), {"projectId": PROJECT, "taskId": "1.1"}),
    Endpoint("POST", "/implement", write(422), STEP),
    Endpoint("POST", "/verify", write(422), STEP),
    Endpoint("GET", f"/tasks/next?projectId={PROJECT}", read(200)),
    Endpoint("POST", "/api/devteam/automation/initialize", write(202),
             {"projectId": PROJECT}, no_active_execution),
    Endpoint("GET", f"/api/devteam/automation/status/{PROJECT}", read(200)),
    Endpoint("POST", f"/api/devteam/automation/pause/{PROJECT}", write(200), None,
             status("running")),
    Endpoint("POST", "/api/devteam/automation/resume/acme%2Fweb", write(200), None,
             status("paused", "user")),
    Endpoint("POST", f"/api/devteam/automation/stop/{PROJECT}", write(200), None,
             status("running")),
    Endpoint("POST", "/api/devteam/repository/validate", anyone(200),
             {"repositoryUrl": "file:///srv/elsewhere.git"}),
    Endpoint("GET", f"/api/devteam/repository/tasks/{PROJECT}", read(200)),
    Endpoint("PUT", f"/api/devteam/repository/tasks/{PROJECT}/1.1", write(200),
             {"status": "done"}),
    Endpoint("POST", "/api/devteam/tasks/inject", write(201),
             {"projectId": PROJECT, "injectionType": "priority", "reason": "r",
              "task": {"title": "T"}}),
    Endpoint("GET", "/api/devteam/errors/{execution}/{error}", read(200)),
    # A developer lists only their own executions; a manager their projects'.
    Endpoint("GET", "/api/devteam/executions/active/alice", read(200)),
    Endpoint("GET", "/api/devteam/executions/history/alice?limit=5", read(200)),
    Endpoint("GET", "/health/live", dict.fromkeys(CALLERS, 200)),
]


@pytest.fixture
def callers(token_for) -> dict[str, dict[str, str]]:
    settings = get_settings()
    forged = jwt.encode({"sub": "alice", "projects": ["acme/*"], "role": "developer",
                         "iss": settings.jwt.issuer, "exp": 2_000_000_000},
                        "not-the-server-secret-0123456789abcdef", algorithm="HS256")
    return {
        "none": {},
        "bad_signature": bearer(forged),
        "expired": bearer(token_for("alice", ["acme/*"], ttl=-3600)),
        "other_customer": bearer(token_for("olga", ["globex/*"])),
        "manager": bearer(token_for("mia", ["acme/*"], role="manager")),
        "developer": bearer(token_for("alice", ["acme/web"])),
        "admin": bearer(token_for("root", [], role="admin")),
    }


async def an_error(store: Store, execution: uuid.UUID) -> uuid.UUID:
    error_id = uuid.uuid4()
    async with store.transaction() as session:
        await session.execute(
            text("INSERT INTO errors (id, execution_id, task_id, stage, classification, "
                 "message) VALUES (:id, :e, '1.1', 'VERIFY', 'verification', 'coverage 61%')"),
            {"id": error_id, "e": execution},
        )
    return error_id


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: f"{e.method} {e.path}")
async def test_authorisation_matrix(client, project, store, callers, endpoint) -> None:
    # Given a project with an execution, its event and one error record
    execution = await start(store)
    event = (await _scalar(store, "SELECT event_id FROM executions WHERE id = :e", e=execution))
    error = await an_error(store, execution)
    path = endpoint.path.format(event=event, execution=execution, error=error)
    # When each caller makes the request
    seen: dict[str, int] = {}
    for name in CALLERS:
        if endpoint.arrange is not None:
            await endpoint.arrange(store)
        r = await client.request(endpoint.method, path, headers=callers[name],
                                 json=endpoint.body)
        seen[name] = r.status_code
        if r.status_code in (401, 403):
            assert r.headers["content-type"] == "application/problem+json"
    # Then each gets exactly the expected status
    assert seen == endpoint.expected


async def test_a_403_does_not_reveal_whether_the_project_exists(client, project, callers) -> None:
    olga = callers["other_customer"]
    for target in (PROJECT, "acme/does-not-exist"):
        for method, path, body in [
            ("GET", f"/api/devteam/automation/status/{target}", None),
            ("GET", f"/api/devteam/repository/tasks/{target}", None),
            ("POST", "/prep", {"projectId": target, "taskId": "1.1"}),
            ("POST", "/events", {"workflow_type": "DEVTEAM_AUTOMATION",
                                 "data": {"projectId": target}}),
        ]:
            r = await client.request(method, path, headers=olga, json=body)
            assert r.status_code == 403, (target, path)
            assert r.json()["detail"] == "this token does not grant access to that project"


async def test_a_manager_sees_but_a_developer_may_not_list_anothers_executions(
    client, project, store, callers
) -> None:
    execution = await start(store, user="alice")
    mine = await client.get("/api/devteam/executions/history/alice",
                            headers=callers["developer"])
    assert [e["executionId"] for e in mine.json()] == [str(execution)]
    managed = await client.get("/api/devteam/executions/history/alice",
                               headers=callers["manager"])
    assert [e["executionId"] for e in managed.json()] == [str(execution)]
    outsider = await client.get("/api/devteam/executions/history/olga",
                                headers=callers["other_customer"])
    assert outsider.status_code == 200 and outsider.json() == []


async def _scalar(store: Store, sql: str, **params: Any) -> Any:
    async with store.transaction() as session:
        return (await session.execute(text(sql), params)).scalar_one()
