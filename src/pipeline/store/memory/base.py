"""What the memory store's nouns share: the tables, ``now()`` and jsonb round trips."""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgspec

from pipeline.store.common import dumps

if TYPE_CHECKING:
    from pipeline.store.memory.store import MemoryStore


def json_value(value: Any) -> Any:
    """A value as it reads back from a ``jsonb`` column (written by ``dumps``: a NUL in
    a string reads back as U+FFFD)."""
    return msgspec.json.decode(dumps(value))


class Tables:
    """The rows of every table the port touches."""

    def __init__(self) -> None:
        self.projects: dict[str, dict[str, Any]] = {}
        self.events: dict[uuid.UUID, dict[str, Any]] = {}
        self.executions: dict[uuid.UUID, dict[str, Any]] = {}
        self.stage_runs: list[dict[str, Any]] = []
        self.outbox: list[dict[str, Any]] = []
        self.notifications: list[dict[str, Any]] = []
        self.stream_pos = 0
        self.pruned_pos = 0
        self.idempotency: dict[tuple[str, str], dict[str, Any]] = {}
        self.audit: list[dict[str, Any]] = []
        self.injected_tasks: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []
        self.sandbox_leases: list[dict[str, Any]] = []
        self.notified: list[tuple[str, str]] = []
        """``(channel, payload)`` of every NOTIFY committed."""
        self.ids = itertools.count(1)


class Base:
    def __init__(self, store: MemoryStore) -> None:
        self.store = store

    @property
    def t(self) -> Tables:
        return self.store.tables

    def now(self) -> datetime:
        return self.store.clock()
