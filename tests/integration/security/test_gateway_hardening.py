"""Attacks on the gateway itself, each reproduced against a real ``devteam serve`` process.

- A stream opened with a short-lived token ends when the token does (WebSocket: close 4401
  "token expired"; SSE: a last ``error`` frame, then the response ends), and the client
  resumes with a fresh token and its cursor without losing a frame.
- ``options.idempotencyKey`` is scoped by subject, project and the request's hash.
- ``/health`` without a token is the status alone.
- A client trickling its headers or its body is cut off after the configured timeouts
  (``DEVTEAM_GATEWAY_HEADER_TIMEOUT_SECONDS``, ``DEVTEAM_GATEWAY_BODY_TIMEOUT_SECONDS``),
  and so is one that opens a connection and sends nothing.
- Identifiers end where they seem to: ``"evil/nl\\n"`` (Python's ``$`` matches before a
  trailing newline) is refused in every identifier field, in bodies, paths, queries, the
  stream's query and a token's grants, and nothing is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
import uuid
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import websockets
from tests.integration.gateway.conftest import add_project, rows
from tests.integration.security.helpers import row_counts
from tests.support.streams import connect, new_execution, read_frames, write, ws_url

from devtools.demo.sample import create_sample

pytestmark = [pytest.mark.slow]

PROJECT = "acme/web"
EVENT = "DEVTEAM_AUTOMATION"


@pytest.fixture
def sample(tmp_path):
    return create_sample(tmp_path / "sample")


@pytest.fixture
async def gateway(store, procs, sample):
    await add_project(store, PROJECT, sample.url)
    return procs.gateway()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# ---------------------------------------------------------------- trailing newlines
def newline_bodies(url: str) -> list[tuple[str, str, dict[str, Any], str]]:
    """``(method, path, body, field)``: one identifier field ending in a newline each."""
    nl = "\n"
    task = {"title": "t"}
    return [
        ("POST", "/events", {"workflow_type": EVENT, "data": {"projectId": "acme/nl" + nl}},
         "data.projectId"),
        ("POST", "/events", {"workflow_type": EVENT, "data": {
            "projectId": PROJECT, "repositoryUrl": url + nl}}, "data.repositoryUrl"),
        ("POST", "/events", {"workflow_type": EVENT, "data": {
            "projectId": PROJECT, "options": {"idempotencyKey": "k" + nl}}},
         "data.options.idempotencyKey"),
        ("POST", "/events", {"workflow_type": EVENT, "data": {
            "projectId": PROJECT, "task": {"id": "1.1" + nl, **task}}}, "data.task.id"),
        ("POST", "/events", {"workflow_type": EVENT, "data": {
            "projectId": PROJECT, "task": {"id": "9.9", "dependencies": ["1.1" + nl], **task}}},
         "data.task.dependencies[0]"),
        ("POST", "/api/devteam/automation/initialize",
         {"projectId": "acme/nl" + nl, "repositoryUrl": url}, "projectId"),
        ("POST", "/api/devteam/automation/initialize",
         {"projectId": "acme/other", "repositoryUrl": url + nl}, "repositoryUrl"),
        ("POST", "/prep", {"projectId": PROJECT + nl, "taskId": "1.1"}, "projectId"),
        ("POST", "/prep", {"projectId": PROJECT, "taskId": "1.1" + nl}, "taskId"),
        ("POST", "/implement", {"projectId": PROJECT, "taskId": "1.1",
                                "branch": "task/1-1" + nl}, "branch"),
        ("POST", "/verify", {"projectId": PROJECT, "taskId": "1.1",
                             "branch": "task/1-1" + nl}, "branch"),
        ("POST", "/api/devteam/repository/validate",
         {"repositoryUrl": url, "branch": "main" + nl}, "branch"),
        ("POST", "/api/devteam/repository/validate", {"repositoryUrl": url + nl},
         "repositoryUrl"),
        ("POST", "/api/devteam/tasks/inject", {
            "projectId": PROJECT + nl, "injectionType": "priority", "reason": "r",
            "task": task}, "projectId"),
        ("POST", "/api/devteam/tasks/inject", {
            "projectId": PROJECT, "injectionType": "replace", "reason": "r",
            "replaceTaskId": "1.1" + nl, "task": task}, "replaceTaskId"),
    ]


NEWLINE_PATHS = [
    "/api/devteam/automation/status/acme/web%0A",
    "/api/devteam/automation/status/acme%2Fweb%0A",
    "/api/devteam/repository/tasks/acme/web%0A",
    "/tasks/next?projectId=acme/web%0A",
    "/api/devteam/executions/active/alice%0A",
    "/api/devteam/executions/history/alice%0A",
    "/api/devteam/stream?projectId=acme/web%0A",
]


async def test_given_identifiers_ending_in_a_newline_then_each_is_refused_and_nothing_stored(
    store, gateway, sample, token_for
) -> None:
    # Given a developer of acme, and the state of every table
    alice = auth(token_for("alice", ["acme/*"]))
    before = await row_counts(store)
    wrong: list[str] = []
    async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as client:
        # When every identifier field of every body ends in a newline
        for method, path, body, field in newline_bodies(sample.url):
            r = await client.request(method, path, json=body, headers=alice)
            named = {e["field"] for e in r.json().get("errors", [])} if r.is_error else set()
            if r.status_code != 400 or field not in named:
                wrong.append(f"{method} {path} {field}: {r.status_code} {r.text[:300]}")
        # and every identifier in a path or query does
        for path in NEWLINE_PATHS:
            async with client.stream("GET", path, headers=alice) as r:  # SSE: endless if taken
                if r.status_code != 400:
                    wrong.append(f"GET {path}: {r.status_code}")
        r = await client.put("/api/devteam/repository/tasks/acme/web/1.1%0A",
                             json={"title": "x"}, headers=alice)
        if r.status_code != 400:
            wrong.append(f"PUT task 1.1\\n: {r.status_code} {r.text[:300]}")
        # and a token grants a project whose name ends in a newline
        granted = await client.get(f"/api/devteam/automation/status/{quote(PROJECT, safe='')}",
                                   headers=auth(token_for("mallory", [PROJECT + "\n"])))
        if granted.status_code != 401:
            wrong.append(f"grant with a newline: {granted.status_code} {granted.text[:300]}")
    # and the live stream is asked for one
    async with websockets.connect(ws_url(gateway.url, token_for("alice", ["acme/*"]),
                                         "acme/web%0A")) as ws:
        try:
            wrong.append(f"WS projectId with a newline: {(await ws.recv())[:200]!r}")
        except websockets.ConnectionClosed as closed:
            if closed.rcvd is None or closed.rcvd.code != 4400:
                wrong.append(f"WS projectId with a newline: closed {closed.rcvd}")
    # Then each one is refused, naming its field, and nothing was stored
    assert wrong == [], "\n".join(wrong)
    assert await row_counts(store) == before


# ---------------------------------------------------------------- idempotency scope
async def test_given_the_same_body_idempotency_key_under_another_project_then_no_event_leaks(
    store, gateway, sample, token_for
) -> None:
    # Given two tokens of one subject: one for acme/web, one for another customer's project
    await add_project(store, "globex/api", sample.url)
    web = auth(token_for("ci-bot", [PROJECT]))
    api = auth(token_for("ci-bot", ["globex/api"]))

    def event(project: str, **options: str) -> dict[str, Any]:
        return {"workflow_type": EVENT,
                "data": {"projectId": project, "options": {"idempotencyKey": "nightly",
                                                            **options}}}

    async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as client:
        first = await client.post("/events", json=event(PROJECT), headers=web)
        # When the other project's token sends the same options.idempotencyKey
        other = await client.post("/events", json=event("globex/api"), headers=api)
        peek = await client.get(f"/events/{first.json()['event_id']}", headers=api)
        # and the first project's token reuses the key for another request
        reused = await client.post("/events", json=event(PROJECT, stopPoint="1.2"), headers=web)
        again = await client.post("/events", json=event(PROJECT), headers=web)
    # Then the other project gets an event of its own, and cannot read the first one
    assert first.status_code == other.status_code == 202, (first.text, other.text)
    assert other.json()["event_id"] != first.json()["event_id"]
    assert peek.status_code == 403
    events = await rows(store, "SELECT id::text AS id, project_id FROM events ORDER BY created_at")
    assert [(e["id"], e["project_id"]) for e in events] == [
        (first.json()["event_id"], PROJECT), (other.json()["event_id"], "globex/api")]
    # and within one project the key means one request: another body is 422, the same replays
    assert reused.status_code == 422, reused.text
    assert reused.json()["type"].endswith("idempotency-key-reused")
    assert again.status_code == 202 and again.json()["event_id"] == first.json()["event_id"]


# ---------------------------------------------------------------- health disclosure
async def test_given_no_token_then_health_shows_status_only(gateway, token_for) -> None:
    # Given a running gateway; when /health is asked without a token, with one, and with
    # a forged one
    async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as client:
        anonymous = await client.get("/health")
        detailed = await client.get("/health", headers=auth(token_for("alice", ["acme/*"])))
        forged = await client.get("/health", headers=auth("not-a-jwt"))
    # Then the anonymous caller learns whether the service is up, and nothing else: no
    # versions, no image digest, no free disk
    assert anonymous.status_code in (200, 503)
    assert list(anonymous.json()) == ["status"]
    assert anonymous.json()["status"] in ("ok", "degraded", "down")
    for leak in ("version", "libgit2", "engine", "GiB", "sha256", "sandboxImage"):
        assert leak not in anonymous.text, leak
    # and the details need a valid token
    assert set(detailed.json()) == {"status", "version", "checks"}
    assert "GiB" in detailed.json()["checks"]["filesystem"]["detail"]
    assert forged.status_code == 401
    assert "checks" not in forged.text


# ---------------------------------------------------------------- streams outlive tokens
@pytest.fixture
def strict_gateway(procs):
    """A gateway without clock-skew leeway, so a token expires when its ``exp`` says."""
    return procs.gateway(DEVTEAM_JWT_LEEWAY_SECONDS="0")


async def keep_writing(store, execution: uuid.UUID) -> None:
    """A frame every 0.2 s until cancelled (an execution that keeps logging)."""
    while True:
        await write(store, execution, 1)
        await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def writing(store, execution: uuid.UUID):
    task = asyncio.create_task(keep_writing(store, execution))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def last_seq(store, execution: uuid.UUID) -> int:
    found = await rows(store, "SELECT max(seq) AS s FROM notifications WHERE execution_id = :e",
                       e=execution)
    return int(found[0]["s"])


async def test_given_a_short_lived_token_then_the_websocket_closes_4401_and_resumes_with_a_new_one(
    store, strict_gateway, token_for
) -> None:
    # Given a socket opened with a token valid for five seconds, on an execution that
    # keeps logging
    execution = await new_execution(store, PROJECT)
    expiring = token_for("alice", ["acme/*"], ttl=5)
    ws = await connect(ws_url(strict_gateway.url, expiring, PROJECT))
    frames: list[dict[str, Any]] = []
    closed: websockets.ConnectionClosed | None = None
    # When the token expires while frames keep coming
    async with writing(store, execution):
        try:
            async with asyncio.timeout(30):
                while True:
                    frames.append(json.loads(await ws.recv()))
        except websockets.ConnectionClosed as exc:
            closed = exc
        except TimeoutError:
            pass
    # Then the server closed the socket with 4401 "token expired"
    assert closed is not None, f"still open 30 s after a 5 s token, {len(frames)} frames"
    assert closed.rcvd is not None
    assert (closed.rcvd.code, closed.rcvd.reason) == (4401, "token expired")
    # and the expired token is refused, while a fresh one resumes from the cursor
    async with websockets.connect(ws_url(strict_gateway.url, expiring, PROJECT)) as old:
        with pytest.raises(websockets.ConnectionClosed) as refused:
            await old.recv()
    assert refused.value.rcvd is not None and refused.value.rcvd.code == 4401
    await write(store, execution, 2)
    seen = [f for f in frames if f.get("seq") is not None]
    cursor = seen[-1]["id"]
    end = await last_seq(store, execution)
    fresh = await connect(ws_url(strict_gateway.url, token_for("alice", ["acme/*"]), PROJECT,
                                 since=cursor))
    # the frames after the cursor and, among them (after the backlog), replay-complete
    rest = [f for f in await read_frames(fresh, end - seen[-1]["seq"] + 1)
            if f["type"] != "replay-complete"]
    await fresh.close()
    # with nothing lost and nothing twice
    assert [f["seq"] for f in seen + rest] == list(range(seen[0]["seq"], end + 1))


async def test_given_a_short_lived_token_then_the_sse_stream_ends_and_resumes_with_a_new_one(
    store, strict_gateway, token_for
) -> None:
    # Given an SSE stream opened with a token valid for five seconds
    execution = await new_execution(store, PROJECT)
    url = f"{strict_gateway.url}/api/devteam/stream?projectId={PROJECT}"
    frames: list[dict[str, Any]] = []
    ended = False
    # When the token expires while the execution keeps logging
    async with (
        writing(store, execution),
        httpx.AsyncClient(timeout=30) as client,
        client.stream("GET", url, headers=auth(token_for("alice", ["acme/*"], ttl=5))) as r,
    ):
        assert r.status_code == 200
        try:
            async with asyncio.timeout(30):
                async for line in r.aiter_lines():
                    if line.startswith("data: "):
                        frames.append(json.loads(line[6:]))
            ended = True
        except TimeoutError:
            pass
    # Then the server ended the stream, saying why in its last frame
    assert ended, f"still streaming 30 s after a 5 s token, {len(frames)} frames"
    assert frames[-1]["type"] == "error"
    assert frames[-1]["payload"]["message"].startswith("token expired")
    # and a fresh token resumes after the last frame seen (Last-Event-ID)
    seen = [f for f in frames if f.get("seq") is not None]
    await write(store, execution, 2)
    end = await last_seq(store, execution)
    resumed: list[dict[str, Any]] = []
    async with (
        httpx.AsyncClient(timeout=30) as client,
        client.stream("GET", url, headers={**auth(token_for("alice", ["acme/*"])),
                                           "Last-Event-ID": seen[-1]["id"]}) as r,
    ):
        async for line in r.aiter_lines():
            if line.startswith("data: "):
                frame = json.loads(line[6:])
                if frame.get("seq") is not None:
                    resumed.append(frame)
                    if frame["seq"] == end:
                        break
    assert [f["seq"] for f in seen + resumed] == list(range(seen[0]["seq"], end + 1))


# ---------------------------------------------------------------- slow clients
BOUND = 20.0
"""How long a test waits for the server to close a trickling connection (the timeouts
under test are 2 s; without them the server waits as long as the client keeps sending)."""


def trickle(port: int, head: bytes, body: bytes = b"", every: float = 0.5) -> tuple[bool, bytes]:
    """Send ``head`` one byte every ``every`` seconds (with a ``body``: ``head`` at once,
    then the body that way). Returns whether the server closed the connection within
    ``BOUND`` seconds, and what it answered."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(every)
    slow = head
    if body:
        sock.sendall(head)
        slow = body
    answer = b""
    deadline = time.monotonic() + BOUND
    try:
        for i in range(len(slow)):
            if time.monotonic() > deadline:
                return False, answer
            try:
                sock.sendall(slow[i:i + 1])
                chunk = sock.recv(4096)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                return True, answer
            if not chunk:
                return True, answer
            answer += chunk
        return False, answer
    finally:
        sock.close()


