"""The hub in process on a real database: the rows a NOTIFY carries are published as they
are, and whatever a NOTIFY does not carry (too long for one, or a NOTIFY lost) is read
from the table: in order, nothing missed, nothing twice, the same bytes as a replay. A
client's backlog does not depend on how far the hub has got."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import pytest
from tests.support.streams import new_execution, payload, write

from gateway.auth import Principal
from gateway.fanout import Hub, Item, Subscriber
from pipeline import stream
from pipeline.store.notifications import NOTIFY_MAX, notified
from runner.settings import Settings, get_settings

HubT = TypeVar("HubT", bound=Hub)


class LossyHub(Hub):
    """A hub that never hears the NOTIFYs announcing the positions in ``lose``."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.heard: list[str] = []
        self.lose: set[int] = set()

    def _notified(self, payload: str) -> None:
        self.heard.append(payload)
        if notified(payload)[0] not in self.lose:
            super()._notified(payload)


class HeldHub(Hub):
    """A hub that publishes nothing while ``held`` is clear: frames are committed (and
    NOTIFY'd) but not yet published, as when the hub is a moment behind the database."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.held = asyncio.Event()  # set: publishing is allowed
        self.held.set()

    def _publish(self, rows: list[Any]) -> None:
        if self.held.is_set():  # else dropped: the next read of the table finds them
            super()._publish(rows)


@asynccontextmanager
async def _running(hub: HubT) -> AsyncIterator[HubT]:
    """``hub`` started and listening, stopped afterwards."""
    await hub.start()
    try:
        await asyncio.wait_for(hub.listen_connected.wait(), 30)
        yield hub
    finally:
        await hub.stop()


@pytest.fixture
async def hub(env: dict[str, str]) -> AsyncIterator[LossyHub]:
    async with _running(LossyHub(get_settings())) as running:
        yield running


@pytest.fixture
async def held_hub(env: dict[str, str]) -> AsyncIterator[HeldHub]:
    async with _running(HeldHub(get_settings())) as running:
        yield running


async def _live(hub: Hub, sub: Subscriber, cursor: int, n: int) -> list[Item]:
    """The next ``n`` stored frames ``sub`` gets (control items skipped)."""
    got: list[Item] = []
    frames = hub.frames(sub, cursor)
    try:
        async with asyncio.timeout(30):
            async for item in frames:
                if item.pos >= 0 and item.data.startswith(b'{"id":"'):
                    got.append(item)
                    if len(got) == n:
                        return got
    finally:
        await frames.aclose()  # type: ignore[attr-defined]
    return got


async def test_rows_carried_too_long_or_lost_all_arrive_in_order_as_replayed(
        store: Any, hub: LossyHub) -> None:
    execution = await new_execution(store, "acme/web")
    sub = Subscriber(principal=Principal(user_id="ann", role="viewer", projects=("acme/*",)),
                     projects=frozenset({"acme/web"}))
    cursor = await hub.subscribe(sub, None)
    hub.lose = {cursor + 1, cursor + 5}  # the first log's NOTIFY and the second update's
    big = {**payload("execution-log"), "lines": ["x" * 1000] * (NOTIFY_MAX // 1000 + 1)}
    await write(store, execution, 2)
    async with store.tx() as tx:  # too long to ride in its NOTIFY
        await stream.append(tx, execution, [("execution-log", big)])
    await write(store, execution, 4, kind="execution-update")
    live = await _live(hub, sub, cursor, 7)
    assert [i.pos for i in live] == list(range(cursor + 1, cursor + 8))
    # seven NOTIFYs, two of them lost; the long one's carried its position only
    ours = [note for note in hub.heard if notified(note)[0] > cursor]
    assert [notified(note)[0] for note in ours] == list(range(cursor + 1, cursor + 8))
    assert [note.startswith("[") for note in ours] == [True, True, False, True, True, True,
                                                       True]
    # and byte for byte what a client resuming from the same cursor is sent
    replayed, _ = await hub.read(cursor, cursor + 7, sub)
    assert [i.data for i in live] == [i.data for i in replayed]


async def test_a_frame_committed_while_a_client_connects_without_since_arrives_live(
        store: Any, hub: LossyHub) -> None:
    """Without ``since`` nothing is replayed, however busy the stream: a frame committed
    and published by the hub while the subscription reads the head (as under load) used to
    be read back from the table and counted in ``replay-complete`` (``replayed`` 1, the
    frame before the marker); it is live, after the marker, and the marker says 0."""
    execution = await new_execution(store, "acme/web")
    sub = Subscriber(principal=Principal(user_id="ann", role="viewer", projects=("acme/*",)),
                     projects=frozenset({"acme/web"}))
    head = hub.head

    async def busy_head() -> int:
        at = await head()
        before = hub.published
        await write(store, execution, 1)  # committed after the head was read ...
        async with asyncio.timeout(30):  # ... and published before the client is live
            while hub.published == before:
                await asyncio.sleep(0.005)
        return at

    hub.head = busy_head  # type: ignore[method-assign]
    cursor = await hub.subscribe(sub, None)
    hub.head = head  # type: ignore[method-assign]
    frames = hub.frames(sub, cursor)
    try:
        async with asyncio.timeout(30):
            first = await anext(frames)  # type: ignore[call-overload]
            second = await anext(frames)  # type: ignore[call-overload]
    finally:
        await frames.aclose()  # type: ignore[attr-defined]
    assert first.type == "replay-complete"
    assert (first.pos, first.data) == (cursor, b"0")
    assert second.pos == cursor + 1 and second.data.startswith(b'{"id":"')


async def test_a_frame_committed_before_a_client_resumes_is_in_its_backlog_before_the_marker(
        store: Any, held_hub: HeldHub) -> None:
    """The backlog of a client resuming from a cursor reaches what was committed when it
    connected, not only what the hub had published: a frame whose NOTIFY the hub had not
    yet acted on used to come after ``replay-complete`` (the Node client's test saw 30 of
    31 frames in its backlog, once in CI)."""
    execution = await new_execution(store, "acme/web")
    sub = Subscriber(principal=Principal(user_id="ann", role="viewer", projects=("acme/*",)),
                     projects=frozenset({"acme/web"}))
    since = await held_hub.head()
    async with asyncio.timeout(30):
        while held_hub.published < since:
            await asyncio.sleep(0.005)
    # Given three frames committed while the hub publishes nothing
    held_hub.held.clear()
    await write(store, execution, 3)
    assert held_hub.published == since
    # When a client resumes from before them
    cursor = await held_hub.subscribe(sub, since)
    frames = held_hub.frames(sub, cursor)
    got: list[Item] = []
    try:
        async with asyncio.timeout(30):
            while not got or got[-1].type != "replay-complete":
                got.append(await anext(frames))  # type: ignore[call-overload]
            # and the hub catches up (offering it the same three), then one more is written
            held_hub.held.set()
            await write(store, execution, 1)
            got.append(await anext(frames))  # type: ignore[call-overload]
    finally:
        await frames.aclose()  # type: ignore[attr-defined]
    # Then the three are its backlog, the marker counts them, and the next is live, once
    assert [i.pos for i in got[:3]] == [since + 1, since + 2, since + 3]
    assert got[3].type == "replay-complete" and (got[3].pos, got[3].data) == (since + 3, b"3")
    assert got[4].pos == since + 4 and got[4].data.startswith(b'{"id":"')
