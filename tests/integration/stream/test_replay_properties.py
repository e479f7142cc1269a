"""Nothing lost, nothing twice: concurrent writers, clients that drop and resume, slow
clients, SSE, and a Postgres restart in the middle of a stream."""

from __future__ import annotations

import asyncio
import json
import random
from collections import defaultdict

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.support.streams import RawWsClient, connect, new_execution, write, ws_url

from pipeline import stream
from pipeline.db import StoreUnavailable

EXECUTIONS = 20
FRAMES_PER_EXECUTION = 15


@pytest.fixture
def gateway(procs):
    return procs.gateway()


async def _resuming_client(url_for, expected: int, budgets: list[int]
                           ) -> dict[str, list[int]]:
    """Reads until it has ``expected`` frames, dropping the socket after ``budgets[i]``
    frames on its i-th connection (cycling) and resuming from its last cursor. Returns the
    seq numbers received per execution."""
    seqs: dict[str, list[int]] = defaultdict(list)
    cursor: str | None = "0"
    received = 0
    connection = 0
    while received < expected:
        # An unbounded client queue: with websockets' default (16) a client that stops
        # reading pauses its transport, so its close() never sees the server's echo
        # behind the frames still in flight and waits out its 10 s close timeout.
        ws = await connect(url_for(cursor), max_queue=None)
        budget = budgets[connection % len(budgets)]
        connection += 1
        try:
            async with asyncio.timeout(30):
                while received < expected and budget > 0:
                    frame = json.loads(await ws.recv())
                    if frame["id"] is None:  # resync, replay-complete
                        continue
                    seqs[frame["executionId"]].append(frame["seq"])
                    cursor = frame["id"]
                    received += 1
                    budget -= 1
        finally:
            await ws.close()
    return seqs


async def test_concurrent_executions_and_resuming_clients_see_exactly_1_to_n(
    store, gateway, token_for
) -> None:
    rng = random.Random(20261204)
    # Given 20 executions in 20 projects of one customer
    executions = [await new_execution(store, f"acme/p{i}") for i in range(EXECUTIONS)]
    token = token_for("watcher", ["acme/*"])
    total = EXECUTIONS * (FRAMES_PER_EXECUTION + 1)

    def url_for(cursor: str | None) -> str:
        return ws_url(gateway.url, token, since=cursor)

    # When they all write concurrently while three clients drop and resume at random
    clients = [
        asyncio.create_task(_resuming_client(
            url_for, total, [rng.randint(1, 40) for _ in range(50)]))
        for _ in range(3)
    ]
    await asyncio.gather(*(write(store, e, FRAMES_PER_EXECUTION) for e in executions))
    results = await asyncio.gather(*clients)
    # Then every client saw, per execution, exactly 1..N in order
    for seqs in results:
        assert set(seqs) == {str(e) for e in executions}
        for got in seqs.values():
            assert got == list(range(1, FRAMES_PER_EXECUTION + 2))


@pytest.fixture
async def history(store, gateway, token_for):
    """Five executions' frames, written once for every example of the property below."""
    executions = [await new_execution(store, f"acme/h{i}") for i in range(5)]
    await asyncio.gather(*(write(store, e, FRAMES_PER_EXECUTION) for e in executions))
    return executions, token_for("watcher", ["acme/*"])


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(budgets=st.lists(st.integers(min_value=1, max_value=30), min_size=1, max_size=12))
async def test_a_client_dropping_anywhere_and_resuming_sees_each_frame_once_in_order(
    gateway, history, budgets
) -> None:
    executions, token = history
    total = len(executions) * (FRAMES_PER_EXECUTION + 1)

    def url_for(cursor: str | None) -> str:
        return ws_url(gateway.url, token, since=cursor)

    # When a client drops its socket after each number of frames in ``budgets`` (cycling)
    # and resumes from the last cursor it saw
    seqs = await _resuming_client(url_for, total, budgets)
    # Then it saw every execution's frames exactly once, 1..N in order
    assert set(seqs) == {str(e) for e in executions}
    for got in seqs.values():
        assert got == list(range(1, FRAMES_PER_EXECUTION + 2))


