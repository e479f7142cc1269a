"""The Dramatiq broker (Redis) shared by the relay, which sends, and the workers.

Dramatiq's own retries, age and time limits are off: a stage's fate is decided by its
stage run in Postgres (claims with leases, classified errors, the relay's re-dispatch),
so a message is only ever a wake-up call carrying a command id.
"""

from __future__ import annotations

import time

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import AsyncIO, CurrentMessage, ShutdownNotifications

from pipeline.outbox import QUEUE
from runner.settings import Settings

_broker: RedisBroker | None = None


def get_broker(settings: Settings) -> RedisBroker:
    """The process's broker, created on first use and installed as Dramatiq's global."""
    global _broker
    if _broker is None:
        _broker = RedisBroker(  # type: ignore[no-untyped-call]
            url=settings.redis.url,
            namespace=settings.redis.namespace,
            middleware=[AsyncIO(), CurrentMessage(), ShutdownNotifications()],
            heartbeat_timeout=max(15_000, settings.pipeline.stage_lease_seconds * 1000),
            socket_timeout=5,
            socket_connect_timeout=2,
            health_check_interval=10,
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
    """Enqueue the message for a command: its id is the message id, its only argument."""
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
