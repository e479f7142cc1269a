"""``Coalesced``: the reads asked for in one turn of the event loop are one fetch of their
distinct keys; each caller gets its own key's value (None when there is none), a failure
reaches exactly the callers of the failed fetch, a caller that leaves takes nothing from
the others, and the fetch never runs in a caller's context. (Through the gateway on a
real Postgres: ``tests/integration/gateway/test_status_reads.py``.)"""

from __future__ import annotations

import asyncio
import contextvars

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.coalesce import Coalesced

caller_var: contextvars.ContextVar[str] = contextvars.ContextVar("caller", default="none")


class Table:
    """A fetch over a dict that records every call, and can be held or made to fail."""

    def __init__(self, values: dict[str, int]) -> None:
        self.values = values
        self.calls: list[list[str]] = []
        self.contexts: list[str] = []
        self.gate: asyncio.Event | None = None
        self.fail: Exception | None = None

    async def fetch(self, keys: list[str]) -> dict[str, int]:
        self.calls.append(list(keys))
        self.contexts.append(caller_var.get())
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return {k: self.values[k] for k in keys if k in self.values}


async def fetching(table: Table) -> None:
    """Until the fetch has been called (a few turns of the loop)."""
    for _ in range(100):
        if table.calls:
            return
        await asyncio.sleep(0)
    raise AssertionError("no fetch")


async def test_reads_of_one_turn_are_one_fetch_of_their_distinct_keys() -> None:
    table = Table({"a": 1, "b": 2, "c": 3})
    loader: Coalesced[str, int] = Coalesced(table.fetch)
    got = await asyncio.gather(*(loader.load(k) for k in ["a", "b", "a", "missing", "c"]))
    assert got == [1, 2, 1, None, 3]
    assert table.calls == [["a", "b", "missing", "c"]]


async def test_reads_of_later_turns_are_fetches_of_their_own() -> None:
    table = Table({"a": 1, "b": 2})
    loader: Coalesced[str, int] = Coalesced(table.fetch)
    assert await loader.load("a") == 1
    assert await loader.load("b") == 2
    table.values["a"] = 10  # a later read sees what was written after the earlier one
    assert await loader.load("a") == 10
    assert table.calls == [["a"], ["b"], ["a"]]


async def test_more_keys_than_a_batch_holds_go_out_as_several_fetches() -> None:
    table = Table({f"k{i}": i for i in range(10)})
    loader: Coalesced[str, int] = Coalesced(table.fetch, most=4)
    got = await asyncio.gather(*(loader.load(f"k{i}") for i in range(10)))
    assert got == list(range(10))
    assert [len(c) for c in table.calls] == [4, 4, 2]
    assert sorted(k for c in table.calls for k in c) == sorted(f"k{i}" for i in range(10))


async def test_a_failed_fetch_reaches_its_callers_and_no_others() -> None:
    table = Table({f"k{i}": i for i in range(4)})
    calls = 0

    async def fetch(keys: list[str]) -> dict[str, int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("the database went away")
        return await table.fetch(keys)

    loader: Coalesced[str, int] = Coalesced(fetch, most=2)
    got = await asyncio.gather(*(loader.load(f"k{i}") for i in range(4)),
                               return_exceptions=True)
    assert [type(g) for g in got[:2]] == [ConnectionError, ConnectionError]
    assert got[2:] == [2, 3]
    assert await loader.load("k0") == 0  # the next turn reads again


async def test_a_caller_that_leaves_takes_nothing_from_the_others() -> None:
    table = Table({"a": 1, "b": 2})
    table.gate = asyncio.Event()
    loader: Coalesced[str, int] = Coalesced(table.fetch)
    leaving = asyncio.create_task(loader.load("a"))
    staying = asyncio.create_task(loader.load("a"))
    other = asyncio.create_task(loader.load("b"))
    await fetching(table)
    assert table.calls == [["a", "b"]]
    leaving.cancel()
    await asyncio.sleep(0)
    table.gate.set()
    assert await asyncio.wait_for(asyncio.gather(staying, other), 5) == [1, 2]
    assert leaving.cancelled()


async def test_the_fetch_runs_outside_the_callers_context() -> None:
    """A caller inside a transaction (``Store.unit`` is a context variable) must not have
    its unit joined by a read that answers other requests too."""
    table = Table({"a": 1})
    loader: Coalesced[str, int] = Coalesced(table.fetch)

    async def caller() -> int | None:
        caller_var.set("inside a unit")
        return await loader.load("a")

    assert await asyncio.create_task(caller()) == 1
    assert table.contexts == ["none"]


async def test_close_waits_for_the_fetches_under_way() -> None:
    table = Table({"a": 1})
    table.gate = asyncio.Event()
    loader: Coalesced[str, int] = Coalesced(table.fetch)
    reading = asyncio.create_task(loader.load("a"))
    await fetching(table)
    closing = asyncio.create_task(loader.close())
    await asyncio.sleep(0)
    assert not closing.done()
    table.gate.set()
    await closing
    assert reading.done() and reading.result() == 1


def test_a_batch_holds_at_least_one_key() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Coalesced(Table({}).fetch, most=0)


@settings(max_examples=60, deadline=None)
@given(turns=st.lists(st.lists(st.sampled_from("abcdefgh"), max_size=12), max_size=5),
       most=st.integers(1, 5))
def test_every_caller_gets_its_own_keys_value_whatever_the_turns(
    turns: list[list[str]], most: int,
) -> None:
    values = {k: ord(k) for k in "abcdef"}  # g and h are never found

    async def run() -> None:
        table = Table(values)
        loader: Coalesced[str, int] = Coalesced(table.fetch, most=most)
        for keys in turns:
            calls_before = len(table.calls)
            got = await asyncio.gather(*(loader.load(k) for k in keys))
            assert got == [values.get(k) for k in keys]
            fetched = [k for c in table.calls[calls_before:] for k in c]
            assert sorted(fetched) == sorted(set(keys))  # each distinct key once
            assert all(len(c) <= most for c in table.calls)

    asyncio.run(run())
