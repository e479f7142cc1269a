"""An OpenAI-compatible chat-completions server that answers with scripted edits.

The only stand-in in the whole system: Aider, git and verification run for real against
it. It reads ``Task-Id:`` and ``Attempt:`` from the prompt (see ``runner.prompt``), picks
the task's edits from the script and answers in the edit format and fence Aider asked for,
streaming (SSE) or not. Every request is recorded; ``GET /_requests`` returns them so a
test can check what the tool sent.
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Self

import msgspec
import uvicorn
from litestar import Litestar, Request, get, post
from litestar.response import Response, Stream

from devtools.scripted_model.script import Script, ScriptError, load_script, render_reply

_TASK_ID = re.compile(r"^Task-Id:[ \t]*(\S[^\n]*?)[ \t]*$", re.MULTILINE)
_ATTEMPT = re.compile(r"^Attempt:[ \t]*(\d+)[ \t]*$", re.MULTILINE)
_FENCES = (("````", "````"), *((f"<{n}>", f"</{n}>") for n in ("source", "code", "pre")))
_CHUNK = 48


class RecordedRequest(msgspec.Struct, frozen=True, rename="camel"):
    task_id: str | None
    attempt: int
    stream: bool
    model: str
    edit_format: str | None
    prompt: str
    """Text of the user messages, in order."""


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else ""


def find_task(messages: list[dict[str, Any]]) -> tuple[str | None, int]:
    """``(task id, attempt)`` from the latest user message that names a task."""
    for message in reversed(messages):
        if message.get("role") != "user":
            continue
        text = _text(message)
        found = _TASK_ID.search(text)
        if found:
            attempt = _ATTEMPT.search(text)
            return found.group(1), int(attempt.group(1)) if attempt else 1
    return None, 1


def aider_edit_format(messages: list[dict[str, Any]]) -> str | None:
    """The edit format Aider's system prompt asks for (``diff``, ``whole``), if known."""
    system = "\n".join(_text(m) for m in messages if m.get("role") == "system")
    if "SEARCH/REPLACE" in system:
        return "diff"
    if "file listing" in system:
        return "whole"
    return None


def aider_fence(messages: list[dict[str, Any]]) -> tuple[str, str]:
    """The fence Aider's prompt uses (it changes it when files contain backticks)."""
    text = "\n".join(_text(m) for m in messages if m.get("role") in ("system", "assistant"))
    for fence in _FENCES:
        if re.search(rf"^{re.escape(fence[0])}", text, re.MULTILINE):
            return fence
    return ("```", "```")


