"""Hostile input against a real gateway process, the runner and the pipeline.

Every hostile request gets a clear 4xx answer (problem details; a frame the WebSocket
cannot use gets an ``error`` frame and the socket stays open), never a 5xx or a stack
trace, and changes nothing: the row counts of every table are the same before and after.
Paths that would climb out of a repository (in project ids, task files, criteria,
``.devteam.toml``) are refused before anything is read or written; oversize bodies,
headers, frames and task lists are refused without a crash.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import time
from collections import Counter
from pathlib import Path
from urllib.parse import quote, quote_from_bytes

import httpx
import jwt
import msgspec
import pygit2
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from tests.e2e.checks import stage_runs
from tests.e2e.conftest import start, wait_status
from tests.integration.gateway.conftest import add_project
from tests.integration.security.helpers import (
    model_script,
    project_files,
    raw_http,
    row_counts,
)
from tests.support.streams import RawWsClient, ws_url
from websockets.sync.client import connect

from devtools.demo.sample import create_sample
from devtools.scripted_model import ScriptedModelServer, parse_script
from runner.aider import AiderTool
from runner.errors import ConfigError
from runner.ports import ImplementRequest
from runner.redact import Redactor
from runner.settings import get_settings
from runner.verify import load_project_config, parse_project_file, parse_requirement
from runner.verify.evaluate import parse_requirements

pytestmark = [pytest.mark.slow]

PROJECT = "acme/web"
TRACE_MARKERS = (b"Traceback", b'File "', b"sqlalchemy", b"asyncpg", b"RecursionError")
PARSER_REJECTION = b"Invalid HTTP request received."
"""uvicorn's own answer to bytes that are not HTTP (before the app sees them)."""


@pytest.fixture
def sample(tmp_path: Path):
    return create_sample(tmp_path / "sample")


@pytest.fixture
async def gateway(store, procs, sample):
    await add_project(store, PROJECT, sample.url)
    return procs.gateway()


@pytest.fixture
def alice(token_for) -> str:
    return token_for("alice", ["acme/*"])


def assert_clean_answer(status: int, headers: dict[str, str], body: bytes,
                        target: bytes = b"") -> str:
    """No 5xx, no trace; an error is problem details (or uvicorn's refusal of non-HTTP, or
    the API docs' own HTML 404 under /schema/). Returns which kind of answer it was."""
    assert status < 500, (status, body[:500])
    for marker in TRACE_MARKERS:
        assert marker not in body, (marker, body[:500])
    if status < 400:
        return "ok"
    if headers.get("content-type", "").startswith("text/plain") and body == PARSER_REJECTION:
        assert status == 400
        return "parser"
    if target.startswith(b"/schema/") and headers.get("content-type", "").startswith(
            "text/html"):
        assert status == 404
        return "docs-404"
    assert headers.get("content-type") == "application/problem+json", (status, headers, body)
    problem = json.loads(body)
    assert problem["status"] == status
    assert problem["correlationId"]
    return "problem"


# ------------------------------------------------------------------------------ WebSocket
TEXT_FRAMES = st.one_of(
    st.text(max_size=300),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
        | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=5) | st.dictionaries(
            st.text(max_size=10), inner, max_size=5),
        max_leaves=30,
    ).map(json.dumps),
    st.fixed_dictionaries({"type": st.one_of(
        st.text(max_size=20), st.sampled_from(["ping", "PING", "pong", "subscribe", ""]))}
    ).map(json.dumps),
    st.integers(1, 20_000).map(lambda d: "[" * d + "]" * d),
    st.integers(1, 3_000).map(lambda d: '{"a":' * d + "1" + "}" * d),
    st.integers(10_241, 900_000).map(lambda n: "x" * n),
    st.integers(10_200, 10_300).map(lambda n: json.dumps({"type": "ping", "pad": "p" * n})),
)
BINARY_FRAMES = st.one_of(
    st.binary(max_size=300),
    st.binary(min_size=1, max_size=50).map(lambda b: b"\xff\xfe\xc3" + b),  # invalid UTF-8
    st.integers(10_241, 200_000).map(lambda n: b"\x80" * n),
)
FRAMES = st.one_of(TEXT_FRAMES, BINARY_FRAMES)


