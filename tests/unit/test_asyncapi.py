"""The stream's AsyncAPI 3 document (``gateway.asyncapi``): valid by the official AsyncAPI
3.0.0 schema, every frame type the server sends present, and its schemas accepting what
the gateway's own encoders produce while refusing anything else. Live frames from a real
gateway are checked in tests/integration/stream/test_asyncapi_live.py."""

from __future__ import annotations

import copy
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from tests.support.asyncapi import check_frame, message_types, spec_errors

from gateway.asyncapi import document
from gateway.fanout import (
    Item,
    _item,
    control_frame,
    replay_complete,
    replay_complete_payload,
    resync_payload,
    retention_resync,
)
from gateway.frames import ConnectionEstablished, Pong, StreamError
from pipeline.frames import FramePayloadError, payload_of
from pipeline.store.notifications import stream_row

SERVER_TYPES = ["completion", "connection-established", "error", "error", "execution-log",
                "execution-update", "pong", "replay-complete", "resync"]
"""Every frame type the gateway sends: ``error`` twice (an execution's error record, and
a control frame about the connection)."""

PAYLOADS: dict[str, dict[str, Any]] = {
    "execution-update": {"status": "paused", "stage": "VERIFY", "taskId": "1.4",
                         "progress": 30, "branch": "task/1-4-add", "completedTasks": 3,
                         "totalTasks": 10, "pauseReason": "user"},
    "execution-log": {"level": "warning", "stage": "VERIFY", "taskId": "1.4",
                      "lines": ["npm test", "1 failing"], "dropped": 12},
    "error": {"errorId": str(uuid.uuid4()), "stage": "VERIFY", "taskId": "1.4",
              "classification": "verification", "message": "tests failed"},
    "completion": {"status": "completed", "completedTasks": 10, "totalTasks": 10,
                   "durationMs": 73_000},
}


def _doc() -> dict[str, Any]:
    return json.loads(json.dumps(document()))  # as a client reads it


def _text(value: object) -> str | None:
    """A payload field as Postgres' ``->>`` reads it."""
    return None if value is None else str(value)


def _stored(kind: str, payload: dict[str, Any], pos: int = 41) -> dict[str, Any]:
    """A stored frame as the gateway encodes it (``fanout._item`` on a row as read)."""
    row = {"pos": pos, "execution_id": str(uuid.uuid4()), "seq": 7, "customer_id": "acme",
           "project_id": "acme/web", "type": kind,
           "payload": msgspec.json.encode(payload_of(kind, payload)).decode(),
           "level": payload.get("level"), "task_id": payload.get("taskId"),
           "status": payload.get("status"), "stage": payload.get("stage"),
           "completed": _text(payload.get("completedTasks")),
           "total": _text(payload.get("totalTasks")), "created_at": datetime.now(UTC)}
    return json.loads(_item(stream_row(row)).data)