class Reply(msgspec.Struct, frozen=True):
    text: str
    delay: float = 0.0
    status: int = 200
    """An HTTP error status makes the reply an OpenAI error body with ``text`` as message."""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    """The usage reported with the reply (None: derived from its text, see ``usage``)."""

    def usage(self) -> dict[str, int]:
        """The OpenAI ``usage`` object of this reply."""
        prompt = 100 if self.prompt_tokens is None else self.prompt_tokens
        completion = (max(1, len(self.text) // 4) if self.completion_tokens is None
                      else self.completion_tokens)
        return {"prompt_tokens": prompt, "completion_tokens": completion,
                "total_tokens": prompt + completion}


class ScriptedModel:
    """Chooses replies from a script and records requests; independent of HTTP."""

    def __init__(
        self, script: Script | Path, on_request: Callable[[RecordedRequest], None] | None = None
    ) -> None:
        self._on_request = on_request
        self._path = script if isinstance(script, Path) else None
        self._script = load_script(script) if isinstance(script, Path) else script
        self._mtime = self._path.stat().st_mtime if self._path else 0.0
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of the requests received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()

    def script(self) -> Script:
        """The script, re-read when its file changed (so a demo can edit it live)."""
        if self._path is not None:
            mtime = self._path.stat().st_mtime
            if mtime != self._mtime:
                self._script, self._mtime = load_script(self._path), mtime
        return self._script

    def answer(self, body: dict[str, Any]) -> Reply:
        """The reply to one chat-completions request body."""
        messages = body.get("messages") or []
        task_id, attempt = find_task(messages)
        wanted = aider_edit_format(messages)
        prompt = "\n\n".join(_text(m) for m in messages if m.get("role") == "user")
        recorded = RecordedRequest(
            task_id=task_id,
            attempt=attempt,
            stream=bool(body.get("stream")),
            model=str(body.get("model", "")),
            edit_format=wanted,
            prompt=prompt,
        )
        with self._lock:
            self._requests.append(recorded)
        if self._on_request is not None:
            self._on_request(recorded)
        script = self.script()
        task = script.tasks.get(task_id) if task_id is not None else None
        if task is None:
            return Reply(script.unknown_reply + "\n")
        if task.http_status != 200:
            return Reply(task.reply or "scripted failure", task.delay_seconds, task.http_status)
        if wanted is not None and wanted != task.edit_format:
            mismatch = (
                f"Scripted model: task {task_id} is scripted in the {task.edit_format!r} "
                f"edit format but Aider asked for {wanted!r}; no edits.\n"
            )
            return Reply(mismatch, task.delay_seconds)
        return Reply(render_reply(task, attempt, fence=aider_fence(messages)), task.delay_seconds,
                     prompt_tokens=task.prompt_tokens, completion_tokens=task.completion_tokens)


def create_app(model: ScriptedModel) -> Litestar:
    """The HTTP application around ``model`` (routes with and without the ``/v1`` prefix)."""

    async def completions(request: Request[Any, Any, Any]) -> Any:
        try:
            body = msgspec.json.decode(await request.body())
            reply = model.answer(body if isinstance(body, dict) else {})
        except msgspec.DecodeError as exc:
            return _error(400, f"invalid JSON body: {exc}")
        except ScriptError as exc:
            return _error(500, exc.message)
        text = reply.text
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.status != 200:
            return _error(reply.status, text)
        name = str(body.get("model", "scripted"))
        if body.get("stream"):
            usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return Stream(
                _sse(reply, name, usage),
                media_type="text/event-stream",
                headers={"content-type": "text/event-stream", "cache-control": "no-cache"},
            )
        return {
            **_envelope(name, "chat.completion"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": reply.usage(),
        }

    def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": "scripted", "object": "model", "created": 0, "owned_by": "devteam"}],
        }

    def recorded() -> list[RecordedRequest]:
        return model.requests

    return Litestar(
        route_handlers=[
            post(["/v1/chat/completions", "/chat/completions"], status_code=200)(completions),
            get(["/v1/models", "/models"], sync_to_thread=False)(models),
            get("/_requests", sync_to_thread=False)(recorded),
        ],
        openapi_config=None,
    )


def _error(status: int, message: str) -> Response[Any]:
    """An OpenAI-style error body."""
    error = {"message": message, "type": "scripted_error", "code": status}
    return Response({"error": error}, status_code=status)


def _envelope(model: str, kind: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{time.monotonic_ns()}",
        "object": kind,
        "created": int(time.time()),
        "model": model,
    }


async def _sse(reply: Reply, model: str, usage: bool) -> AsyncIterator[bytes]:
    text = reply.text
    base = _envelope(model, "chat.completion.chunk")

    def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        return b"data: " + msgspec.json.encode({**base, "choices": choices, **extra}) + b"\n\n"

    yield event([{"index": 0, "delta": {"role": "assistant", "content": ""}}])
    for start in range(0, len(text), _CHUNK):
        piece = text[start : start + _CHUNK]
        yield event([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
        await asyncio.sleep(0)
    yield event([{"index": 0, "delta": {}, "finish_reason": "stop"}])
    if usage:
        yield event([], usage=reply.usage())
    yield b"data: [DONE]\n\n"


class ScriptedModelServer:
    """The server in a background thread, for tests and the demo.

    ``with ScriptedModelServer(script) as server: ... server.url`` (``http://host:port/v1``).
    """

    def __init__(self, script: Script | Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self.model = ScriptedModel(script)
        self._socket = socket.create_server((host, port))
        self.host, self.port = self._socket.getsockname()[:2]
        config = uvicorn.Config(
            create_app(self.model), log_level="warning", access_log=False, lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="scripted-model", daemon=True)

    @property
    def url(self) -> str:
        """Base URL for ``OPENAI_API_BASE`` (ends in ``/v1``)."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def requests(self) -> list[RecordedRequest]:
        return self.model.requests

    def _run(self) -> None:
        asyncio.run(self._server.serve(sockets=[self._socket]))

    def start(self, timeout: float = 10.0) -> Self:
        """Start serving; returns once the server accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the scripted model server did not start")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and wait for the thread (open streams are cut)."""
        self._server.should_exit = True
        self._server.force_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._socket.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
