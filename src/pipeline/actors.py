"""One Dramatiq actor per stage. Actors are thin: they hand the command id to the engine.

The engine (and the services it uses: database pool, Docker client, git, Aider) is built
once per worker process, lazily, inside Dramatiq's event-loop thread, because the asyncpg
pool must live on the loop that uses it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import dramatiq

from pipeline.engine import Engine
from pipeline.lifecycle import Stage
from pipeline.outbox import QUEUE
from runner.settings import Settings

_engine: Engine | None = None
_lock: asyncio.Lock | None = None


async def engine(settings: Settings) -> Engine:
    global _engine, _lock
    if _engine is None:
        if _lock is None:
            _lock = asyncio.Lock()
        async with _lock:
            if _engine is None:
                from pipeline.services import Services
                from pipeline.stages import HANDLERS

                _engine = Engine(Services.create(settings), HANDLERS)
    return _engine


def _actor_fn(settings: Settings, stage: Stage) -> Callable[[int], Coroutine[Any, Any, None]]:
    async def run(command_id: int) -> None:
        await (await engine(settings)).run(command_id)

    run.__name__ = stage.actor_name
    run.__qualname__ = stage.actor_name
    return run


def declare(broker: dramatiq.Broker, settings: Settings) -> dict[str, dramatiq.Actor[Any, Any]]:
    """Register every stage actor on ``broker`` (workers only; the relay needs names only)."""
    declared: dict[str, dramatiq.Actor[Any, Any]] = {}
    for stage in Stage:
        decorate = dramatiq.actor(actor_name=stage.actor_name, queue_name=QUEUE, broker=broker)
        declared[stage.actor_name] = decorate(_actor_fn(settings, stage))
    return declared
