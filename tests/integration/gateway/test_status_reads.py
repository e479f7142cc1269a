"""Status reads that arrive together are answered by one statement on Postgres
(``gateway.coalesce``), and each request still gets its own project's answer, sees every
write committed before it was sent, and a project that never ran is still a 404.

The requests go to the app over ASGI in this test's event loop, all at once (the test
client sends one at a time), so the test can count the statements the app's store runs."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from tests.integration.gateway.conftest import add_project, set_status, start

from gateway.app import create_app
from runner.settings import get_settings

STATUS = "/api/devteam/automation/status/{}"


async def get(app: Any, path: str, headers: dict[str, str]) -> tuple[int, Any]:
    """One GET straight to the ASGI app: its status and JSON body."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 80),
        "headers": [(b"host", b"gateway.local"),
                    *((k.lower().encode(), v.encode()) for k, v in headers.items())],
    }
    asked = False
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal asked
        if not asked:
            asked = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # the client never leaves
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body)


def count_reads(store: Any) -> list[int]:
    """Count the connections the app's store lends for reads (one statement each here)."""
    opened: list[int] = []
    reads = store.reads

    @contextlib.asynccontextmanager
    async def counted() -> AsyncIterator[Any]:
        opened.append(1)
        async with reads() as q:
            yield q

    store.reads = counted
    return opened


async def test_status_reads_sent_together_are_one_statement_each_its_own_answer(
    env, store, sample, alice,
) -> None:
    projects = [f"acme/p{i}" for i in range(12)]
    executions = {}
    for project in projects:
        await add_project(store, project, sample.url)
        executions[project] = await start(store, project)
    await set_status(store, projects[3], "paused", "asked")
    app = create_app(get_settings())
    async with app.lifespan():
        opened = count_reads(app.state.store)
        asked = [*projects, "acme/never-ran", projects[0]]
        answers = await asyncio.gather(*(get(app, STATUS.format(p), alice) for p in asked))
        assert [code for code, _ in answers] == [200] * len(projects) + [404, 200]
        for project, (code, body) in zip(asked, answers, strict=True):
            if code == 200:
                assert body["projectId"] == project
                assert body["executionId"] == str(executions[project])
                assert body["status"] == ("paused" if project == projects[3]
                                          else "initializing")
        assert len(opened) == 1  # one statement for all fourteen
        # a write committed before the next read is seen by it
        await set_status(store, projects[5], "paused", "asked")
        code, body = await get(app, STATUS.format(projects[5]), alice)
        assert (code, body["status"]) == (200, "paused")
        assert len(opened) == 2
