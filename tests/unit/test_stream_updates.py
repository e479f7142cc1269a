"""What execution-update frames say between tasks: the columns a claim sets (never the
previous task's branch), and an update identical to the one before it is dropped."""

from __future__ import annotations

from pipeline.executions import claim_fields
from pipeline.lifecycle import Stage
from pipeline.stream import drop_repeated_updates


def test_a_select_claim_clears_the_task_and_its_branch() -> None:
    assert claim_fields(Stage.SELECT, "#4", "1.3") == {
        "current_stage": "SELECT", "current_task_id": None, "branch": None}


def test_a_claim_for_another_task_clears_the_previous_tasks_branch() -> None:
    assert claim_fields(Stage.PREP, "2.1", "1.3") == {
        "current_stage": "PREP", "current_task_id": "2.1", "branch": None}
    # the same task keeps the branch its PREP named
    assert claim_fields(Stage.VERIFY, "2.1", "2.1") == {
        "current_stage": "VERIFY", "current_task_id": "2.1"}
    # stages without a task (INIT, FINALIZE) leave both alone
    assert claim_fields(Stage.FINALIZE, "", "2.1") == {"current_stage": "FINALIZE"}


def test_an_update_identical_to_the_previous_one_is_dropped() -> None:
    a = {"status": "running", "stage": "VERIFY", "taskId": "1", "branch": None}
    b = {**a, "stage": "MERGE"}
    log = {"level": "info", "lines": ["x"]}
    frames = [("execution-update", dict(a)), ("execution-log", log),
              ("execution-update", dict(a)), ("execution-update", b)]
    kept, newest = drop_repeated_updates(frames, previous=None)
    assert kept == [("execution-update", a), ("execution-log", log), ("execution-update", b)]
    assert newest == b
    # against what was sent before: only what changed goes out
    kept, newest = drop_repeated_updates([("execution-update", dict(b))], previous=b)
    assert kept == [] and newest is None
    # compared as JSON reads back (a tuple is a list)
    kept, _ = drop_repeated_updates([("execution-update", {"x": (1, 2)})], previous={"x": [1, 2]})
    assert kept == []
