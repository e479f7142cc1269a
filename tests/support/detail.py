"""A finished execution as the pipeline records one (stage runs with usage and VERIFY
results, the event's task summaries, an error record, log frames and the completion), for
the execution-detail API and the dashboard's execution view."""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy import text

from pipeline import stream
from pipeline.db import Store

SECRET = "ghp_" + "Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0FeDcBa"
LOG_LINES = ["branch task/1-1-add-and-subtract from 0123456789", "committed abc: 1 files",
             "verification: tests ok, coverage ok", "task 1.1 done (1 of 1)"]


async def stage_run(store: Store, execution: uuid.UUID, task: str, stage: str, *,
                    attempt: int = 1, status: str = "succeeded", ms: int = 100,
                    usage: dict[str, Any] | None = None,
                    result: dict[str, Any] | None = None) -> None:
    async with store.transaction() as session:
        await session.execute(
            text("INSERT INTO stage_runs (execution_id, task_id, stage, attempt, status, "
                 "duration_ms, usage, result, finished_at) VALUES (:e, :t, :s, :a, :st, :ms, "
                 "CAST(:u AS jsonb), CAST(:r AS jsonb), now())"),
            {"e": execution, "t": task, "s": stage, "a": attempt, "st": status, "ms": ms,
             "u": None if usage is None else json.dumps(usage),
             "r": None if result is None else json.dumps(result)},
        )


async def finish_two_rounds(store: Store, execution: uuid.UUID, *, log: bool = False) -> None:
    """Record a completed run of task 1.1 that took two rounds (the first failed its
    tests) on a started ``execution``; with ``log``, its log and completion frames too."""
    await stage_run(store, execution, "", "INIT", ms=40)
    await stage_run(store, execution, "#1", "SELECT", ms=20)
    await stage_run(store, execution, "1.1", "IMPLEMENT", ms=3000,
                    usage={"tokensSent": 1200, "tokensReceived": 80, "cost": 0.02,
                           "cpuSeconds": None, "peakMemoryBytes": None, "wallSeconds": 3.0})
    await stage_run(store, execution, "1.1", "VERIFY", status="failed", ms=5000,
                    usage={"cpuSeconds": 1.5, "peakMemoryBytes": 50_000_000, "wallSeconds": 5.0},
                    result={"results": {"tests": {"passed": False, "actual": "1 failed",
                                                  "required": "pass"}}})
    await stage_run(store, execution, "1.1", "IMPLEMENT", attempt=2, ms=2000,
                    usage={"tokensSent": 900, "tokensReceived": 60, "cost": 0.01})
    await stage_run(store, execution, "1.1", "VERIFY", attempt=2, ms=4000,
                    usage={"cpuSeconds": 1.0, "peakMemoryBytes": 70_000_000, "wallSeconds": 4.0},
                    result={"results": {"tests": {"passed": True, "actual": "pass",
                                                  "required": "pass"},
                                        "coverage": {"passed": True, "actual": 92,
                                                     "required": 80}}})
    await stage_run(store, execution, "1.1", "DONE", ms=10)
    await stage_run(store, execution, "#2", "FINALIZE", ms=30)
    async with store.transaction() as session:
        await session.execute(
            text("UPDATE events SET task_context = CAST(:c AS jsonb) WHERE id = "
                 "(SELECT event_id FROM executions WHERE id = :e)"),
            {"e": execution, "c": json.dumps({"tasks": {"1.1": {
                "title": "Add and subtract", "status": "done",
                "branch": "task/1-1-add-and-subtract", "attempts": 2}}})},
        )
        await session.execute(
            text("INSERT INTO errors (id, execution_id, task_id, stage, classification, "
                 "message) VALUES (:id, :e, '1.1', 'VERIFY', 'verification', :m)"),
            {"id": uuid.uuid4(), "e": execution, "m": f"tests failed; push with {SECRET}"},
        )
        await session.execute(
            text("UPDATE executions SET status = 'completed', completed_tasks = 1, "
                 "total_tasks = 1, current_stage = 'FINALIZE', finished_at = now() "
                 "WHERE id = :e"), {"e": execution})
    if log:
        frames: list[tuple[str, dict[str, Any]]] = [
            ("execution-log", {"level": "info", "stage": "VERIFY", "taskId": "1.1",
                               "lines": [line]}) for line in LOG_LINES]
        frames.append(("completion", {"status": "completed", "completedTasks": 1,
                                      "totalTasks": 1, "durationMs": 14200}))
        async with store.tx() as tx:
            await stream.append(tx, execution, frames)
