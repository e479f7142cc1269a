"""The TypeScript client (clients/typescript) against a real gateway process.

The client is built with ``tsc`` and its Node test suite (``node --test``) runs against a
``devteam serve`` on this test's database: replay after a forced disconnect is gapless on
WebSocket and SSE, 4403 does not loop, a token refresh after 4401 (the gateway closes an
expired token's stream) resumes, REST errors are typed exceptions, writes carry an
Idempotency-Key. Node and npm are required: without them this fails, it never skips.

The Node tests drive the database through a small loopback HTTP hook served here (make an
execution, append frames, mint a token), so frames are written exactly when a test needs
them (while the client is disconnected, say) by the pipeline's own ``stream.append``.

The generated types cannot drift: ``openapi.json`` (without its made-up examples) and
``asyncapi.json`` must be what the gateway serves now, and ``schema.d.ts`` and
``frames.schema.d.ts`` what openapi-typescript makes of them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from tests.support.locks import file_lock
from tests.support.streams import new_execution, write

from gateway.auth import mint
from pipeline.db import Store
from runner.settings import get_settings

ROOT = Path(__file__).resolve().parents[3]
PACKAGE = ROOT / "clients" / "typescript"
EXPORT = PACKAGE / "scripts" / "export_documents.py"
# the whole Node suite; a hung one is killed and its output reported
NODE_TIMEOUT = int(os.environ.get("DEVTEAM_TEST_NODE_TIMEOUT", "240"))


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:  # a failure, not a skip: `make setup` installs Node from Debian
        pytest.fail(f"{name} is not installed; run `make setup` (it installs nodejs and npm)")
    return path


def _run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=PACKAGE, capture_output=True, text=True, timeout=300,
                          check=False, **kwargs)


@pytest.fixture(scope="module")
def installed() -> None:
    """``npm ci`` unless node_modules matches the lock file (the stamp ``make setup`` leaves)."""
    _tool("node")
    npm = _tool("npm")
    digest = hashlib.sha256((PACKAGE / "package-lock.json").read_bytes()).hexdigest()[:16]
    stamp = PACKAGE / "node_modules" / f".stamp-{digest}"
    # module fixtures are set up before the module's per-test lock (conftest.ONE_AT_A_TIME)
    # is taken: two workers must not run npm ci into one node_modules at once
    with file_lock("npm-ci-typescript-client"):
        if not stamp.exists():
            done = _run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"])
            assert done.returncode == 0, done.stdout + done.stderr
            stamp.touch()


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The documents the gateway builds now (from the code the server runs), exported once
    for both of them: the exporter imports the whole gateway."""
    folder = tmp_path_factory.mktemp("documents")
    done = subprocess.run([sys.executable, str(EXPORT), str(folder)], capture_output=True,
                          text=True, cwd=ROOT, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return folder


@pytest.mark.parametrize("name", ["openapi.json", "asyncapi.json"])
def test_the_committed_documents_are_the_ones_the_gateway_serves(
    name: str, exported: Path
) -> None:
    # Given the documents the gateway builds now (from the code the server runs)
    # Then the client's copy (its types are generated from it) is that document, exactly
    fresh = (exported / name).read_text(encoding="utf-8")
    committed = (PACKAGE / name).read_text(encoding="utf-8")
    assert json.loads(fresh) == json.loads(committed), (
        f"clients/typescript/{name} is stale: run `npm run generate` in clients/typescript "
        "and commit openapi.json, asyncapi.json and the generated src/*.d.ts")
    assert fresh == committed


def test_the_generated_types_are_what_openapi_typescript_makes_of_the_documents(
    installed: None,
) -> None:
    # schema.d.ts from openapi.json, frames.schema.d.ts from asyncapi.json
    done = _run([_tool("npm"), "run", "--silent", "check:schema"])
    assert done.returncode == 0, done.stdout + done.stderr


# ---- the Node suite against a real gateway -------------------------------------------------

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


async def _serve_hooks(handlers: dict[str, Handler]) -> asyncio.Server:
    """A minimal HTTP/1.1 server on loopback: ``POST /<name>`` with a JSON body calls
    ``handlers[name]`` and answers its JSON (500 with the error's text if it raised)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                _method, path, _version = lines[0].split(" ", 2)
                length = 0
                for line in lines[1:]:
                    key, _, value = line.partition(":")
                    if key.strip().lower() == "content-length":
                        length = int(value.strip())
                body = json.loads(await reader.readexactly(length) or b"{}") if length else {}
                handler = handlers.get(path.strip("/"))
                status, answer = 404, {"error": f"no hook {path}"}
                if handler is not None:
                    try:
                        status, answer = 200, await handler(body)
                    except Exception as exc:  # noqa: BLE001 - reported to the Node test
                        status, answer = 500, {"error": f"{type(exc).__name__}: {exc}"}
                data = json.dumps(answer).encode()
                writer.write(f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                             f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


@pytest.mark.slow
async def test_the_node_suite_passes_against_a_real_gateway(
    installed: None, store: Store, procs: Any
) -> None:
    node, npm = _tool("node"), _tool("npm")
    # Given the client and its tests built with tsc (afresh: no stale test file runs)
    shutil.rmtree(PACKAGE / "dist-test", ignore_errors=True)
    for script in ("build", "build:test"):
        done = _run([npm, "run", "--silent", script])
        assert done.returncode == 0, f"npm run {script} failed:\n{done.stdout}{done.stderr}"
    # and a real gateway that ends a stream when its token expires (no leeway)
    gateway = procs.gateway(DEVTEAM_JWT_LEEWAY_SECONDS="0")
    settings = get_settings()

    async def execution(body: dict[str, Any]) -> dict[str, Any]:
        return {"executionId": str(await new_execution(store, body["projectId"]))}

    async def frames(body: dict[str, Any]) -> dict[str, Any]:
        await write(store, uuid.UUID(body["executionId"]), int(body["n"]))
        return {}

    async def project(body: dict[str, Any]) -> dict[str, Any]:
        async with store.transaction() as session:
            await session.execute(
                text("INSERT INTO projects (project_id, customer_id, repository_url) "
                     "VALUES (:p, :c, 'file:///nonexistent.git')"),
                {"p": body["projectId"], "c": body["projectId"].split("/", 1)[0]})
        return {}

    async def token(body: dict[str, Any]) -> dict[str, Any]:
        return {"token": mint(settings, sub=body.get("sub", "alice"),
                              projects=body.get("projects", ["acme/*"]),
                              role=body.get("role", "developer"),
                              ttl=int(body.get("ttl", 3600)))}

    async def stage_run(body: dict[str, Any]) -> dict[str, Any]:
        # a finished stage run with its usage, as the pipeline records one
        async with store.transaction() as session:
            await session.execute(
                text("INSERT INTO stage_runs (execution_id, task_id, stage, attempt, status, "
                     "usage, finished_at) VALUES (:e, '1.1', :s, :a, 'succeeded', "
                     "CAST(:u AS jsonb), :f)"),
                {"e": uuid.UUID(body["executionId"]), "s": body["stage"],
                 "a": int(body["attempt"]), "u": json.dumps(body["usage"]),
                 "f": datetime.fromisoformat(body["finishedAt"])})
        return {}

    hooks = await _serve_hooks({"execution": execution, "frames": frames,
                                "project": project, "token": token, "stage-run": stage_run})
    port = hooks.sockets[0].getsockname()[1]
    env = {**os.environ,
           "DEVTEAM_GATEWAY_URL": gateway.url,
           "DEVTEAM_TEST_HOOKS_URL": f"http://127.0.0.1:{port}",
           "DEVTEAM_TEST_TOKEN": mint(settings, sub="alice", projects=["acme/*"])}
    try:
        # When the Node test runner runs the client's suite
        proc = await asyncio.create_subprocess_exec(
            node, "--test", "--test-reporter=spec",
            *sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.glob("dist-test/test/*.test.js")),
            cwd=PACKAGE, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            start_new_session=True)
        chunks: list[bytes] = []

        async def drain() -> None:
            assert proc.stdout is not None
            while chunk := await proc.stdout.read(65536):
                chunks.append(chunk)

        reading = asyncio.create_task(drain())
        try:
            await asyncio.wait_for(proc.wait(), timeout=NODE_TIMEOUT)
        except TimeoutError:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        await reading
        output = b"".join(chunks)
    finally:
        hooks.close()
        await hooks.wait_closed()
    report = output.decode(errors="replace")
    # Then every Node test passed (and some ran)
    assert proc.returncode == 0, (f"node --test failed:\n{report}\n--- gateway log (tail) ---\n"
                                  f"{gateway.output()[-4000:]}")
    counts = dict(re.findall(r"^\S* ?(pass|fail) (\d+)$", report, re.MULTILINE))
    assert counts.get("fail") == "0" and int(counts.get("pass", "0")) > 0, report
