"""The Dramatiq broker (Redis) shared by the relay, which sends, and the workers.

Dramatiq's own retries, age and time limits are off: a stage's fate is decided by its
stage run in Postgres (claims with leases, classified errors, the relay's re-dispatch),
so a message is only ever a wake-up call carrying a command id.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import dq_name
from dramatiq.middleware import AsyncIO, CurrentMessage, Middleware, ShutdownNotifications

from pipeline.outbox import QUEUE
from pipeline.wakeup import WakeableConsumer, WakeListener, Waker, channel
from runner.settings import Settings

_broker: RedisBroker | None = None


class PipelineBroker(RedisBroker):
    """Dramatiq's Redis broker whose stage-queue consumers sleep between fetches until a
    wake-up (``pipeline.wakeup``) and whose other consumers poll Redis at most
    ``poll_ms`` apart, whatever ``worker_timeout`` the worker was given: Dramatiq uses one
    timeout for its consumers' sleep between fetches and for its worker threads' wait on
    their in-process queue, which only decides how soon an idle thread sees it should
    stop (a fetched message wakes a thread at once)."""

    def __init__(self, *, poll_ms: int | None = None, idle_poll_ms: int = 1000,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]
        self.poll_ms = poll_ms
        self.idle_poll_ms = idle_poll_ms
        self.waker = Waker()
        self._listener: WakeListener | None = None
        self._listener_lock = threading.Lock()
        self.add_middleware(_CloseWakerOnShutdown(self.waker))

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> Any:
        if self.poll_ms is not None:
            timeout = min(timeout, self.poll_ms)
        if queue_name not in (QUEUE, dq_name(QUEUE)):
            return super().consume(queue_name, prefetch, timeout)
        # the stages' queue, and its delay queue (stages are never delayed: nothing comes
        # there, and a stopping worker must not wait out its poll)
        self._listen()
        return WakeableConsumer(
            super().consume(queue_name, prefetch, 1),  # its own sleep: 0 ms
            self.waker, closing_poll_seconds=timeout / 1000,
            idle_poll_seconds=self.idle_poll_ms / 1000)

    def _listen(self) -> None:
        with self._listener_lock:
            if self._listener is None:
                self._listener = WakeListener(self.client, channel(self.namespace, QUEUE),
                                              self.waker)
                self._listener.start()

    def close(self) -> None:
        self.waker.close()
        if self._listener is not None:
            self._listener.stop()
        super().close()


class _CloseWakerOnShutdown(Middleware):
    """A stopping worker's consumers poll again, so they see at once that they must stop."""

    def __init__(self, waker: Waker) -> None:
        self.waker = waker

    def before_worker_shutdown(self, broker: Any, worker: Any) -> None:
        self.waker.close()


def get_broker(settings: Settings) -> RedisBroker:
    """The process's broker, created on first use and installed as Dramatiq's global."""
    global _broker
    if _broker is None:
        _broker = PipelineBroker(
            url=settings.redis.url,
            namespace=settings.redis.namespace,
            middleware=[AsyncIO(), CurrentMessage(), ShutdownNotifications()],
            heartbeat_timeout=max(15_000, settings.pipeline.stage_lease_seconds * 1000),
            socket_timeout=5,
            socket_connect_timeout=2,
            health_check_interval=10,
            poll_ms=settings.pipeline.worker_poll_ms,
            idle_poll_ms=settings.pipeline.worker_idle_poll_ms,
        )
        dramatiq.set_broker(_broker)
        _broker.declare_queue(QUEUE)
    return _broker


def reset_broker() -> None:
    """Forget the process's broker (tests that switch Redis databases)."""
    global _broker
    if _broker is not None:
        _broker.close()
    _broker = None


def send(broker: RedisBroker, *, command_id: int, actor: str) -> None:
    """Enqueue the message for a command (its id is the message id, its only argument),
    then wake the idle workers (``pipeline.wakeup``)."""
    broker.enqueue(
        dramatiq.Message(
            queue_name=QUEUE,
            actor_name=actor,
            args=(command_id,),
            kwargs={},
            options={},
            message_id=str(command_id),
            message_timestamp=int(time.time() * 1000),
        )
    )
    broker.client.publish(channel(broker.namespace, QUEUE), "")
