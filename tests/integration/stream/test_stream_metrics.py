"""The live stream's metrics on a real gateway process: clients connected, frames sent,
the commit → frame lag, and frames dropped and resynced for a client that cannot keep up."""

from __future__ import annotations

import asyncio
import time

import httpx
from prometheus_client.parser import text_string_to_metric_families
from tests.support.streams import RawWsClient, connect, new_execution, read_frames, write, ws_url

from pipeline import stream


def scrape(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith("devteam_stream_"):
                key = s.name + "".join(f",{k}={v}" for k, v in sorted(s.labels.items()))
                values[key] = values.get(key, 0.0) + s.value
    return values


async def until(url: str, key: str, wanted: float, timeout: float = 30) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    values: dict[str, float] = {}
    while time.monotonic() < deadline:
        values = await asyncio.to_thread(scrape, url)
        if values.get(key, 0.0) == wanted:
            return values
        await asyncio.sleep(0.1)
    raise AssertionError(f"{key} never became {wanted}: {values}")


async def test_clients_frames_and_lag_are_counted(store, procs, token_for) -> None:
    gateway = procs.gateway()
    execution = await new_execution(store, "acme/web")
    before = scrape(gateway.url)
    assert before["devteam_stream_clients"] == 0
    # Given two clients watching acme/web
    token = token_for("alice", ["acme/*"])
    first = await connect(ws_url(gateway.url, token, "acme/web"))
    second = await connect(ws_url(gateway.url, token, "acme/web"))
    await until(gateway.url, "devteam_stream_clients", 2)
    # When three notifications are committed and both read them
    await write(store, execution, 3)
    assert len(await read_frames(first, 3)) == 3
    assert len(await read_frames(second, 3)) == 3
    after = await until(gateway.url, "devteam_stream_frames_sent_total",
                        before["devteam_stream_frames_sent_total"] + 6)
    # Then six frames were sent, three were published with a measured lag
    lag = after["devteam_stream_commit_lag_seconds_count"] - before.get(
        "devteam_stream_commit_lag_seconds_count", 0)
    assert lag == 3
    assert after["devteam_stream_commit_lag_seconds_sum"] >= 0
    # and the clients are gone once they close
    await first.close()
    await second.close()
    await until(gateway.url, "devteam_stream_clients", 0)


async def test_a_slow_client_s_dropped_frames_and_resync_are_counted(
    store, procs, token_for
) -> None:
    gateway = procs.gateway(DEVTEAM_GATEWAY_WS_QUEUE_SIZE="20")
    execution = await new_execution(store, "acme/web")
    token = token_for("alice", ["acme/*"])
    # Given a client that reads nothing (tiny receive buffer)
    slow = await asyncio.to_thread(RawWsClient, ws_url(gateway.url, token, "acme/web"))
    assert (await asyncio.to_thread(slow.frame))["type"] == "connection-established"
    # When far more frames are written than its queue and the kernel buffers hold
    big = "x" * 32_000
    for i in range(300):
        async with store.tx() as tx:
            await stream.append(tx, execution, [(
                "execution-log",
                {"level": "info", "stage": "T", "taskId": "1", "lines": [f"{i} {big}"]})])

    def drain() -> list[str]:
        types: list[str] = []
        seen = 0
        while seen < 300:
            frame = slow.frame()
            if frame is None:
                continue
            types.append(frame["type"])
            seen += frame["id"] is not None  # not resync, replay-complete
        slow.close()
        return types

    types = await asyncio.wait_for(asyncio.to_thread(drain), 120)
    assert "resync" in types
    # Then the gateway counted what it dropped from the queue and the resync it sent
    values = await asyncio.to_thread(scrape, gateway.url)
    assert values["devteam_stream_frames_dropped_total"] >= 20
    assert values["devteam_stream_resyncs_total,reason=overflow"] == types.count("resync")