def expected_reply(frame: str | bytes) -> str:
    data = frame.encode() if isinstance(frame, str) else frame
    if len(data) > 10 * 1024:
        return "error"
    try:
        decoded = msgspec.json.decode(data)
    except (msgspec.DecodeError, RecursionError):
        return "error"
    return "pong" if isinstance(decoded, dict) and decoded.get("type") == "ping" else "error"


def fuzz_websocket(url: str, port: int, path: str) -> Counter[str]:
    replies: Counter[str] = Counter()
    with connect(url, max_size=2**22, open_timeout=10) as ws:
        hello = json.loads(ws.recv(timeout=10))
        assert hello["type"] == "connection-established"
        assert json.loads(ws.recv(timeout=10))["type"] == "replay-complete"  # no backlog

        @settings(max_examples=150, deadline=None, database=None,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(frame=FRAMES)
        @example(frame="[" * 5_000 + "]" * 5_000)  # 10 KB that recurses past Python's limit
        @example(frame=b'{"type": "ping"}')
        @example(frame="x" * 1_000_000)
        def one(frame: str | bytes) -> None:
            ws.send(frame)
            reply = json.loads(ws.recv(timeout=20))
            assert reply["type"] == expected_reply(frame), (str(frame)[:200], reply)
            if reply["type"] == "error":
                assert reply["payload"]["classification"] == "client"
            replies[reply["type"]] += 1

        one()
        ws.send(json.dumps({"type": "ping"}))
        assert json.loads(ws.recv(timeout=10))["type"] == "pong"
        replies["final-pong"] += 1
    # Invalid UTF-8 in a *text* frame breaks the protocol itself: the server closes that
    # socket with 1007, as RFC 6455 says, and goes on serving everyone else.
    raw = RawWsClient(f"ws://127.0.0.1:{port}{path}", rcvbuf=None, timeout=30)
    try:
        assert json.loads(raw.raw_frame()[1])["type"] == "connection-established"
        assert json.loads(raw.raw_frame()[1])["type"] == "replay-complete"
        raw.send(0x1, b"\xff\xfe not UTF-8")
        opcode, payload = raw.raw_frame()
        assert (opcode, int.from_bytes(payload[:2], "big")) == (0x8, 1007)
    finally:
        raw.close()
    with connect(url, open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "connection-established"
        assert json.loads(ws.recv(timeout=10))["type"] == "replay-complete"
        ws.send(json.dumps({"type": "ping"}))
        assert json.loads(ws.recv(timeout=10))["type"] == "pong"
    return replies


async def test_given_fuzzed_websocket_frames_then_each_gets_an_error_frame_and_the_socket_lives(
    store, gateway, alice
):
    before = await row_counts(store)
    url = ws_url(gateway.url, alice)

    replies = await asyncio.to_thread(
        fuzz_websocket, url, gateway.port, f"/ws/devteam?token={alice}")

    print(f"\nWS fuzz: {sum(replies.values())} frames, replies {dict(replies)}")
    assert replies["error"] > 100
    assert await row_counts(store) == before
    assert "gateway.unhandled" not in gateway.output()


# ------------------------------------------------------------------- HTTP headers and paths
def forged_tokens() -> dict[str, str]:
    """Tokens an attacker could make: none is valid for this gateway."""
    claims = {"sub": "mallory", "iss": "devteam", "exp": int(time.time()) + 3600,
              "role": "admin", "projects": ["acme/*"]}

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    secret = get_settings().jwt.secret
    return {
        "alg-none": b64(b'{"alg":"none","typ":"JWT"}') + "." + b64(json.dumps(claims).encode())
        + ".",
        "wrong-key": jwt.encode(claims, "not-the-secret-" * 4, algorithm="HS256"),
        "expired": jwt.encode({**claims, "exp": int(time.time()) - 3600}, secret,
                              algorithm="HS256"),
        "wrong-issuer": jwt.encode({**claims, "iss": "evil"}, secret, algorithm="HS256"),
        "bad-claims": jwt.encode({**claims, "role": "root", "projects": ["../../etc"]}, secret,
                                 algorithm="HS256"),
        "rs256-header": b64(b'{"alg":"RS256","typ":"JWT"}') + "." + b64(
            json.dumps(claims).encode()) + "." + b64(b"x" * 64),
        "nested-header": b64(b"[" * 20_000 + b"]" * 20_000) + "." + b64(b"{}") + ".sig",
        "garbage": "a.b.c",
    }


def no_crlf(value: bytes) -> bytes:
    return value.replace(b"\r", b"").replace(b"\n", b"")


HEADER_VALUES = st.one_of(
    st.binary(max_size=200).map(no_crlf),  # NUL and control bytes: refused by the parser
    st.text(max_size=100).map(lambda s: no_crlf(s.encode())),  # UTF-8 beyond latin-1
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=300).map(
        str.encode),
    st.text(st.characters(min_codepoint=0xA0, max_codepoint=0xFF), max_size=50).map(
        lambda s: s.encode("latin-1")),
    st.integers(1, 120_000).map(lambda n: b"v" * n),
)
TRAVERSAL = [
    "../../etc", "a/../b", "%2e%2e%2f", "..%2f..%2fetc%2fpasswd", "%2e%2e/%2e%2e/etc/passwd",
    "..%5c..%5cwindows", "%00", "acme%00/web", "acme/web%00", "%252e%252e%252f",
    "%c0%ae%c0%ae%c0%af", "..;/", "acme/web/../../../etc/passwd", "./acme/web", "acme//web",
    "%2F%2F", "~root", "ＡＣＭＥ/ｗｅｂ", "acme/\u202eweb", "a" * 5000, "acme/" + "b" * 300,
    "acme%2F..%2F..%2Fetc", "..", ".", "%2e", "acme/web/%2e%2e/%2e%2e/x",
]
SEGMENTS = st.one_of(
    st.sampled_from(TRAVERSAL).map(lambda s: quote(s, safe="/%;~").encode()),
    st.sampled_from(TRAVERSAL).map(lambda s: quote(s, safe="/%;~").encode()),
    st.text(max_size=60).map(lambda s: quote(s, safe="/%").encode()),
    st.binary(max_size=40).map(lambda b: quote_from_bytes(b, safe="/%").encode()),
    st.text(max_size=60).map(lambda s: no_crlf(s.encode())),  # raw: often not HTTP at all
    st.integers(1, 20_000).map(lambda n: b"x" * n),
)
ENDPOINTS = [
    (b"GET", "/api/devteam/automation/status/{}"),
    (b"GET", "/api/devteam/repository/tasks/{}"),
    (b"POST", "/api/devteam/automation/pause/{}"),
    (b"POST", "/api/devteam/automation/stop/{}"),
    (b"GET", "/events/{}"),
    (b"GET", "/tasks/next?projectId={}"),
    (b"GET", "/api/devteam/executions/history/{}?limit=5"),
    (b"GET", "/api/devteam/errors/{}/{}"),
    (b"GET", "/api/devteam/stream?projectId={}"),
    (b"GET", "/static/{}"),
    (b"GET", "/schema/{}"),
    (b"GET", "/{}"),
    (b"GET", "/health"),
]


def fuzz_http(port: int, alice: str) -> Counter[str]:
    tokens = [*forged_tokens().values(), alice]
    authorization = st.one_of(
        HEADER_VALUES,
        st.sampled_from(tokens).map(lambda t: b"Bearer " + t.encode()),
        HEADER_VALUES.map(lambda v: b"Bearer " + v),
        st.sampled_from([b"Basic YWxpY2U6cGFzcw==", b"Bearer", b"bearer  " + alice.encode(),
                         b"Token " + alice.encode(), alice.encode()]),
    )
    outcomes: Counter[str] = Counter()

    @settings(max_examples=300, deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(
        endpoint=st.sampled_from(ENDPOINTS),
        segment=SEGMENTS,
        auth=st.one_of(st.none(), authorization),
        key=st.one_of(st.none(), HEADER_VALUES),
        correlation=st.one_of(st.none(), HEADER_VALUES),
    )
    @example(endpoint=ENDPOINTS[0], segment=b"..%2F..%2Fetc", auth=b"Bearer " + alice.encode(),
             key=None, correlation=None)
    @example(endpoint=ENDPOINTS[2], segment=b"other/proj", auth=b"Bearer " + alice.encode(),
             key="\u20ac".encode(), correlation=b"\xc3\xa9\xff")
    def one(endpoint, segment, auth, key, correlation) -> None:
        method, template = endpoint
        target = template.encode().replace(b"{}", segment)
        headers = [(b"Authorization", auth), (b"Idempotency-Key", key),
                   (b"X-Correlation-Id", correlation)]
        request = (
            method + b" " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + b"".join(name + b": " + value + b"\r\n" for name, value in headers
                       if value is not None)
            + b"Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
        status, response_headers, body = raw_http(port, request)
        if status == 0:
            # reset before an answer could be read: the parser refused a large request
            # before reading it all (its answer is lost with the reset); a small request
            # is read whole and always answered
            assert len(request) > 16 * 1024, request[:200]
            outcomes["reset"] += 1
            return
        outcomes[assert_clean_answer(status, response_headers, body, target)] += 1
        outcomes[f"{status // 100}xx"] += 1

    one()
    return outcomes


async def test_given_fuzzed_headers_and_paths_then_never_5xx_never_a_trace_always_problem_json(
    store, gateway, alice
):
    before = await row_counts(store)

    outcomes = await asyncio.to_thread(fuzz_http, gateway.port, alice)

    print(f"\nHTTP fuzz: {outcomes['problem'] + outcomes['ok'] + outcomes['parser']} requests,"
          f" {dict(outcomes)}")
    assert outcomes["5xx"] == 0
    assert outcomes["problem"] + outcomes["ok"] > 100  # most requests reached the app
    assert await row_counts(store) == before
    assert "gateway.unhandled" not in gateway.output()


async def test_given_forged_or_replayed_tokens_then_every_one_is_refused_with_401(
    store, gateway
):
    before = await row_counts(store)
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
        for name, token in forged_tokens().items():
            answer = await client.get("/api/devteam/executions/history/mallory",
                                      headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code == 401, (name, answer.text)
            assert answer.headers["content-type"] == "application/problem+json"
            answer = await client.post(f"/api/devteam/automation/stop/{PROJECT}",
                                       headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code == 401, (name, answer.text)
    assert await row_counts(store) == before


# ---------------------------------------------------------------------------- traversal
async def test_given_traversal_in_project_ids_then_400_and_nothing_outside_is_touched(
    store, gateway, alice, sample, tmp_path
):
    before = await row_counts(store)
    root = get_settings().path(get_settings().workspace.root)
    workspaces_before = sorted(p.name for p in root.iterdir()) if root.exists() else []
    auth = {"Authorization": f"Bearer {alice}"}
    raw_paths = [
        b"/api/devteam/automation/status/../../etc",
        b"/api/devteam/automation/status/acme/../../../etc/passwd",
        b"/api/devteam/repository/tasks/acme/web/../../../../etc",
    ]
    async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as client:
        answers = []
        for bad in ("../../etc", "a/../b", "%2e%2e%2f", "acme%2F..%2F..%2Fetc",
                    "..%2F..%2Fetc%2Fpasswd", "acme/%2e%2e"):
            answers.append(await client.get(f"/api/devteam/automation/status/{bad}",
                                            headers=auth))
            answers.append(await client.get(f"/api/devteam/repository/tasks/{bad}",
                                            headers=auth))
            answers.append(await client.get("/tasks/next", params={"projectId": bad},
                                            headers=auth))
            answers.append(await client.post(f"/api/devteam/automation/pause/{bad}",
                                             headers=auth))
        for bad in ("../../etc", "a/../b", "%2e%2e%2f", "/etc/passwd", "acme/web/.."):
            answers.append(await client.post(
                "/api/devteam/automation/initialize", headers=auth,
                json={"projectId": bad, "repositoryUrl": sample.url}))
            answers.append(await client.post("/events", headers=auth, json={
                "workflow_type": "DEVTEAM_AUTOMATION", "data": {"projectId": bad}}))
        for bad_path in ("../../etc/passwd", "/etc/passwd", "docs/../../x.md"):
            answers.append(await client.post(
                "/api/devteam/repository/validate", headers=auth,
                json={"repositoryUrl": sample.url, "taskListPath": bad_path}))
            answers.append(await client.post("/api/devteam/tasks/inject", headers=auth, json={
                "projectId": PROJECT, "injectionType": "priority", "reason": "evil",
                "task": {"title": "x", "description": "x", "type": "atomic",
                         "files": [bad_path]}}))
        answers.append(await client.put(
            f"/api/devteam/repository/tasks/{PROJECT}/..%2F..%2Fx", headers=auth,
            json={"status": "done"}))
        # a remote outside the allowed roots is a result, and nothing is read from it
        outside = await client.post("/api/devteam/repository/validate", headers=auth,
                                    json={"repositoryUrl": "file:///etc"})
    for answer in answers:
        assert answer.status_code in (400, 404), (answer.request.url, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
    fields = {e["field"] for a in answers if a.status_code == 400
              for e in a.json().get("errors", [])}
    assert {"projectId", "data.projectId", "taskListPath", "task.files[0]"} <= fields, fields
    for path in raw_paths:
        status, headers, body = raw_http(gateway.port, b"GET " + path + (
            b" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + alice.encode()
            + b"\r\nConnection: close\r\n\r\n"))
        assert assert_clean_answer(status, headers, body) == "problem"
        assert status in (400, 404)
    assert outside.status_code == 200
    assert outside.json()["valid"] is False
    assert await row_counts(store) == before
    assert not (tmp_path / "etc").exists()
    assert (sorted(p.name for p in root.iterdir()) if root.exists() else []) == workspaces_before


def test_given_criteria_and_report_paths_outside_the_repo_then_config_errors_and_no_host_read(
    tmp_path,
):
    # criteria: doc.updated names a path inside the repository, never above it
    for bad in ("../../etc/passwd", "/etc/passwd", "docs/../../../x"):
        with pytest.raises(ConfigError):
            parse_requirements({"doc.updated": bad})
        with pytest.raises(ConfigError):
            parse_requirement(bad, path=True)
    # .devteam.toml report paths
    for bad in ("../../etc/passwd", "/etc/shadow", "reports/../../../x.json"):
        with pytest.raises(ConfigError, match="reports.coverage"):
            parse_project_file(f'[reports]\ncoverage = "{bad}"\n')
    # .devteam.toml (and package.json) are read only as regular files of the repository
    host_secret = tmp_path / "host-secret.toml"
    host_secret.write_text('[hosts."github.com"]\ntoken = "ghp_' + "s" * 36 + '"\n')
    cases = {
        ".devteam.toml": [host_secret, Path("/dev/zero"), Path("/etc/shadow")],
        "package.json": [host_secret],
    }
    for name, targets in cases.items():
        for target in targets:
            repo = tmp_path / f"repo-{name}-{target.name}"
            repo.mkdir()
            (repo / name).symlink_to(target)
            with pytest.raises(ConfigError, match="regular file") as caught:
                load_project_config(repo)
            assert "ghp_" not in str(caught.value.to_dict())
    device = tmp_path / "repo-device"
    device.mkdir()
    (device / "package.json").symlink_to("/dev/zero")
    assert load_project_config(device).kind == "unknown"  # not a file: never opened
    deep = tmp_path / "deep"
    deep.mkdir()
    (deep / ".devteam.toml").write_text("a = " + "[" * 50_000 + "]" * 50_000 + "\n")
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_project_config(deep)
    huge = tmp_path / "huge"
    huge.mkdir()
    (huge / ".devteam.toml").write_text("# " + "x" * 5_000_000 + "\n")
    with pytest.raises(ConfigError, match="larger than"):
        load_project_config(huge)


def test_given_task_files_outside_the_repo_then_aider_refuses_before_running(tmp_path):
    repo_path = tmp_path / "clients" / "wc"
    repo = pygit2.init_repository(str(repo_path), initial_head="main")
    (repo_path / "README.md").write_text("# x\n")
    repo.index.add_all()
    repo.index.write()
    signature = pygit2.Signature("t", "t@example.com")
    repo.create_commit("HEAD", signature, signature, "init", repo.index.write_tree(), [])
    (repo_path / "link").symlink_to(tmp_path)
    passwd = hashlib.sha256(Path("/etc/passwd").read_bytes()).hexdigest()
    tool = AiderTool(get_settings(), Redactor())

    for bad in (["../../outside.py"], ["/etc/passwd"], ["link/outside.py"], [".git/config"]):
        artifact = tool.implement(ImplementRequest(
            workdir=repo_path, task_id="1.1", title="evil", description="evil",
            files=["README.md", *bad], criteria={}, notes=[]))
        assert not artifact.success
        assert artifact.error is not None
        assert artifact.error["classification"] == "tool"
        assert "refused task files outside the working copy" in artifact.error["message"]
        assert bad[0] in artifact.error["message"]
    assert not (tmp_path / "outside.py").exists()
    assert not (tmp_path.parent / "outside.py").exists()
    assert hashlib.sha256(Path("/etc/passwd").read_bytes()).hexdigest() == passwd


TRAVERSAL_FILES_LIST = """# Evil

Phase 1: Evil (Dependencies: [])

- 1.1 Touch things outside (Dependencies: [])
  • files: ../../outside.py, /etc/passwd
"""
TRAVERSAL_CRITERIA_LIST = """# Evil

Phase 1: Evil (Dependencies: [])

- 1.1 Add and subtract (Dependencies: [])
  • files: src/calc/basic.py, tests/test_basic.py
  • doc.updated: ../../etc/passwd
"""


@pytest.mark.docker
async def test_given_task_lists_naming_paths_outside_the_repo_then_the_pipeline_refuses_them(
    store, tmp_path, attack_env, procs
):
    files_sample = create_sample(tmp_path / "files", script=model_script(),
                                 files=project_files(**{"tasks_list.md": TRAVERSAL_FILES_LIST}))
    criteria_sample = create_sample(
        tmp_path / "criteria", script=model_script(),
        files=project_files(**{"tasks_list.md": TRAVERSAL_CRITERIA_LIST}))
    passwd = hashlib.sha256(Path("/etc/passwd").read_bytes()).hexdigest()
    with ScriptedModelServer(parse_script(model_script())) as model:
        attack_env(model.url)
        procs.relay()
        procs.worker(threads=4)
        by_files = await start(store, "evil/files", files_sample.url)
        by_criteria = await start(store, "evil/criteria", criteria_sample.url)
        files_row, criteria_row = await asyncio.gather(
            wait_status(store, by_files, {"paused", "completed", "error", "stopped"}, 300),
            wait_status(store, by_criteria, {"paused", "completed", "error", "stopped"}, 300),
        )
    async with store.transaction() as session:
        errors = {
            row[0]: row[1:] for row in (await session.execute(text(
                "SELECT execution_id, stage, classification, message FROM errors "
                "WHERE execution_id IN (:a, :b)"), {"a": by_files, "b": by_criteria})).all()
        }
    # task files outside the repository: IMPLEMENT refuses them, the round fails as a tool
    # failure, and with no rounds left the execution waits for a person
    assert (files_row["status"], files_row["pause_reason"]) == ("paused", "human_review")
    stage, classification, message = errors[by_files]
    assert (stage, classification) == ("IMPLEMENT", "tool")
    assert "refused task files outside the working copy: ../../outside.py, /etc/passwd" in message
    implement = [r for r in await stage_runs(store, by_files) if r["stage"] == "IMPLEMENT"]
    assert implement[0]["result"]["outputs"]["filesModified"] == []
    # a criterion naming a path outside the repository is a configuration error
    assert criteria_row["status"] == "error", criteria_row
    stage, classification, message = errors[by_criteria]
    assert (stage, classification) == ("VERIFY", "config")
    assert "doc.updated" in message and "../../etc/passwd" in message
    # nothing outside any working copy was touched
    root = get_settings().path(get_settings().workspace.root)
    assert not list(root.rglob("outside.py"))
    assert not (root.parent / "outside.py").exists()
    assert hashlib.sha256(Path("/etc/passwd").read_bytes()).hexdigest() == passwd


# ------------------------------------------------------------------------------- oversize
def huge_handshake(port: int, token: str) -> bool:
    """Open a WebSocket with a 200 KB header; whether the server switched protocols."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(
            b"GET /ws/devteam?token=" + token.encode() + b" HTTP/1.1\r\nHost: x\r\n"
            b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: "
            + base64.b64encode(os.urandom(16)) + b"\r\nSec-WebSocket-Version: 13\r\nX-Junk: "
            + b"j" * 200_000 + b"\r\n\r\n")
        sock.settimeout(3)
        try:
            return sock.recv(64).startswith(b"HTTP/1.1 101")
        except (TimeoutError, ConnectionError):
            return False


async def until(condition, timeout: float = 30) -> None:
    """Poll ``condition`` until it holds (log lines reach the file a little later)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.2)


def big_task_list(size: int) -> str:
    lines = ["# Huge", "", "Phase 1: P (Dependencies: [])", ""]
    n, total = 0, 0
    while total < size:
        n += 1
        line = f"- 1.{n} Task {n} with a long enough title to look real (Dependencies: [])"
        lines.append(line)
        total += len(line) + 1
    return "\n".join(lines) + "\n"


async def test_given_oversize_bodies_headers_frames_and_task_lists_then_4xx_and_no_crash(
    store, gateway, alice, tmp_path
):
    huge = create_sample(tmp_path / "huge", name="huge",
                         files=project_files(**{"tasks_list.md": big_task_list(50_000_000)}))
    await add_project(store, "acme/huge", huge.url)
    before = await row_counts(store)
    auth = {"Authorization": f"Bearer {alice}"}
    limit = get_settings().gateway.max_body_bytes
    async with httpx.AsyncClient(base_url=gateway.url, timeout=120) as client:
        # bodies over the limit, with and without a length
        body = b'{"projectId": "acme/web", "pad": "' + b"x" * (limit + 10) + b'"}'
        answer = await client.post("/api/devteam/automation/initialize", content=body,
                                   headers={**auth, "Content-Type": "application/json"})
        assert answer.status_code == 413, answer.text

        async def chunks():
            for _ in range(20):
                yield b" " * (limit // 4)

        answer = await client.post("/api/devteam/automation/initialize", content=chunks(),
                                   headers={**auth, "Content-Type": "application/json"})
        assert answer.status_code == 413, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        # a body small enough but nested past the decoder's recursion limit
        for nested in ("[" * 100_000 + "]" * 100_000, '{"a":' * 50_000 + "1" + "}" * 50_000):
            answer = await client.post("/events", content=nested,
                                       headers={**auth, "Content-Type": "application/json"})
            assert answer.status_code == 400, answer.text
            assert "nested deeper" in answer.json()["detail"]
        # huge headers
        for name in ("X-Junk", "Authorization", "X-Correlation-Id", "Idempotency-Key"):
            answer = await client.get(f"/api/devteam/automation/status/{PROJECT}",
                                      headers={**auth, name: "h" * 200_000})
            assert answer.status_code == 431, (name, answer.status_code, answer.text[:200])
            assert answer.headers["content-type"] == "application/problem+json"
        # a 50 MB task list is refused, not parsed
        answer = await client.get("/api/devteam/repository/tasks/acme/huge", headers=auth)
        assert answer.status_code == 422, answer.text
        assert "larger than" in answer.json()["detail"]
        answer = await client.get("/tasks/next", params={"projectId": "acme/huge"}, headers=auth)
        assert answer.status_code == 422, answer.text
        answer = await client.post("/api/devteam/repository/validate", headers=auth,
                                   json={"repositoryUrl": huge.url})
        assert answer.status_code == 200, answer.text
        assert answer.json()["valid"] is False
        assert any("larger than" in p for p in answer.json()["problems"])
        assert (await client.get("/health")).status_code in (200, 503)
    # a WebSocket handshake with huge headers is refused (the WebSocket library allows 8 KB
    # per header line and answers 431; that answer is logged at once but only reaches the
    # client when the connection closes, so the test reads the gateway's log)
    accepted = await asyncio.to_thread(huge_handshake, gateway.port, alice)
    assert not accepted
    await until(lambda: "431 Request Header Fields Too Large" in gateway.output())

    def big_frame() -> dict:
        with connect(ws_url(gateway.url, alice), max_size=2**22, open_timeout=10) as ws:
            ws.recv(timeout=10)  # connection-established
            ws.recv(timeout=10)  # replay-complete: no backlog
            ws.send("y" * 10_241)
            reply = json.loads(ws.recv(timeout=10))
            ws.send('{"type": "ping"}')
            assert json.loads(ws.recv(timeout=10))["type"] == "pong"
            return reply

    reply = await asyncio.to_thread(big_frame)
    assert reply["type"] == "error" and "10 KB" in reply["payload"]["message"]
    assert gateway.alive()
    assert await row_counts(store) == before
    assert "gateway.unhandled" not in gateway.output()