def _refs(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [v for k, v in value.items() if k == "$ref"] + [
            r for v in value.values() for r in _refs(v)]
    if isinstance(value, list):
        return [r for v in value for r in _refs(v)]
    return []


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def test_the_document_is_valid_asyncapi_3_and_every_reference_resolves() -> None:
    doc = _doc()
    assert doc["asyncapi"] == "3.0.0"
    assert spec_errors(doc) == []
    assert {c["address"] for c in doc["channels"].values()} == {"/ws/devteam",
                                                                "/api/devteam/stream"}
    refs = _refs(doc)
    assert len(refs) > 30
    for ref in refs:
        assert _resolve(doc, ref) is not None, ref
    for name, operation in doc["operations"].items():
        channel = operation["channel"]["$ref"]
        for message in operation["messages"]:
            assert message["$ref"].startswith(channel + "/messages/"), (name, message)


@pytest.mark.parametrize("breakage", ["publish", "no version", "bad address"])
def test_the_structure_check_catches_a_broken_document(breakage: str) -> None:
    doc = _doc()
    if breakage == "publish":  # AsyncAPI 2's verb
        doc["operations"]["sendEvents"]["action"] = "publish"
    elif breakage == "no version":
        del doc["info"]["version"]
    else:
        doc["channels"]["stream"]["address"] = 7
    assert spec_errors(doc) != []


def test_every_frame_type_the_server_sends_is_a_message_of_its_channels() -> None:
    doc = _doc()
    ws, sse = message_types(doc, "stream"), message_types(doc, "events")
    assert sorted(kind for m, kind in ws.items() if m != "ping") == SERVER_TYPES
    assert ws["ping"] == "ping"
    assert sorted(sse.values()) == [t for t in SERVER_TYPES if t != "pong"]
    operations = doc["operations"]
    sent = {m["$ref"].rsplit("/", 1)[-1] for m in operations["sendStreamFrames"]["messages"]}
    assert sent == set(ws) - {"ping"}
    assert operations["sendStreamFrames"]["action"] == "send"
    assert {m["$ref"].rsplit("/", 1)[-1] for m in operations["sendEvents"]["messages"]} == set(sse)
    ping = operations["receivePing"]
    assert ping["action"] == "receive"
    assert [m["$ref"] for m in ping["messages"]] == ["#/channels/stream/messages/ping"]
    assert [m["$ref"] for m in ping["reply"]["messages"]] == ["#/channels/stream/messages/pong"]


def test_query_parameters_and_close_codes_are_documented() -> None:
    doc = _doc()
    ws = doc["channels"]["stream"]
    query = ws["bindings"]["ws"]["query"]["properties"]
    assert set(query) == {"projectId", "since", "types", "level", "token"}
    assert query["level"]["enum"] == ["debug", "info", "warning", "error"]
    sse_query = doc["operations"]["sendEvents"]["bindings"]["http"]["query"]["properties"]
    assert set(sse_query) == set(query)
    assert "Last-Event-ID" in sse_query["since"]["description"]
    assert {c["code"] for c in ws["x-close-codes"]} == {4400, 4401, 4403, 1013}
    for code in (4400, 4401, 4403, 1013):
        assert str(code) in ws["description"]


@pytest.mark.parametrize("kind", list(PAYLOADS))
def test_a_stored_frame_as_the_gateway_encodes_it_is_its_message(kind: str) -> None:
    doc = _doc()
    frame = _stored(kind, PAYLOADS[kind])
    expected = {"execution-update": "executionUpdate", "execution-log": "executionLog",
                "error": "executionError", "completion": "completion"}[kind]
    assert check_frame(doc, "stream", frame) == expected
    assert check_frame(doc, "events", frame) == expected


def test_an_update_without_optional_fields_and_between_tasks_is_its_message() -> None:
    frame = _stored("execution-update", {
        "status": "running", "stage": "SELECT", "taskId": "#4", "progress": 0,
        "branch": None, "completedTasks": 0, "totalTasks": 0})
    assert frame["taskId"] is None and frame["status"] == "SELECTING"
    assert check_frame(_doc(), "stream", frame) == "executionUpdate"


@pytest.mark.parametrize("project", [None, "acme/web"])
def test_control_frames_as_the_gateway_encodes_them_are_their_messages(
        project: str | None) -> None:
    doc = _doc()
    frames = {
        "connectionEstablished": [ConnectionEstablished(connection_id="c1"),
                                  ConnectionEstablished(connection_id="c2", resumed_from="9")],
        "resync": [resync_payload(Item(pos=12, project_id="", customer_id="", type="resync",
                                       level=0, data=b"")),
                   resync_payload(retention_resync(3, 40))],
        "streamError": [StreamError(classification="client", message="malformed frame")],
        "pong": [Pong()],
        "replayComplete": [replay_complete_payload(replay_complete(0, 0)),
                           replay_complete_payload(replay_complete(9_000_000_000, 512))],
    }
    for message, payloads in frames.items():
        for payload in payloads:
            frame = json.loads(control_frame(payload, project))
            assert frame["projectId"] == project
            assert check_frame(doc, "stream", frame) == message
            if message != "pong":
                assert check_frame(doc, "events", frame) == message


def _fails(doc: dict[str, Any], frame: dict[str, Any]) -> bool:
    try:
        check_frame(doc, "stream", frame)
    except AssertionError:
        return True
    return False


def test_the_schemas_refuse_frames_the_server_never_sends() -> None:
    doc = _doc()
    good = _stored("execution-log", PAYLOADS["execution-log"])
    assert not _fails(doc, good)
    breakages = [
        lambda f: f.update(extra=1),                        # an undocumented field
        lambda f: f["payload"].update(colour="red"),        # ... in the payload
        lambda f: f.pop("seq"),                             # a missing field
        lambda f: f.update(id="12a"),                       # a cursor that is not digits
        lambda f: f.update(timestamp="yesterday"),          # not ISO 8601
        lambda f: f["payload"].update(level="fatal"),       # an unknown level
        lambda f: f["payload"].update(lines="one line"),    # a mistyped field
        lambda f: f.update(type="execution-progress"),      # an unknown type
    ]
    for i, breakage in enumerate(breakages):
        frame = copy.deepcopy(good)
        breakage(frame)
        assert _fails(doc, frame), i
    update = _stored("execution-update", PAYLOADS["execution-update"])
    for field in ("status", "progress"):
        frame = copy.deepcopy(update)
        frame.pop(field)
        assert _fails(doc, frame), field
    assert _fails(doc, {**update, "status": "THINKING"})
    assert _fails(doc, {**update, "progress": 100.5})
    control = json.loads(control_frame(Pong()))
    assert _fails(doc, {**control, "seq": 3})  # control frames have no sequence
    done = json.loads(control_frame(replay_complete_payload(replay_complete(7, 2))))
    assert done["payload"] == {"cursor": "7", "replayed": 2}
    assert not _fails(doc, done)
    assert _fails(doc, {**done, "payload": {"cursor": "7"}})  # how many it replayed
    assert _fails(doc, {**done, "payload": {"cursor": "x7", "replayed": 2}})
    assert _fails(doc, {**done, "id": "7"})  # a control frame: no cursor of its own


def test_a_payload_its_type_does_not_describe_is_refused_before_it_is_stored() -> None:
    log = PAYLOADS["execution-log"]
    with pytest.raises(FramePayloadError, match="unknown field `colour`"):
        payload_of("execution-log", {**log, "colour": "red"})
    with pytest.raises(FramePayloadError, match="missing required field `lines`"):
        payload_of("execution-log", {k: v for k, v in log.items() if k != "lines"})
    with pytest.raises(FramePayloadError, match="Expected `int`"):
        payload_of("completion", {**PAYLOADS["completion"], "durationMs": "long"})
    with pytest.raises(FramePayloadError, match="no frame type"):
        payload_of("execution-progress", {})
    # a well-formed payload comes out as it went in, optional fields absent when unset
    assert payload_of("execution-log", log) == log
    assert "dropped" not in payload_of("execution-log", {**log, "dropped": 0})
