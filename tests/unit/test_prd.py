"""The requirements' flat frame fields: execution state, progress, taskId."""

from __future__ import annotations

import pytest

from pipeline import prd
from pipeline.lifecycle import Stage, Status
from pipeline.stream import frame_fields


@pytest.mark.parametrize(
    ("stage", "expected"),
    [
        ("INIT", "INITIALIZING"),
        ("SELECT", "SELECTING"),
        ("PREP", "PREPARING"),
        ("SETUP", "SETTING_UP"),
        ("IMPLEMENT", "IMPLEMENTING"),
        ("VERIFY", "VERIFYING"),
        ("MERGE", "MERGING"),
        ("PUSH", "PUSHING"),
        ("UPDATE_TASKLIST", "UPDATING_TASKLIST"),
        ("DONE", "UPDATING_TASKLIST"),
        ("FINALIZE", "FINALIZING"),
        (None, "INITIALIZING"),
    ],
)
def test_a_running_execution_is_in_the_state_of_its_stage(stage, expected) -> None:
    assert prd.state("running", stage) == expected


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("initializing", "INITIALIZING"),
        ("paused", "PAUSED"),
        ("stopping", "STOPPING"),
        ("stopped", "STOPPED"),
        ("completed", "COMPLETED"),
        ("error", "ERROR"),
        ("idle", "IDLE"),
    ],
)
def test_every_other_status_wins_over_the_stage(status, expected) -> None:
    for stage in [None, *Stage]:
        assert prd.state(status, stage) == expected


def test_every_state_produced_is_listed_and_unknown_values_do_not_raise() -> None:
    produced = {prd.state(status, stage) for status in Status for stage in [None, *Stage]}
    assert produced == set(prd.STATES)
    assert prd.state("exploded", "IMPLEMENT") == "INITIALIZING"
    assert prd.state("running", "NOT_A_STAGE") == "INITIALIZING"


def test_progress_counts_finished_tasks_and_the_current_tasks_stage() -> None:
    # 3 of 10 tasks done, the fourth is being verified (60% of a task)
    assert prd.progress("running", "VERIFY", has_task=True, completed=3, total=10) == 36.0
    # one decimal
    assert prd.progress("running", "IMPLEMENT", has_task=True, completed=1, total=3) == 40.0
    assert prd.progress("running", "PREP", has_task=True, completed=0, total=7) == 0.7
    assert prd.progress("running", "SELECT", has_task=False, completed=2, total=3) == 66.7


def test_progress_never_steps_back_along_one_tasks_stages_and_into_the_next() -> None:
    seen = [prd.progress("running", "SELECT", has_task=False, completed=4, total=9)]
    for stage in ("PREP", "SETUP", "IMPLEMENT", "VERIFY", "MERGE", "PUSH", "UPDATE_TASKLIST",
                  "DONE"):
        seen.append(prd.progress("running", stage, has_task=True, completed=4, total=9))
    # DONE counted the task and the task is no longer current
    seen.append(prd.progress("running", "DONE", has_task=False, completed=5, total=9))
    seen.append(prd.progress("running", "SELECT", has_task=False, completed=5, total=9))
    assert seen == sorted(seen)
    assert seen[0] < seen[-1] == 55.6


def test_progress_bounds() -> None:
    assert prd.progress("completed", "FINALIZE", has_task=False, completed=2, total=5) == 100.0
    assert prd.progress("running", "IMPLEMENT", has_task=True, completed=0, total=0) == 0.0
    assert prd.progress("running", "DONE", has_task=True, completed=9, total=9) == 100.0
    assert prd.progress("error", "VERIFY", has_task=True, completed=1, total=4) == 40.0


def test_task_of_keeps_real_task_ids_only() -> None:
    assert prd.task_of("1.2.3") == "1.2.3"
    assert prd.task_of("fix-abc") == "fix-abc"
    assert prd.task_of("#3") is None  # a SELECT's between-tasks key
    assert prd.task_of("") is None
    assert prd.task_of(None) is None
    assert prd.task_of(12) is None


def test_update_fields_read_stored_json_text_or_numbers() -> None:
    assert prd.update_fields("running", "VERIFY", "1.1", "3", "10") == ("VERIFYING", 36.0)
    assert prd.update_fields("running", "VERIFY", "1.1", 3, 10) == ("VERIFYING", 36.0)
    # nonsense in a payload gives a state and a number, never an exception
    assert prd.update_fields(None, 5, None, "²", True) == ("INITIALIZING", 0.0)


def test_frame_fields_on_each_frame_type() -> None:
    update = {"status": "paused", "stage": "IMPLEMENT", "taskId": "2.1", "progress": 25,
              "branch": "devteam/2.1", "completedTasks": 1, "totalTasks": 4}
    assert frame_fields("execution-update", update) == {
        "task_id": "2.1", "status": "PAUSED", "progress": 30.0}
    assert frame_fields("execution-log", {"taskId": "#2", "lines": []}) == {"task_id": None}
    assert frame_fields("completion", {"status": "completed"}) == {"task_id": None}
