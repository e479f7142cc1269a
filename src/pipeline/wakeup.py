"""Wake-ups for idle workers: a stage starts when it is sent, not at the next poll of Redis.

Dramatiq's Redis consumers poll: an idle consumer fetches, finds nothing, sleeps up to its
timeout and fetches again. Polling every 20 ms made stage starts quick, but every idle
worker then ran ~100 fetch scripts a second on Redis and spent 5 to 7 % of a core doing so.

Instead the relay publishes a wake-up on a Redis channel with every stage message it
sends (``broker.send``), each worker process keeps one subscription (``WakeListener``),
and the stage queue's consumer sleeps between fetches until a wake-up or
``worker_idle_poll_ms`` (``WakeableConsumer``). A stage acked or rejected by a worker
thread wakes it too: a thread is free, and a stage sent while all were busy (its wake-up
came when the consumer could take nothing) is fetched at once.

No wake-up is lost: a consumer takes a ticket (the wake-up count) before it fetches and
sleeps only while no wake-up came after its ticket. The idle poll catches what comes with
no wake-up: messages sent while a listener was reconnecting (it wakes every consumer once
it is subscribed again) and a dead worker's messages that Redis hands back. It also keeps
the worker's heartbeat in Redis (written by every fetch) far younger than the heartbeat
timeout (15 s or more).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import redis
import structlog
from dramatiq.broker import Consumer, MessageProxy
from tenacity import Retrying, retry_if_exception_type, wait_exponential

log = structlog.get_logger("devteam.wakeup")

LISTEN_TICK_SECONDS = 1.0
"""How long the listener waits for a message before it looks whether it should stop."""
MAX_BACKOFF_SECONDS = 5.0


def channel(namespace: str, queue: str) -> str:
    """The channel the wake-ups of one queue are published on."""
    return f"{namespace}:wakeup:{queue}"


class Waker:
    """A count of wake-ups that threads can wait on without missing one."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._count = 0
        self._closed = False

    def ticket(self) -> int:
        """The count now: take it before looking for work."""
        with self._changed:
            return self._count

    def wake(self) -> None:
        with self._changed:
            self._count += 1
            self._changed.notify_all()

    def close(self) -> None:
        """Wake every waiter, now and from now on (shutting down)."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def wait(self, ticket: int, seconds: float) -> bool:
        """Until a wake-up after ``ticket`` (True) or ``seconds`` pass (False)."""
        with self._changed:
            return self._changed.wait_for(
                lambda: self._count != ticket or self._closed, timeout=seconds)


class WakeListener:
    """One subscription per process, in a daemon thread, kept up with backoff (tenacity):
    every message on ``channel_name`` wakes ``waker``; so does every (re)subscription."""

    def __init__(self, client: redis.Redis, channel_name: str, waker: Waker) -> None:
        self.client = client
        self.channel = channel_name
        self.waker = waker
        self.subscribed = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wakeup-listener", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 0.0) -> None:
        """Ask the thread to end (at its next tick, or when its connection is closed);
        wait ``timeout`` seconds for it. A stopping worker does not wait: the thread is a
        daemon, and the broker closes its connections next."""
        self._stopping.set()
        if timeout:
            self._thread.join(timeout)

    def _run(self) -> None:
        def lost(state: Any) -> None:
            self.subscribed.clear()
            exc = state.outcome.exception() if state.outcome is not None else None
            log.warning("wakeup.lost", channel=self.channel, error=type(exc).__name__,
                        retry_in=state.next_action.sleep if state.next_action else None)

        retrying = Retrying(
            retry=retry_if_exception_type(redis.RedisError),
            wait=wait_exponential(multiplier=0.1, max=MAX_BACKOFF_SECONDS),
            stop=lambda _state: self._stopping.is_set(),
            before_sleep=lost, sleep=self._pause, reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    self._listen()
        except redis.RedisError:
            pass  # stopping while Redis was away
        except Exception:  # pragma: no cover - polling goes on without wake-ups
            log.exception("wakeup.failed", channel=self.channel)
        finally:
            self.subscribed.clear()

    def _pause(self, seconds: float) -> None:
        self._stopping.wait(seconds)

    def _listen(self) -> None:
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(self.channel)
            pubsub.get_message(timeout=LISTEN_TICK_SECONDS)  # the subscription's answer
            self.subscribed.set()
            self.waker.wake()  # whatever was sent while we were not subscribed
            while not self._stopping.is_set():
                if pubsub.get_message(timeout=LISTEN_TICK_SECONDS) is not None:
                    self.waker.wake()
        finally:
            self.subscribed.clear()
            pubsub.close()


class WakeableConsumer(Consumer):
    """A Dramatiq consumer that sleeps between fetches until a wake-up instead of polling.
    ``inner`` must be made with a ~0 ms timeout: its own sleep is skipped. Once the waker
    is closed (the worker is stopping) it polls every ``closing_poll_seconds``."""

    def __init__(self, inner: Any, waker: Waker, *, closing_poll_seconds: float,
                 idle_poll_seconds: float) -> None:
        self.inner = inner
        self.waker = waker
        self.closing_poll_seconds = closing_poll_seconds
        self.idle_poll_seconds = idle_poll_seconds

    def __next__(self) -> MessageProxy | None:
        ticket = self.waker.ticket()
        message: MessageProxy | None = next(self.inner)
        if message is None:
            if self.waker.closed:
                time.sleep(self.closing_poll_seconds)
            else:
                self.waker.wait(ticket, self.idle_poll_seconds)
        return message

    def ack(self, message: MessageProxy) -> None:
        try:
            self.inner.ack(message)
        finally:
            self.waker.wake()  # a thread is free: fetch what waits for one

    def nack(self, message: MessageProxy) -> None:
        try:
            self.inner.nack(message)
        finally:
            self.waker.wake()

    def requeue(self, messages: Any) -> None:
        self.inner.requeue(messages)

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
