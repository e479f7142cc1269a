"""The per-task report of ``devteam run``/``devteam demo`` and its SETUP summary, built from
stage-run rows as the pipeline records them."""

from __future__ import annotations

from devtools.local.report import setup_report, task_reports
from pipeline.history import StageRunRow
from runner.tasklist import TaskList

LIST = """Phase 1: Core (Dependencies: [])

- [x] 1.1 Done before (Dependencies: [])
- [ ] 1.2 Runs now (Dependencies: [1.1])
- [ ] 1.3 Fails (Dependencies: [1.2])
- [ ] 1.4 Never reached (Dependencies: [1.3])
"""


def run(task: str, stage: str, status: str = "succeeded", attempt: int = 1,
        result: dict | None = None, ms: int = 1000) -> StageRunRow:
    return StageRunRow(task_id=task, stage=stage, pass_no=1, attempt=attempt, status=status,
                       duration_ms=ms, result=result)


def test_each_task_of_the_list_in_file_order_with_what_the_execution_did():
    runs = [
        run("", "INIT"),
        run("#1", "SELECT"),
        run("1.2", "PREP", result={"branch": "task/1-2-runs-now"}),
        run("1.2", "IMPLEMENT"),
        run("1.2", "VERIFY", status="failed", result={"results": {
            "test.pass": {"passed": False, "actual": "exit 1"}}}),
        run("1.2", "IMPLEMENT", attempt=2),
        run("1.2", "VERIFY", attempt=2, result={"results": {
            "test.pass": {"passed": True, "actual": "exit 0"}}}),
        run("1.2", "MERGE"), run("1.2", "PUSH"), run("1.2", "UPDATE_TASKLIST"), run("1.2", "DONE"),
        run("#2", "SELECT"),
        run("1.3", "PREP"), run("1.3", "IMPLEMENT"), run("1.3", "VERIFY", status="failed"),
        run("fix-1.3-abc", "PREP"), run("fix-1.3-abc", "IMPLEMENT"),
    ]
    summaries = {"#1": {"title": "Runs now", "status": "selected"},
                 "1.2": {"status": "done"}, "1.3": {"status": "failed"},
                 "fix-1.3-abc": {"status": "in_progress"}}
    got = task_reports(runs, summaries, TaskList.parse(LIST))
    assert [t.wire() for t in got] == [
        {"id": "1.1", "status": "done", "attempts": 0, "merged": False},
        {"id": "1.2", "status": "done", "attempts": 2, "merged": True},
        {"id": "1.3", "status": "failed", "attempts": 1, "merged": False},
        {"id": "1.4", "status": "pending", "attempts": 0, "merged": False},
        {"id": "fix-1.3-abc", "status": "in_progress", "attempts": 1, "merged": False},
    ]
    assert [t.listed for t in got] == [True, True, True, True, False]
    assert got[1].branch == "task/1-2-runs-now" and got[1].checks == "test.pass ✓ exit 0"
    assert got[1].seconds == 9.0


def test_setup_sums_seconds_and_is_cached_only_when_every_run_was_a_hit():
    hit = {"cached": True, "seconds": 0.5}
    miss = {"cached": False, "seconds": 42.25}
    assert setup_report([run("1.1", "SETUP", result=hit), run("1.2", "SETUP", result=hit)]
                        ).wire() == {"seconds": 1.0, "cached": True}
    assert setup_report([run("1.1", "SETUP", result=miss), run("1.2", "SETUP", result=hit)]
                        ).wire() == {"seconds": 42.8, "cached": False}
    # a result without seconds counts the stage run's duration; one still running, nothing
    assert setup_report([run("1.1", "SETUP", status="failed", result={}, ms=2500),
                         run("1.2", "SETUP", status="running", result=None)]
                        ).wire() == {"seconds": 2.5, "cached": False}


def test_no_setup_run_is_zero_seconds_not_cached():
    assert setup_report([run("1.1", "PREP")]).wire() == {"seconds": 0, "cached": False}
