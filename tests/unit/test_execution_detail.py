"""The execution view's pure rules: actions from the transition table, and a
detail assembled from stage runs, task summaries and error records."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from pipeline.detail import DetailRows, actions, assemble
from pipeline.lifecycle import Status
from pipeline.store.details import ErrorRecord
from pipeline.store.details import StageRunUse as StageRun
from pipeline.store.executions import ExecutionRow

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_actions_follow_the_transition_table() -> None:
    # written out from CONTRACTS.md "Statuses and transitions", not derived from the table
    expected = {
        "idle": set(), "initializing": {"stop"}, "running": {"pause", "stop"},
        "paused": {"resume", "stop"}, "stopping": set(), "stopped": set(),
        "completed": set(), "error": set(),
    }
    assert set(expected) == {s.value for s in Status}
    for status, allowed in expected.items():
        got = actions(status)
        assert set(got) == {"pause", "resume", "stop"}
        assert {name for name, ok in got.items() if ok} == allowed, status
    assert actions("no-such-status") == {"pause": False, "resume": False, "stop": False}


def _execution(status: str) -> ExecutionRow:
    return ExecutionRow(
        id=uuid.uuid4(), project_id="acme/web", customer_id="acme", event_id=uuid.uuid4(),
        user_id="alice", status=status, pause_reason=None, stop_point=None,
        single_task_id=None, current_task_id=None, current_stage="FINALIZE", branch=None,
        completed_tasks=1, total_tasks=2, last_seq=9, pending_command=None, error_id=None,
        correlation_id="c", started_at=T0, updated_at=T0, finished_at=T0,
    )


def _run(task: str, stage: str, attempt: int = 1, ms: int = 10, status: str = "succeeded",
         usage: dict | None = None, criteria: dict | None = None) -> StageRun:
    return StageRun(task_id=task, stage=stage, attempt=attempt, status=status, duration_ms=ms,
                    usage=usage, criteria=criteria)


def test_a_detail_lists_tasks_in_run_order_with_the_last_rounds_criteria() -> None:
    failing = {"tests": {"passed": False, "actual": "2 failed", "required": "pass"}}
    passing = {"tests": {"passed": True, "actual": "pass", "required": "pass"},
               "coverage": {"passed": True, "actual": 91.5, "required": ">= 80",
                            "detail": "lines"}}
    rows = DetailRows(
        execution=_execution("completed"),
        tasks={"1.2": {"title": "Multiply", "status": "done", "branch": "task/1-2-multiply",
                       "attempts": 2},
               "1.3": {"title": "Divide", "status": "selected"}},
        runs=[
            _run("", "INIT", ms=5),
            _run("#1", "SELECT", ms=7),
            _run("1.2", "IMPLEMENT", usage={"tokensSent": 100, "cost": 0.1}),
            _run("1.2", "VERIFY", status="failed", criteria=failing,
                 usage={"cpuSeconds": 1.0, "peakMemoryBytes": 10}),
            _run("1.2", "IMPLEMENT", attempt=2, usage={"tokensSent": 40, "cost": 0.05}),
            _run("1.2", "VERIFY", attempt=2, criteria=passing,
                 usage={"cpuSeconds": 2.0, "peakMemoryBytes": 30}),
            _run("1.2", "DONE"),
            _run("", "FINALIZE", ms=3),
        ],
        errors=[ErrorRecord(id=uuid.uuid4(), task_id="1.2", stage="VERIFY",
                            classification="verification", message="tests failed",
                            attempts=1, created_at=T0)],
        error_count=1,
    )
    view = assemble(rows)
    assert [t["taskId"] for t in view["tasks"]] == ["1.2", "1.3"]
    done, selected = view["tasks"]
    assert (done["title"], done["status"], done["branch"], done["attempts"]) == (
        "Multiply", "done", "task/1-2-multiply", 2)
    assert done["criteria"] == [
        {"name": "tests", "required": "pass", "actual": "pass", "passed": True, "detail": None},
        {"name": "coverage", "required": ">= 80", "actual": 91.5, "passed": True,
         "detail": "lines"},
    ]
    assert done["stages"] == [
        {"stage": "IMPLEMENT", "runs": 2, "durationMs": 20, "status": "succeeded"},
        {"stage": "VERIFY", "runs": 2, "durationMs": 20, "status": "succeeded"},
        {"stage": "DONE", "runs": 1, "durationMs": 10, "status": "succeeded"},
    ]
    assert done["usage"] == {"tokensSent": 140, "tokensReceived": None, "cost": pytest.approx(0.15),
                             "cpuSeconds": 3.0, "peakMemoryBytes": 30, "wallSeconds": None}
    assert (selected["status"], selected["criteria"], selected["stages"]) == (
        "selected", [], [])
    assert selected["usage"] == dict.fromkeys(done["usage"])
    assert [s["stage"] for s in view["stages"]] == [
        "INIT", "SELECT", "IMPLEMENT", "VERIFY", "DONE", "FINALIZE"]
    assert view["usage"]["tokensSent"] == 140
    assert view["actions"] == {"pause": False, "resume": False, "stop": False}
    assert (view["status"], view["userId"], view["errorCount"]) == ("completed", "alice", 1)
    assert view["errors"][0]["classification"] == "verification"
    assert view["errors"][0]["createdAt"] == "2026-01-01T00:00:00.000Z"


def test_a_running_execution_offers_pause_and_stop() -> None:
    view = assemble(DetailRows(execution=_execution("running"), tasks={}, runs=[], errors=[],
                               error_count=0))
    assert view["actions"] == {"pause": True, "resume": False, "stop": True}
    assert view["tasks"] == [] and view["usage"]["cost"] is None


def test_odd_shapes_in_the_recorded_json_read_as_nothing_rather_than_fail() -> None:
    rows = DetailRows(
        execution=_execution("completed"),
        tasks={"1.1": "not an object", "1.2": {"title": 7, "attempts": "3", "branch": None}},
        runs=[_run("1.2", "VERIFY", criteria={"tests": "passed", "lint": {"passed": 1}})],
        errors=[], error_count=0,
    )
    first, second = assemble(rows)["tasks"]
    assert (first["taskId"], first["title"], first["status"], first["attempts"]) == (
        "1.2", None, "in_progress", 1)
    assert first["criteria"] == [{"name": "lint", "required": None, "actual": None,
                                  "passed": True, "detail": None}]
    assert (second["taskId"], second["status"], second["branch"]) == ("1.1", "in_progress", None)
