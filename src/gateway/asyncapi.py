"""The AsyncAPI 3 document of the live stream, served at ``/schema/asyncapi.json``.

Generated, never written by hand: every message's payload is msgspec's JSON Schema of the
Struct the gateway encodes that frame with (``gateway.frames``) around the payload type the
pipeline stores it through (``pipeline.frames``); the frame types come from the same
registries (``pipeline.frames.PAYLOADS``, ``gateway.frames.CONTROL_TYPES``), the query
parameters from the values ``gateway.routes.stream`` accepts and the close codes from its
``CLOSE_CODES``. A field added to a frame changes the document with it.

Two channels: the WebSocket ``/ws/devteam`` (server frames, and the client's ``ping``
answered by ``pong``) and Server-Sent Events ``/api/devteam/stream`` (the same server
frames but ``pong``; ``event:`` is the frame's type, ``id:`` its cursor). The document is
described from the gateway's side: it *sends* frames and *receives* pings.
"""

from __future__ import annotations

import functools
from typing import Any, Literal

import msgspec
from litestar import Response, get

from gateway import frames
from gateway.fanout import LEVELS
from gateway.routes.stream import CLOSE_CODES, FRAME_TYPES, MAX_CLIENT_FRAME
from pipeline import prd
from pipeline.frames import PAYLOADS

VERSION = "1.0.0"
REF = "#/components/schemas/{name}"

STORED_MESSAGES = {
    "execution-update": ("executionUpdate", "ExecutionUpdateFrame"),
    "execution-log": ("executionLog", "ExecutionLogFrame"),
    "error": ("executionError", "ExecutionErrorFrame"),
    "completion": ("completion", "CompletionFrame"),
}
"""Each stored frame type's message id and schema name."""
CONTROL_MESSAGES = {
    frames.ConnectionEstablished: ("connectionEstablished", "ConnectionEstablishedFrame"),
    frames.Resync: ("resync", "ResyncFrame"),
    frames.StreamError: ("streamError", "StreamErrorFrame"),
    frames.Pong: ("pong", "PongFrame"),
    frames.ReplayComplete: ("replayComplete", "ReplayCompleteFrame"),
}
"""Each control payload's message id and schema name."""
WS_ONLY = {"pong"}

_CURSOR = "^[0-9]{1,19}$"
_PROJECT = "^[A-Za-z0-9_-]{1,100}/[A-Za-z0-9_-]{1,100}$"


def _frame(envelope: Any, kind: str, payload: Any) -> Any:
    """``envelope[Literal[kind], payload]``, for a ``kind`` known only at run time."""
    return envelope[Literal.__getitem__(kind), payload]


def _frame_types() -> list[tuple[str, str, str, Any, str]]:
    """``(message id, schema name, frame type, envelope type, summary)`` of every frame
    the server sends, stored ones first."""
    out: list[tuple[str, str, str, Any, str]] = []
    for kind, payload in PAYLOADS.items():
        message, schema = STORED_MESSAGES[kind]
        envelope = frames.UpdateFrame if kind == "execution-update" else frames.StoredFrame
        out.append((message, schema, kind, _frame(envelope, kind, payload),
                    (payload.__doc__ or "").strip()))
    for control, kind in frames.CONTROL_TYPES.items():
        message, schema = CONTROL_MESSAGES[control]
        out.append((message, schema, kind, _frame(frames.ControlFrame, kind, control),
                    (control.__doc__ or "").strip()))
    return out


def _rename(value: Any, names: dict[str, str]) -> Any:
    """``value`` with every ``$ref`` to a generated name pointing at its new name."""
    if isinstance(value, dict):
        return {k: (REF.format(name=names.get(v.rsplit("/", 1)[-1], v.rsplit("/", 1)[-1]))
                    if k == "$ref" and isinstance(v, str) else _rename(v, names))
                for k, v in value.items()}
    if isinstance(value, list):
        return [_rename(v, names) for v in value]
    return value


def _query(sse: bool) -> dict[str, Any]:
    types = "|".join(sorted(FRAME_TYPES))
    properties: dict[str, Any] = {
        "projectId": {"type": "string", "pattern": _PROJECT, "description": (
            "A project (customer/project) to follow; repeatable; none = every project "
            "the token grants. project_id is accepted too.")},
        "since": {"type": "string", "pattern": _CURSOR, "description": (
            "Resume after this cursor (a frame's id): frames after it are replayed, then "
            "live, none twice" + ("; Last-Event-ID does the same" if sse else ""))},
        "types": {"type": "string", "pattern": f"^({types})(,({types}))*$",
                  "description": "Only these stored frame types (comma-separated)"},
        "level": {"type": "string", "enum": list(LEVELS), "description": (
            "Minimum level of execution-log frames")},
        "token": {"type": "string", "description": (
            "The bearer token, for clients that cannot set the Authorization header")},
    }
    return {"type": "object", "properties": properties}


