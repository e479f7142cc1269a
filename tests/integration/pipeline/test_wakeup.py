"""Wake-ups for idle workers, on a real Redis: a stage sent with ``broker.send`` reaches an
idle consumer long before its idle poll would have fetched it; a stage sent without a
wake-up is still fetched by the idle poll; a lost subscription comes back and wakes; a
stopping worker's consumer does not sleep through its stop."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from pipeline.broker import PipelineBroker, send
from pipeline.outbox import QUEUE
from pipeline.wakeup import WakeableConsumer, Waker

HOUR_MS = 3_600_000


@pytest.fixture
def make_broker(redis_url: str) -> Iterator:
    made: list[PipelineBroker] = []

    def make(*, idle_poll_ms: int = HOUR_MS, namespace: str = "") -> PipelineBroker:
        namespace = namespace or f"wake-{uuid.uuid4().hex}"
        broker = PipelineBroker(url=f"{redis_url}?client_name={namespace}",
                                namespace=namespace, middleware=[], poll_ms=20,
                                idle_poll_ms=idle_poll_ms)
        broker.declare_queue(QUEUE)
        made.append(broker)
        return broker

    yield make
    for broker in made:
        broker.close()


class Fetcher:
    """A consumer driven the way Dramatiq's consumer thread drives it, in a thread; it
    records each message it gets, and acks it at once unless ``hold`` (then the test acks
    it, as a worker thread does when its stage ends)."""

    def __init__(self, consumer, *, hold: bool = False) -> None:
        self.consumer = consumer
        self.hold = hold
        self.got: list[tuple[str, float]] = []
        self.held: list = []
        self.calls = 0
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while self.running:
            message = next(self.consumer)
            self.calls += 1
            if message is not None:
                self.got.append((message.message_id, time.monotonic()))
                if self.hold:
                    self.held.append(message)
                else:
                    self.consumer.ack(message)

    def wait_for(self, n: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while len(self.got) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        return len(self.got) >= n


@pytest.fixture
def fetch() -> Iterator:
    """Start a ``Fetcher`` on a broker's stage queue; each is stopped afterwards as a
    worker's shutdown does (stop asking, close the waker so no sleep holds it)."""
    started: list[tuple[Fetcher, PipelineBroker]] = []

    def start(broker: PipelineBroker, *, prefetch: int = 4, hold: bool = False) -> Fetcher:
        fetcher = Fetcher(broker.consume(QUEUE, prefetch=prefetch, timeout=1000), hold=hold)
        started.append((fetcher, broker))
        return fetcher

    yield start
    for fetcher, broker in started:
        fetcher.running = False
        broker.waker.close()
        fetcher.thread.join(5)
        assert not fetcher.thread.is_alive()


