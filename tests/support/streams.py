"""Helpers for stream tests: make executions, write notifications, read frames."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import websockets

from pipeline import commands, stream
from pipeline.audit import Principal
from pipeline.db import Store


async def new_execution(store: Store, project_id: str, user: str = "alice") -> uuid.UUID:
    """A started execution of ``project_id`` (its first frame, seq 1, is already written)."""
    result = await commands.start_execution(
        store,
        principal=Principal(user_id=user, correlation_id=uuid.uuid4().hex),
        project_id=project_id,
        repository_url="file:///nonexistent.git",
    )
    return result.execution_id


async def finish(store: Store, execution_id: uuid.UUID) -> None:
    """Mark an execution completed so the project can start another."""
    from sqlalchemy import text

    async with store.transaction() as session:
        await session.execute(
            text("UPDATE executions SET status = 'completed' WHERE id = :id"), {"id": execution_id}
        )


def payload(kind: str, i: int = 0, level: str = "info") -> dict[str, Any]:
    """A well-formed payload of a ``kind`` frame (``pipeline.frames``), the ``i``-th."""
    if kind == "execution-update":
        return {"status": "running", "stage": "VERIFY", "taskId": "1", "progress": 0,
                "branch": "task/1", "completedTasks": i, "totalTasks": i + 1}
    if kind == "error":
        return {"errorId": str(uuid.uuid4()), "stage": "VERIFY", "taskId": "1",
                "classification": "verification", "message": f"line {i}"}
    if kind == "completion":
        return {"status": "completed", "completedTasks": 1, "totalTasks": 1, "durationMs": i}
    return {"level": level, "stage": "TEST", "taskId": "1", "lines": [f"line {i}"]}


async def write(
    store: Store, execution_id: uuid.UUID, n: int, kind: str = "execution-log", level: str = "info"
) -> None:
    """Append ``n`` notifications, one transaction each (updates differ from each other)."""
    for i in range(n):
        async with store.tx() as tx:
            await stream.append(tx, execution_id, [(kind, payload(kind, i, level))])


def ws_url(base: str, token: str, *projects: str, since: str | None = None, **extra: str) -> str:
    url = base.replace("http://", "ws://") + f"/ws/devteam?token={token}"
    for p in projects:
        url += f"&projectId={p}"
    if since is not None:
        url += f"&since={since}"
    for key, value in extra.items():
        url += f"&{key}={value}"
    return url


async def read_frames(ws: Any, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The next ``count`` notification frames (control frames are returned too)."""
    frames: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while len(frames) < count:
            frames.append(json.loads(await ws.recv()))
    return frames


async def connect(url: str, max_queue: int | None = 16, rcvbuf: int | None = None) -> Any:
    """Open a socket and read its connection-established frame; without ``since`` (no
    backlog) also its ``replay-complete`` marker, which must come next. ``rcvbuf`` caps the
    kernel receive buffer (a client on a slow link) so back-pressure reaches the server
    quickly."""
    sock = None
    if rcvbuf is not None:
        import socket
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.connect((parts.hostname, parts.port))
        sock.setblocking(False)
    ws = await websockets.connect(
        url, open_timeout=5, max_size=2**22, max_queue=max_queue, sock=sock
    )
    hello = json.loads(await ws.recv())
    assert hello["type"] == "connection-established", hello
    if hello["payload"].get("resumedFrom") is None:
        done = json.loads(await ws.recv())
        assert done["type"] == "replay-complete" and done["payload"]["replayed"] == 0, done
    return ws


def split_backlog(frames: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any],
                                                         list[dict[str, Any]]]:
    """``(backlog, replay-complete marker, live)`` of frames read after connecting: the
    marker must be there exactly once."""
    marks = [i for i, f in enumerate(frames) if f["type"] == "replay-complete"]
    assert len(marks) == 1, [f["type"] for f in frames]
    return frames[:marks[0]], frames[marks[0]], frames[marks[0] + 1:]


class RawWsClient:
    """A WebSocket client on a plain socket: it reads nothing until told to (with a tiny
    receive buffer, the server's writes back up for real) and can send what a library
    refuses to (invalid UTF-8 text)."""

    def __init__(self, url: str, rcvbuf: int | None = 4096, timeout: float | None = None
                 ) -> None:
        import base64
        import os
        import socket
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((parts.hostname, parts.port))
        key = base64.b64encode(os.urandom(16)).decode()
        path = parts.path + ("?" + parts.query if parts.query else "")
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self.sock.recv(4096)
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head

    def _fill(self, n: int) -> None:
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buffer += chunk

    def raw_frame(self) -> tuple[int, bytes]:
        """The next frame: ``(opcode, payload)``."""
        self._fill(2)
        opcode, length, offset = self.buffer[0] & 0x0F, self.buffer[1] & 0x7F, 2
        if length == 126:
            self._fill(4)
            length, offset = int.from_bytes(self.buffer[2:4], "big"), 4
        elif length == 127:
            self._fill(10)
            length, offset = int.from_bytes(self.buffer[2:10], "big"), 10
        self._fill(offset + length)
        payload = self.buffer[offset : offset + length]
        self.buffer = self.buffer[offset + length :]
        return opcode, payload

    def frame(self) -> dict[str, Any] | None:
        """The next text frame as JSON (None for control frames such as pings)."""
        opcode, payload = self.raw_frame()
        return json.loads(payload) if opcode == 1 else None

    def send(self, opcode: int, payload: bytes) -> None:
        """Send one masked frame, whatever its payload."""
        import os

        mask = os.urandom(4)
        size = len(payload)
        header = bytes([0x80 | opcode])
        if size < 126:
            header += bytes([0x80 | size])
        elif size < 65536:
            header += bytes([0x80 | 126]) + size.to_bytes(2, "big")
        else:
            header += bytes([0x80 | 127]) + size.to_bytes(8, "big")
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def close(self) -> None:
        self.sock.close()