@functools.cache
def document() -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document (built once per process)."""
    sent = _frame_types()
    refs, components = msgspec.json.schema_components(
        [envelope for *_, envelope, _ in sent] + [frames.Ping], ref_template=REF)
    names = {ref["$ref"].rsplit("/", 1)[-1]: schema
             for ref, (_, schema, *_) in zip(refs, sent, strict=False)}
    names[refs[-1]["$ref"].rsplit("/", 1)[-1]] = "PingFrame"
    schemas = {names.get(name, name): _rename(schema, names)
               for name, schema in components.items()}
    for name in names.values():
        schemas[name]["title"] = name
    messages: dict[str, Any] = {}
    for message, schema, kind, _, summary in sent:
        messages[message] = {
            "name": kind, "title": kind, "summary": summary.split("\n\n")[0],
            "contentType": "application/json", "payload": {"$ref": REF.format(name=schema)},
        }
    messages["ping"] = {
        "name": "ping", "title": "ping", "summary": (frames.Ping.__doc__ or "").strip(),
        "contentType": "application/json", "payload": {"$ref": REF.format(name="PingFrame")},
    }
    ws_sent = [m for m, *_ in sent]
    sse_sent = [m for m, _, kind, *_ in sent if kind not in WS_ONLY]
    close_codes = [{"code": code, "meaning": meaning} for code, meaning in CLOSE_CODES.items()]
    ref = "#/components/messages/{}".format
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "DevTeam Runner live stream",
            "version": VERSION,
            "description": (
                "Every step of every execution, live and replayable. Stored frames "
                "(execution-update, execution-log, error, completion) carry a cursor id: "
                "reconnect with since=<last id> (SSE: Last-Event-ID) and nothing is missed "
                "or repeated. Control frames (connection-established, resync, error, pong, "
                "replay-complete) have no id; replay-complete comes once per connection, "
                "after the last frame replayed and before the first live one (at once "
                "without since), so a client knows when it is live. A client should "
                "ignore frame types it does not know. The requirements' fields sit at the "
                "top level (timestamp, customerId, projectId, executionId, taskId; status "
                "and progress on "
                f"execution-update: one of {', '.join(prd.STATES)}) beside the detailed "
                "payload. The REST API is described at /schema/openapi.json."),
        },
        "defaultContentType": "application/json",
        "channels": {
            "stream": {
                "address": "/ws/devteam",
                "title": "WebSocket",
                "description": (
                    "The live stream over a WebSocket. The first frame is "
                    "connection-established; the client may send ping (at most "
                    f"{MAX_CLIENT_FRAME // 1024} KB of JSON; anything else is answered "
                    "with an error frame and the socket stays open). The server closes "
                    "with these codes (x-close-codes): " + "; ".join(
                        f"{c['code']}: {c['meaning']}" for c in close_codes)),
                "messages": {m: {"$ref": ref(m)} for m in [*ws_sent, "ping"]},
                "bindings": {"ws": {"method": "GET", "query": _query(sse=False),
                                    "bindingVersion": "0.1.0"}},
                "x-close-codes": close_codes,
            },
            "events": {
                "address": "/api/devteam/stream",
                "title": "Server-Sent Events",
                "description": (
                    "The same frames as Server-Sent Events (text/event-stream): each "
                    "event's event: line is the frame's type (addEventListener(type)), its "
                    "data: line the frame, and stored frames have an id: line (the cursor; "
                    "the browser sends it back as Last-Event-ID). The stream starts with "
                    "retry: 2000 and connection-established, sends ': ping' comments while "
                    "idle, and when the token expires sends an error frame and ends. A bad "
                    "query is answered 400, a bad token 401, a project not granted 403 "
                    "(application/problem+json) before the stream starts."),
                "messages": {m: {"$ref": ref(m)} for m in sse_sent},
            },
        },
        "operations": {
            "sendStreamFrames": {
                "action": "send",
                "channel": {"$ref": "#/channels/stream"},
                "title": "Frames on the WebSocket",
                "messages": [{"$ref": f"#/channels/stream/messages/{m}"} for m in ws_sent],
            },
            "receivePing": {
                "action": "receive",
                "channel": {"$ref": "#/channels/stream"},
                "title": "A client's ping",
                "messages": [{"$ref": "#/channels/stream/messages/ping"}],
                "reply": {"channel": {"$ref": "#/channels/stream"},
                          "messages": [{"$ref": "#/channels/stream/messages/pong"}]},
            },
            "sendEvents": {
                "action": "send",
                "channel": {"$ref": "#/channels/events"},
                "title": "Frames as Server-Sent Events",
                "messages": [{"$ref": f"#/channels/events/messages/{m}"} for m in sse_sent],
                "bindings": {"http": {"method": "GET", "query": _query(sse=True),
                                      "bindingVersion": "0.3.0"}},
            },
        },
        "components": {"messages": messages, "schemas": schemas},
    }


@functools.cache
def _encoded() -> bytes:
    return msgspec.json.encode(document())


@get("/schema/asyncapi.json", include_in_schema=False, sync_to_thread=False)
def asyncapi_json() -> Response[bytes]:
    """The stream's AsyncAPI 3 document (no token needed, like ``/schema/openapi.json``)."""
    return Response(_encoded(), media_type="application/json")