def _subscribed(broker: PipelineBroker, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while broker._listener is None or not broker._listener.subscribed.is_set():
        assert time.monotonic() < deadline, "the wake-up listener never subscribed"
        time.sleep(0.01)


def test_a_wake_up_that_comes_between_the_ticket_and_the_wait_is_not_lost() -> None:
    waker = Waker()
    ticket = waker.ticket()
    waker.wake()  # after the consumer looked and found nothing, before it sleeps
    started = time.monotonic()
    assert waker.wait(ticket, 30) is True
    assert time.monotonic() - started < 5  # did not sleep its 30 s
    # with no wake-up after its ticket it sleeps its whole time and says so
    assert waker.wait(waker.ticket(), 0.05) is False
    # closing wakes a waiter at once, whatever its ticket
    closer = threading.Timer(0.1, waker.close)
    closer.start()
    assert waker.wait(waker.ticket(), 30) is True
    closer.join()


def test_given_an_idle_consumer_polling_hourly_when_a_stage_is_sent_then_it_gets_it(
        make_broker, fetch) -> None:
    # Given the stage queue's consumer, idle, with an idle poll of an hour
    worker_side = make_broker()
    fetcher = fetch(worker_side)
    assert isinstance(fetcher.consumer, WakeableConsumer)
    _subscribed(worker_side)
    time.sleep(0.3)  # it has looked, found nothing and gone to sleep
    asleep = fetcher.calls
    time.sleep(0.5)
    assert fetcher.calls - asleep <= 1  # sleeping, not polling every 20 ms
    # When the relay's side sends two stages
    relay_side = make_broker(namespace=worker_side.namespace)
    send(relay_side, command_id=41, actor="stage")
    send(relay_side, command_id=42, actor="stage")
    # Then the consumer has both, long before an hourly poll
    assert fetcher.wait_for(2, timeout=30), fetcher.got
    assert sorted(m for m, _ in fetcher.got) == ["41", "42"]


def test_given_every_thread_busy_when_one_finishes_then_the_stage_that_waited_is_fetched(
        make_broker, fetch) -> None:
    # Given a worker with one thread (prefetch 1), busy with a stage, polling hourly
    worker_side = make_broker()
    fetcher = fetch(worker_side, prefetch=1, hold=True)
    _subscribed(worker_side)
    relay_side = make_broker(namespace=worker_side.namespace)
    send(relay_side, command_id=1, actor="stage")
    assert fetcher.wait_for(1, timeout=30), fetcher.got
    # and a second stage sent while it cannot take one (its wake-up comes and goes)
    send(relay_side, command_id=2, actor="stage")
    time.sleep(0.5)
    assert [m for m, _ in fetcher.got] == ["1"]
    # When the thread finishes the first stage
    fetcher.consumer.ack(fetcher.held[0])
    # Then the second is fetched, long before an hourly poll
    assert fetcher.wait_for(2, timeout=30), fetcher.got
    assert [m for m, _ in fetcher.got] == ["1", "2"]


def test_given_a_stage_enqueued_without_a_wake_up_then_the_idle_poll_fetches_it(
        make_broker, fetch) -> None:
    # Given an idle consumer whose idle poll is half a second
    worker_side = make_broker(idle_poll_ms=500)
    fetcher = fetch(worker_side)
    _subscribed(worker_side)
    # When a stage arrives with no wake-up (a dead worker's message handed back)
    relay_side = make_broker(namespace=worker_side.namespace)
    relay_side.enqueue(_message(7))
    # Then the idle poll fetches it
    assert fetcher.wait_for(1, timeout=30), fetcher.got
    assert fetcher.got[0][0] == "7"


def test_given_the_subscription_is_cut_then_it_comes_back_and_wakes_again(
        make_broker, fetch, redis_url: str) -> None:
    # Given an idle consumer polling hourly and its process's subscription
    worker_side = make_broker()
    fetcher = fetch(worker_side)
    _subscribed(worker_side)
    # When Redis drops the subscription's connection (found by the client's name: only
    # this test's, not those of other tests sharing the Redis)
    admin = redis.Redis.from_url(redis_url)
    try:
        ours = [c["id"] for c in admin.client_list(_type="pubsub")
                if c.get("name") == worker_side.namespace]
        assert len(ours) == 1, ours
        assert admin.client_kill_filter(_id=ours[0]) == 1
    finally:
        admin.close()
    # Then the listener subscribes again
    deadline = time.monotonic() + 30
    listener = worker_side._listener
    assert listener is not None
    while not listener.subscribed.is_set() or not _still_subscribed(redis_url, listener):
        assert time.monotonic() < deadline, "the listener did not come back"
        time.sleep(0.05)
    # and a stage sent now still wakes the consumer
    send(make_broker(namespace=worker_side.namespace), command_id=9, actor="stage")
    assert fetcher.wait_for(1, timeout=30), fetcher.got


def test_a_closed_waker_makes_an_idle_consumer_poll_so_a_stopping_worker_is_not_held(
        make_broker) -> None:
    worker_side = make_broker()
    fetcher = Fetcher(worker_side.consume(QUEUE, prefetch=4, timeout=1000))
    _subscribed(worker_side)
    time.sleep(0.2)  # asleep for up to an hour
    fetcher.running = False
    worker_side.waker.close()  # what a worker's shutdown does first
    fetcher.thread.join(10)
    assert not fetcher.thread.is_alive()


def _still_subscribed(redis_url: str, listener) -> bool:
    admin = redis.Redis.from_url(redis_url)
    try:
        return admin.pubsub_numsub(listener.channel)[0][1] >= 1
    finally:
        admin.close()


def _message(command_id: int):
    import dramatiq

    return dramatiq.Message(queue_name=QUEUE, actor_name="stage", args=(command_id,),
                            kwargs={}, options={}, message_id=str(command_id),
                            message_timestamp=int(time.time() * 1000))
