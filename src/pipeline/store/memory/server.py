"""The server in memory: always there."""

from __future__ import annotations

from pipeline.store.memory.base import Base


class MemoryServer(Base):
    async def ping(self) -> None:
        return None