async def test_a_slow_client_gets_resync_and_then_everything_while_others_are_unaffected(
    store, procs, token_for
) -> None:
    gateway = procs.gateway(DEVTEAM_GATEWAY_WS_QUEUE_SIZE="20")
    execution = await new_execution(store, "acme/web")
    token = token_for("alice", ["acme/*"])
    # Given a client that reads nothing (tiny receive buffer) and one that keeps up
    slow = await asyncio.to_thread(RawWsClient, ws_url(gateway.url, token, "acme/web"))
    assert (await asyncio.to_thread(slow.frame))["type"] == "connection-established"
    fast = await connect(ws_url(gateway.url, token, "acme/web"))
    fast_seqs: list[int] = []

    async def read_fast() -> None:
        async with asyncio.timeout(120):
            while len(fast_seqs) < 400:
                frame = json.loads(await fast.recv())
                if frame["id"] is not None:  # not resync, replay-complete
                    fast_seqs.append(frame["seq"])

    reader = asyncio.create_task(read_fast())
    # When 400 frames of 32 KB (far more than the kernel buffers hold) are written
    big = "x" * 32_000
    for i in range(400):
        async with store.tx() as tx:
            await stream.append(
                tx,
                execution,
                [
                    (
                        "execution-log",
                        {"level": "info", "stage": "T", "taskId": "1", "lines": [f"{i} {big}"]},
                    )
                ],
            )
    await reader
    await fast.close()

    def drain_slow() -> tuple[list[str], list[int]]:
        types: list[str] = []
        seqs: list[int] = []
        while len(seqs) < 400:
            frame = slow.frame()
            if frame is None:
                continue
            types.append(frame["type"])
            if frame["id"] is not None:  # not resync, replay-complete
                seqs.append(frame["seq"])
        slow.close()
        return types, seqs

    slow_types, slow_seqs = await asyncio.wait_for(asyncio.to_thread(drain_slow), 120)
    # Then the fast client saw everything at once, and the slow one was told to resync
    # and was then served every frame from the table, in order, none twice
    assert fast_seqs == list(range(2, 402))
    assert "resync" in slow_types
    assert slow_seqs == list(range(2, 402))


async def test_sse_carries_the_same_frames_and_resumes_with_last_event_id(
    store, gateway, token_for
) -> None:
    execution = await new_execution(store, "acme/web")
    await write(store, execution, 3)
    headers = {"Authorization": f"Bearer {token_for('alice', ['acme/*'])}"}
    url = f"{gateway.url}/api/devteam/stream?projectId=acme/web&since=0"

    async def read_sse(extra: dict[str, str], count: int) -> list[tuple[str, dict]]:
        events: list[tuple[str, dict]] = []
        async with (
            httpx.AsyncClient(timeout=10) as client,
            client.stream(
                "GET",
                url if "Last-Event-ID" not in extra else url.replace("&since=0", ""),
                headers={**headers, **extra},
            ) as response,
        ):
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            event_id = ""
            async for line in response.aiter_lines():
                if line.startswith("id: "):
                    event_id = line[4:]
                elif line.startswith("data: "):
                    frame = json.loads(line[6:])
                    if frame["type"] != "connection-established":
                        events.append((event_id, frame))
                        if len(events) == count:
                            return events
        return events

    first = await read_sse({}, 2)
    assert [f["seq"] for _, f in first] == [1, 2]
    assert first[1][0] == first[1][1]["id"]
    rest = await read_sse({"Last-Event-ID": first[1][0]}, 2)
    assert [f["seq"] for _, f in rest] == [3, 4]


async def test_sse_rejects_a_bad_token_and_a_foreign_project(gateway, token_for) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        r = await client.get(f"{gateway.url}/api/devteam/stream")
        assert r.status_code == 401
        assert r.headers["content-type"].startswith("application/problem+json")
        r = await client.get(
            f"{gateway.url}/api/devteam/stream?projectId=globex/api",
            headers={"Authorization": f"Bearer {token_for('alice', ['acme/*'])}"},
        )
        assert r.status_code == 403


def _restart_postgres() -> None:
    from tests.support.stack import restart_postgres

    restart_postgres()


async def _write_with_retry(store, execution, n: int) -> None:
    written = 0
    while written < n:
        try:
            await write(store, execution, 1)
            written += 1
        except StoreUnavailable:
            await asyncio.sleep(0.2)


async def test_a_postgres_restart_mid_stream_loses_and_repeats_nothing(
    store, gateway, token_for
) -> None:
    execution = await new_execution(store, "acme/web")
    token = token_for("alice", ["acme/*"])
    clients = [await connect(ws_url(gateway.url, token, "acme/web")) for _ in range(3)]
    await _write_with_retry(store, execution, 10)
    await asyncio.to_thread(_restart_postgres)
    await _write_with_retry(store, execution, 10)
    for ws in clients:
        seqs: list[int] = []
        async with asyncio.timeout(30):
            while len(seqs) < 20:
                frame = json.loads(await ws.recv())
                if frame["id"] is not None:  # not resync, replay-complete
                    seqs.append(frame["seq"])
        await ws.close()
        assert seqs == list(range(2, 22))
