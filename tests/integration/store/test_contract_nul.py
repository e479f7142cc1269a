"""NUL in what the store writes, against asyncpg and the in-memory store alike.

Postgres refuses NUL in ``text`` and the ``\\u0000`` escape in ``jsonb``; the coding
model's output (its reply, the diff of what it wrote) is an attacker's and may hold one.
Every write below failed on Postgres before: a stage run's result never recorded (the run
claimed again and the model paid again), an error never stored, a log batch lost. Now a
NUL reads back as U+FFFD, and a literal backslash followed by ``u0000`` as it was.
"""

from __future__ import annotations

import uuid

import msgspec
from tests.integration.store.test_contract import CUSTOMER, PROJECT, URL, backend, port, start
from tests.integration.store.test_contract_notifications import Notes, notes

from pipeline import stream
from pipeline.store.common import dumps
from pipeline.store.executions import NewError
from pipeline.store.notifications import notified
from pipeline.store.port import StorePort
from pipeline.store.stage_runs import Finished, RunKey

__all__ = ["backend", "notes", "port"]  # the fixtures, shared with the contract suite

HOSTILE = "stdout \x00 then\x00\x00 end"
CLEAN = "stdout \ufffd then\ufffd\ufffd end"
LITERAL = "a Windows path C:\\u0000\\x and an escaped \\\x00"
"""A backslash before ``u0000`` (kept as written) and a backslash before a NUL."""
LITERAL_CLEAN = "a Windows path C:\\u0000\\x and an escaped \\\ufffd"


async def _execution(port: StorePort) -> uuid.UUID:
    async with port.tx() as tx:
        await tx.projects.upsert(PROJECT, CUSTOMER, URL)
        _, execution_id = await start(tx, status="running")
    return execution_id


def test_dumps_writes_nul_as_u_fffd_and_leaves_a_literal_backslash_u0000() -> None:
    value = {"k\x00": [HOSTILE, LITERAL, "\\\\u0000", "\\\\\x00", 1, None]}
    text = dumps(value)
    assert "\\u0000" not in text.replace("\\\\", "")  # no NUL escape after any backslash pair
    assert msgspec.json.decode(text) == {"k\ufffd": [CLEAN, LITERAL_CLEAN, "\\\\u0000",
                                                    "\\\\\ufffd", 1, None]}
    assert dumps({"lines": ["plain"]}) == '{"lines":["plain"]}'


async def test_a_stage_result_and_error_holding_nul_are_recorded(port: StorePort) -> None:
    # Given a stage run whose tool printed NUL and wrote a file with NUL into the diff
    x = await _execution(port)
    key = RunKey(execution_id=x, task_id="1.1", stage="IMPLEMENT")
    result = {"stdout": HOSTILE, "diff": "+line\x00\n", "literal": LITERAL}
    error = {"classification": "tool", "message": HOSTILE, "details": {"outputTail": HOSTILE}}
    async with port.tx() as tx:
        claim = await tx.stage_runs.claim(key, command_id=1, owner="me", lease_seconds=60)
        assert claim is not None
        # When it finishes
        started = await tx.stage_runs.finish(claim.id, "me", Finished(
            status="failed", duration_ms=5, result=result, error=error,
            usage={"model": "m\x00"}))
    # Then it is finished (not left running, to be claimed again) with U+FFFD for NUL
    assert started is not None
    async with port.reads() as q:
        assert await q.stage_runs.status(key) == "failed"
        assert await q.stage_runs.result(x, "1.1", "IMPLEMENT", 1) == {
            "stdout": CLEAN, "diff": "+line\ufffd\n", "literal": LITERAL_CLEAN}


async def test_an_error_record_holding_nul_is_written(port: StorePort) -> None:
    x = await _execution(port)
    error_id = uuid.uuid4()
    async with port.tx() as tx:
        await tx.executions.record_error(NewError(
            id=error_id, execution_id=x, task_id="1.1", stage="IMPLEMENT",
            classification="tool", message=f"aider: {HOSTILE}",
            details={"outputTail": HOSTILE}, attempts=1))
    async with port.reads() as q:
        row = await q.executions.error(x, error_id)
        assert await q.executions.error_line(error_id) == f"tool: aider: {CLEAN}"
    assert row is not None
    assert (row.message, row.details) == (f"aider: {CLEAN}", {"outputTail": CLEAN})


async def test_a_log_notification_holding_nul_is_appended_and_notified(
        port: StorePort, notes: Notes) -> None:
    x = await _execution(port)
    payload = {"level": "info", "stage": "IMPLEMENT", "taskId": "1.1\x00",
               "lines": [HOSTILE, LITERAL, "\x1b[2K\x1b]52;c;aGk=\x07"]}
    await stream.append_alone(port, x, [("execution-log", payload)])
    want = {**payload, "taskId": "1.1\ufffd", "lines": [CLEAN, LITERAL_CLEAN, payload["lines"][2]]}
    async with port.reads() as q:
        rows = await q.notifications.after(0, 10)
    assert [msgspec.json.decode(r.payload) for r in rows] == [want]
    assert rows[0].task_id == "1.1\ufffd"
    (note,) = await notes.all(1)
    assert [msgspec.json.decode(r.payload) for r in notified(note)[1]] == [want]
