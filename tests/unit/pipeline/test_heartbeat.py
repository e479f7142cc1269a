"""The heartbeat and the cancellation of a running stage, with a scripted renewal and clock:
stop asks first and cancels the task only after the grace; a lost lease stops the step; a
renewal that fails is survived."""

from __future__ import annotations

import asyncio
import itertools
import threading

import pytest

from pipeline.cancellation import Cancellation, should_cancel
from pipeline.heartbeat import Heartbeat
from pipeline.lifecycle import Status


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Renewals:
    """Answers the scripted statuses in turn (None: the lease is lost; an exception: the
    database blinked)."""

    def __init__(self, *answers: str | None | Exception) -> None:
        self.answers = list(answers)
        self.calls = 0

    async def __call__(self) -> str | None:
        self.calls += 1
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_a_step_stops_when_its_lease_is_lost_or_its_execution_stops_or_ended() -> None:
    for status, lost in itertools.product([*Status, None], [False, True]):
        expected = lost or status in (Status.STOPPING, Status.STOPPED, Status.COMPLETED,
                                      Status.ERROR)
        assert should_cancel(status, lost=lost) is expected, (status, lost)


def test_finalize_is_stopped_only_by_a_lost_lease() -> None:
    for status in [*Status, None]:
        assert should_cancel(status, lost=False, stage="FINALIZE") is False
        assert should_cancel(status, lost=True, stage="FINALIZE") is True


async def test_a_stop_does_not_cancel_the_finalize_carrying_it_out() -> None:
    cancel = Cancellation(grace=0.0)
    beat = Heartbeat(Renewals("stopping", "stopping"), cancel, clock=Clock(), stage="FINALIZE")
    work: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    await beat.beat(work)
    await beat.beat(work)
    assert not cancel.event.is_set() and not work.cancelled()


def test_cancellation_asks_once_then_is_overdue_after_the_grace() -> None:
    event = threading.Event()
    cancel = Cancellation(event, grace=5.0)
    assert not cancel.event.is_set() and not cancel.overdue(1e9)
    assert cancel.request(10.0) is True
    assert event.is_set() and cancel.event.is_set()
    assert cancel.request(11.0) is False  # the grace runs from the first request
    assert not cancel.overdue(14.9)
    assert cancel.overdue(15.0)


def test_an_event_set_elsewhere_is_never_overdue() -> None:
    event = threading.Event()
    event.set()
    cancel = Cancellation(event, grace=1.0)
    assert cancel.request(0.0) is False
    assert not cancel.overdue(1e9)


async def test_stop_asks_the_step_then_cancels_its_task_after_the_grace() -> None:
    clock, said = Clock(), []
    cancel = Cancellation(grace=5.0)
    renew = Renewals("running", "stopping", "stopping", "stopping")
    beat = Heartbeat(renew, cancel, on_cancel=lambda: said.append("stop"), clock=clock)
    work: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    await beat.beat(work)
    assert not cancel.event.is_set() and not work.cancelled()
    clock.now += 1
    await beat.beat(work)  # stop seen: the tools are asked, the task is left to finish
    assert cancel.event.is_set() and said == ["stop"] and not work.cancelled()
    clock.now += 4.5
    await beat.beat(work)
    assert not work.cancelled() and said == ["stop"]
    clock.now += 0.5
    await beat.beat(work)  # the grace is over: the task is cancelled
    assert work.cancelled()


async def test_a_lost_lease_stops_the_step() -> None:
    cancel = Cancellation(grace=0.0)
    beat = Heartbeat(Renewals(None), cancel, clock=Clock())
    work: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    await beat.beat(work)
    assert cancel.event.is_set() and work.cancelled()


async def test_a_finished_step_is_not_cancelled() -> None:
    cancel = Cancellation(grace=0.0)
    beat = Heartbeat(Renewals("stopping"), cancel, clock=Clock())
    work: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    work.set_result(None)
    await beat.beat(work)
    assert cancel.event.is_set() and not work.cancelled()


async def test_a_failed_renewal_is_survived_and_the_next_beat_renews() -> None:
    cancel = Cancellation(grace=5.0)
    renew = Renewals(ConnectionError("db blinked"), OSError("again"), "running", "stopping")
    slept: list[float] = []
    beats = 0

    async def sleep(seconds: float) -> None:
        nonlocal beats
        slept.append(seconds)
        beats += 1
        if beats > 4:
            raise asyncio.CancelledError  # the engine cancels the heartbeat

    beat = Heartbeat(renew, cancel, clock=Clock(), sleep=sleep, interval=1.0)
    work: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    with pytest.raises(asyncio.CancelledError):
        await beat.run(work)
    assert renew.calls == 4 and slept == [1.0] * 5
    assert cancel.event.is_set() and not work.cancelled()  # asked; the grace is not over