def idle(port: int) -> bool:
    """Open a connection, send nothing: whether the server closed it within ``BOUND``."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(BOUND)
        try:
            return sock.recv(4096) == b""
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True


def endless_headers(port: int, total: int = 16 * 1024 * 1024) -> tuple[bool, bytes]:
    """Send one header line that never ends, at full speed, up to ``total`` bytes: whether
    the server closed the connection before that, and what it answered."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(BOUND)
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Junk: ")
        junk = b"j" * 65536
        try:
            for _ in range(total // len(junk)):
                sock.sendall(junk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        else:
            return False, b""  # all of it sent: the server kept reading
        try:
            return True, sock.recv(4096)
        except (TimeoutError, OSError):
            return True, b""


async def test_given_clients_trickling_headers_or_body_then_the_server_closes_them(
    procs, token_for
) -> None:
    # Given a gateway that gives a request 2 s for its headers and 2 s for its body
    gateway = procs.gateway(DEVTEAM_GATEWAY_HEADER_TIMEOUT_SECONDS="2",
                            DEVTEAM_GATEWAY_BODY_TIMEOUT_SECONDS="2")
    token = token_for("alice", ["acme/*"])
    head = (f"GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: {'a' * 300}\r\n"
            f"Authorization: Bearer {token}\r\n\r\n").encode()
    body = json.dumps({"workflow_type": EVENT, "data": {"projectId": PROJECT,
                                                        "options": {"stopPoint": "x" * 150}}})
    post = (f"POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nAuthorization: Bearer {token}\r\n\r\n").encode()
    # When one client sends its headers a byte every half second, another its body, and a
    # third opens a connection and sends nothing
    header_closed, header_answer = await asyncio.to_thread(trickle, gateway.port, head)
    body_closed, _ = await asyncio.to_thread(trickle, gateway.port, post, body.encode())
    idle_closed = await asyncio.to_thread(idle, gateway.port)
    # and a fourth sends one header line without end, as fast as it can
    endless_closed, endless_answer = await asyncio.to_thread(endless_headers, gateway.port)
    # Then the server closed each connection (the slow headers with a 408 problem)
    assert header_closed and header_answer.startswith(b"HTTP/1.1 408"), header_answer[:200]
    assert b"application/problem+json" in header_answer
    assert body_closed
    assert idle_closed
    # and stopped reading the endless header after a bounded amount (431, when the answer
    # is not lost to the reset of a connection still sending)
    assert endless_closed, endless_answer[:200]
    assert endless_answer in (b"",) or endless_answer.startswith(b"HTTP/1.1 431")
    # and a client that sends at an ordinary pace is served as before
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
        r = await client.post("/events", content=body, headers={
            **auth(token), "Content-Type": "application/json"})
    assert r.status_code == 404, r.text  # acme/web is not registered in this test
