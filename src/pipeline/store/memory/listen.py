"""LISTEN in memory: a committed transaction's NOTIFYs reach the listeners of their
channel (once per distinct payload, after the commit, on the event loop: as Postgres
delivers them on a listening connection); a rolled back one's reach nobody."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class MemoryListening:
    """One listener on one channel of a ``MemoryStore`` (``MemoryStore.listen``)."""

    def __init__(self, channel: str, on_notify: Callable[[str], None],
                 listeners: list[MemoryListening]) -> None:
        self.channel = channel
        self.on_notify = on_notify
        self.lost = asyncio.Event()
        """Set when it is closed (a memory store's connection is never lost)."""
        self._listeners = listeners

    def deliver(self, notified: list[tuple[str, str]]) -> None:
        """Hand a commit's NOTIFYs on this channel to the owner (soon, on the loop)."""
        loop = asyncio.get_running_loop()
        for channel, payload in notified:
            if channel == self.channel and not self.lost.is_set():
                loop.call_soon(self._notify, payload)

    def _notify(self, payload: str) -> None:
        if not self.lost.is_set():
            self.on_notify(payload)

    async def probe(self) -> None:
        if self.lost.is_set():
            raise ConnectionError("the listener was closed")

    async def close(self) -> None:
        self.lost.set()
        if self in self._listeners:
            self._listeners.remove(self)
