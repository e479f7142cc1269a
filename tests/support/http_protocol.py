"""The gateway's HTTP protocol served in-process: ``DeadlineHttpProtocol`` and uvicorn's
response cycle, connected to a transport that records what is written to it."""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.config import Config
from uvicorn.server import ServerState

from gateway.protocol import DeadlineHttpProtocol


class Recording(asyncio.Transport):
    """A transport that records its writes, and refuses one after ``close``."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False
        self.paused = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8000)}.get(
            name, default)

    def write(self, data: Any) -> None:
        assert not self.closed, "written after close"
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = self.closed = True

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    @property
    def sent(self) -> bytes:
        return b"".join(self.writes)


def connect(app: Any) -> tuple[DeadlineHttpProtocol, Recording]:
    """The gateway's protocol serving ``app``, connected to a recording transport."""
    config = Config(app=app, http=DeadlineHttpProtocol, lifespan="off", log_config=None)
    config.load()
    protocol = DeadlineHttpProtocol(config=config, server_state=ServerState(), app_state={})
    transport = Recording()
    protocol.connection_made(transport)
    return protocol, transport


async def settle() -> None:
    """Let the steps run that the last one started (tasks, and what they write)."""
    for _ in range(5):
        await asyncio.sleep(0)
