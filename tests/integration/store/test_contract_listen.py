"""LISTEN through the store port, against Postgres (a connection of its own) and the
in-memory store alike: a committed transaction's NOTIFYs are heard once per distinct
payload, a rolled back one's never, and a closed listener hears nothing more."""

from __future__ import annotations

import asyncio
import uuid

from tests.integration.store.test_contract import CUSTOMER, PROJECT, URL, backend, port, start

from pipeline.store.outbox import OUTBOX_CHANNEL, NewCommand
from pipeline.store.port import StorePort

__all__ = ["backend", "port"]  # the fixtures, shared with the main contract suite

GUARD = 30  # a hang fails the test instead of blocking the run; no timing is asserted


class Heard:
    def __init__(self) -> None:
        self.payloads: list[str] = []
        self.changed = asyncio.Event()

    def __call__(self, payload: str) -> None:
        self.payloads.append(payload)
        self.changed.set()

    async def until(self, count: int) -> None:
        async with asyncio.timeout(GUARD):
            while len(self.payloads) < count:
                self.changed.clear()
                await self.changed.wait()


def _command(execution_id: uuid.UUID) -> NewCommand:
    return NewCommand(execution_id=execution_id, customer_id=CUSTOMER, actor="stage_init",
                      payload={"stage": "INIT"}, correlation_id="c-1")


async def test_committed_notifies_are_heard_once_and_rolled_back_ones_never(
    port: StorePort,
) -> None:
    async with port.tx() as tx:
        await tx.projects.upsert(PROJECT, CUSTOMER, URL)
        _, execution = await start(tx)
    heard = Heard()
    listening = await port.listen(OUTBOX_CHANNEL, heard)
    try:
        try:
            async with port.tx() as tx:
                await tx.outbox.enqueue(_command(execution))
                raise RuntimeError("rolled back")
        except RuntimeError:
            pass
        async with port.tx() as tx:  # two commands, one NOTIFY
            await tx.outbox.enqueue(_command(execution))
            await tx.outbox.enqueue(_command(execution))
        async with port.tx() as tx:
            await tx.outbox.enqueue(_command(execution))
        # the second commit's NOTIFY is heard after every earlier one (commit order)
        await heard.until(2)
        assert heard.payloads == ["", ""]
        await listening.probe()
        assert not listening.lost.is_set()
    finally:
        await listening.close()


async def test_a_closed_listener_hears_nothing_more(port: StorePort) -> None:
    async with port.tx() as tx:
        await tx.projects.upsert(PROJECT, CUSTOMER, URL)
        _, execution = await start(tx)
    closed, open_ = Heard(), Heard()
    first = await port.listen(OUTBOX_CHANNEL, closed)
    second = await port.listen(OUTBOX_CHANNEL, open_)
    try:
        await first.close()
        async with port.tx() as tx:
            await tx.outbox.enqueue(_command(execution))
        await open_.until(1)
        assert closed.payloads == []
    finally:
        await second.close()
