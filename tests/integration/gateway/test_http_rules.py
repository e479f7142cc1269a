"""Rules every endpoint follows: problem+json errors, 401 before anything else, 415, 413,
malformed JSON, every bad field named, X-Correlation-Id echoed, the liveness route and
the OpenAPI document with examples."""

from __future__ import annotations

import re

import pytest
from tests.integration.gateway.conftest import PROJECT, bearer

EVENT = {"workflow_type": "DEVTEAM_AUTOMATION", "data": {"projectId": PROJECT}}
SECRET_OR_TRACE = re.compile(r"Traceback|File \"|sqlalchemy|asyncpg|SELECT |INSERT |dev-only-secret")


def assert_problem(r, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert {"type", "title", "status", "detail", "instance", "correlationId"} <= set(body)
    assert body["status"] == status and body["correlationId"] == r.headers["x-correlation-id"]
    assert not SECRET_OR_TRACE.search(r.text), r.text
    return body


async def test_no_token_is_401_even_with_a_bad_body(client) -> None:
    r = await client.post("/events", content=b"{not json", headers={"content-type": "text/plain"})
    assert_problem(r, 401)
    assert r.headers["www-authenticate"].startswith("Bearer")


async def test_a_non_json_content_type_is_415(client, alice) -> None:
    for media in ("text/plain", "application/x-www-form-urlencoded", "application/xml"):
        r = await client.post("/prep", content=b'{"projectId": "acme/web", "taskId": "1.1"}',
                              headers={**alice, "content-type": media})
        assert_problem(r, 415)
    missing = await client.post("/prep", content=b'{"projectId": "acme/web", "taskId": "1"}',
                                headers=alice)
    assert_problem(missing, 415)


async def test_json_with_charset_or_a_json_suffix_is_accepted(client, alice) -> None:
    for media in ("application/json; charset=utf-8", "application/merge-patch+json"):
        r = await client.post("/prep", content=b'{"projectId": "acme/nope", "taskId": "1.1"}',
                              headers={**alice, "content-type": media})
        assert_problem(r, 404)


async def test_a_body_over_the_limit_is_413(client, alice) -> None:
    big = b'{"projectId": "acme/web", "taskId": "' + b"1" * 1_100_000 + b'"}'
    r = await client.post("/prep", content=big,
                          headers={**alice, "content-type": "application/json"})
    assert_problem(r, 413)


async def test_malformed_json_is_400(client, alice) -> None:
    r = await client.post("/events", content=b'{"workflow_type": ',
                          headers={**alice, "content-type": "application/json"})
    assert assert_problem(r, 400)["detail"].startswith("malformed JSON body")


async def test_every_bad_field_is_named_with_its_path(client, alice) -> None:
    r = await client.post("/events", headers=alice, json={
        "workflow_type": "OTHER", "extra": 1,
        "data": {"projectId": "nope", "task": {"id": "", "title": "t", "files": ["/etc/x"]},
                 "options": {"idempotencyKey": ""}}})
    body = assert_problem(r, 400)
    assert {e["field"] for e in body["errors"]} == {
        "workflow_type", "extra", "data.projectId", "data.task.id", "data.task.files[0]",
        "data.options.idempotencyKey"}


async def test_a_nul_character_in_free_text_is_400_not_a_database_error(
    client, alice, project
) -> None:
    # Postgres cannot store NUL in text or jsonb: found by the fuzz run as a 500
    r = await client.post("/api/devteam/tasks/inject", headers=alice, json={
        "projectId": PROJECT, "injectionType": "priority", "reason": "r\u0000",
        "task": {"title": "T", "criteria": {"a\u0000": "b", "c": "\u0000"}}})
    body = assert_problem(r, 400)
    assert {e["field"] for e in body["errors"]} >= {"reason", "task.criteria"}
    event = await client.post("/events", headers=alice, json={
        **EVENT, "data": {"projectId": PROJECT, "repositoryUrl": "file:///x\u0000y"}})
    assert assert_problem(event, 400)["errors"][0]["field"] == "data.repositoryUrl"


async def test_an_unknown_workflow_type_is_400(client, alice) -> None:
    r = await client.post("/events", headers=alice,
                          json={**EVENT, "workflow_type": "DEVTEAM_SOMETHING"})
    assert assert_problem(r, 400)["errors"][0]["field"] == "workflow_type"


@pytest.mark.parametrize("path", [f"/api/devteam/automation/status/{PROJECT}",
                                  "/api/devteam/automation/status/acme%2Fweb"])
async def test_project_id_with_slash_or_percent_2f(client, alice, store, path) -> None:
    from tests.support.streams import new_execution

    execution = await new_execution(store, PROJECT)
    r = await client.get(path, headers=alice)
    assert r.status_code == 200, r.text
    assert r.json()["executionId"] == str(execution)


async def test_a_real_server_takes_the_slash_and_percent_2f(procs, project, alice) -> None:
    import httpx

    gateway = procs.gateway()
    async with httpx.AsyncClient(base_url=gateway.url, headers=alice, timeout=60) as http:
        plain = await http.get(f"/api/devteam/repository/tasks/{PROJECT}")
        encoded = await http.get("/api/devteam/repository/tasks/acme%2Fweb")
        edited = await http.put("/api/devteam/repository/tasks/acme%2Fweb/1.1",
                                json={"status": "in_progress"})
    assert plain.status_code == encoded.status_code == 200, encoded.text
    assert plain.json() == encoded.json()
    assert edited.status_code == 200 and edited.json()["status"] == "in_progress"


async def test_the_correlation_id_is_echoed_or_generated_everywhere(client, alice) -> None:
    given = {"X-Correlation-Id": "req-42.a:b"}
    for method, path, headers in [
        ("GET", "/health/live", given),
        ("GET", "/tasks/next?projectId=acme/nope", {**alice, **given}),
        ("GET", "/no/such/route", {**alice, **given}),
        ("POST", "/events", given),
    ]:
        r = await client.request(method, path, headers=headers)
        assert r.headers["x-correlation-id"] == "req-42.a:b", (path, r.status_code)
        if r.status_code >= 400:
            assert r.json()["correlationId"] == "req-42.a:b"
    generated = await client.get("/health/live", headers={"X-Correlation-Id": "bad id\x7f"})
    assert re.fullmatch(r"[0-9a-f]{32}", generated.headers["x-correlation-id"])


async def test_the_correlation_id_reaches_the_pipeline(client, alice, store, project) -> None:
    from tests.integration.gateway.conftest import audit, rows

    r = await client.post("/events", json=EVENT, headers={**alice, "X-Correlation-Id": "trace-7"})
    assert r.status_code == 202, r.text
    assert r.json()["correlationId"] == "trace-7"
    event = (await rows(store, "SELECT correlation_id, task_context FROM events"))[0]
    assert event["correlation_id"] == "trace-7"
    assert event["task_context"]["metadata"]["correlationId"] == "trace-7"
    assert (await audit(store, "execution.start"))[0]["correlation_id"] == "trace-7"


async def test_an_unknown_route_is_a_404_problem(client, alice) -> None:
    assert_problem(await client.get("/api/devteam/nothing", headers=alice), 404)


async def test_a_wrong_method_is_a_405_problem(client, alice) -> None:
    assert_problem(await client.delete("/events", headers=alice), 405)


async def test_liveness_needs_no_token_and_no_dependency(client) -> None:
    r = await client.get("/health/live")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


async def test_every_operation_is_documented_with_examples(client) -> None:
    doc = (await client.get("/schema/openapi.json")).json()
    operations = [(path, method, op) for path, item in doc["paths"].items()
                  for method, op in item.items() if method in {"get", "post", "put"}]
    assert len(operations) >= 20
    for path, method, op in operations:
        success = [c for c in op["responses"] if c.startswith("2")]
        assert success, (method, path)
        content = op["responses"][success[0]]["content"]["application/json"]
        assert content.get("examples"), f"{method} {path}: no response example"
        if "requestBody" in op:
            body = op["requestBody"]["content"]["application/json"]
            assert body.get("examples") or body["schema"].get("examples"), (
                f"{method} {path}: no request example")
        for code, response in op["responses"].items():
            if code.startswith(("4", "5")):
                assert "application/problem+json" in response["content"], (method, path, code)


async def test_bearer_only_in_the_authorization_header(client, token_for) -> None:
    token = token_for("alice", ["acme/*"])
    r = await client.get(f"/tasks/next?projectId=acme/web&token={token}")
    assert_problem(r, 401)
    scheme = await client.get("/tasks/next?projectId=acme/web",
                              headers={"Authorization": f"Token {token}"})
    assert_problem(scheme, 401)
    ok = await client.get("/tasks/next?projectId=acme/nope", headers=bearer(token))
    assert_problem(ok, 404)
