"""Repository initialisation and single-task runs."""

from __future__ import annotations

from sqlalchemy import text
from tests.e2e.checks import frames, main_commits, remote_file, remote_task_list, stage_runs
from tests.e2e.conftest import start, wait_status

from devtools.demo.sample import INITIAL, create_sample


async def test_a_repository_without_a_task_list_gets_one_from_the_template(
    store, tmp_path, pipeline_env, procs
):
    files = {k: v for k, v in INITIAL.items() if k != "tasks_list.md"}
    sample = create_sample(tmp_path / "bare", files=files)
    procs.relay()
    procs.worker(threads=2)
    execution = await start(store, "acme/empty", sample.url)
    row = await wait_status(store, execution, {"completed", "error", "paused", "stopped"})
    # an empty list is never "completed": the execution ends with an error that says what
    # to write, and the template is there to write it in
    assert row["status"] == "error"
    [error] = await errors_of(store, execution)
    assert (error["stage"], error["classification"]) == ("INIT", "config")
    assert error["message"].startswith("tasks_list.md was created from the template; "
                                       "tasks_list.md has no tasks: expected lines like")
    listing = remote_file(sample, "tasks_list.md")
    assert listing is not None and listing.startswith("# Task list")
    assert remote_task_list(sample).progress() == (0, 0)
    assert main_commits(sample)[0].message.startswith("Add tasks_list.md")
    got = await frames(store, execution)
    assert any("creating tasks_list.md from the template" in line
               for f in got if f["type"] == "execution-log" for line in f["payload"]["lines"])


async def test_a_task_list_in_which_nothing_is_recognised_is_a_config_error_not_a_completion(
    store, tmp_path, pipeline_env, procs
):
    # plain bullets are notes (unnumbered checkboxes would be tasks 1.1 and 1.2)
    unread = ("# Roadmap\n\n## Phase 1 — Setup\n\n- Add a health endpoint\n"
              "- Document it\n")
    sample = create_sample(tmp_path / "unread", files={**INITIAL, "tasks_list.md": unread})
    procs.relay()
    procs.worker(threads=2)
    execution = await start(store, "acme/unread", sample.url)
    row = await wait_status(store, execution, {"completed", "error", "paused", "stopped"})

    assert row["status"] == "error", row
    [error] = await errors_of(store, execution)
    assert (error["stage"], error["classification"]) == ("INIT", "config")
    assert "tasks_list.md has no tasks: expected lines like" in error["message"]
    assert remote_file(sample, "tasks_list.md") == unread  # left as the user wrote it
    runs = await stage_runs(store, execution)
    assert not [r for r in runs if r["stage"] in ("SELECT", "PREP")]


USUAL = """# Calculator

## Phase 1 — Core arithmetic

- [ ] Add and subtract
  • files: src/calc/basic.py, tests/test_basic.py
- [ ] Multiply and divide _(requires 1.1)_
  • files: src/calc/basic.py, tests/test_basic.py
"""


async def test_a_list_of_unnumbered_checkboxes_under_a_phase_heading_runs_to_the_end(
    store, tmp_path, pipeline_env, procs
):
    # Given the usual GitHub checklist: no ids, a dependency in prose (the sample's model
    # script answers tasks 1.1 and 1.2: the ids the reader gives these two items)
    sample = create_sample(tmp_path / "usual", files={**INITIAL, "tasks_list.md": USUAL})
    procs.relay()
    procs.worker(threads=2)
    execution = await start(store, "acme/usual", sample.url)
    row = await wait_status(store, execution, {"completed", "error", "paused", "stopped"})

    assert row["status"] == "completed", row
    runs = await stage_runs(store, execution)
    assert [r["task_id"] for r in runs if r["stage"] == "DONE"] == ["1.1", "1.2"]
    # both boxes ticked; no id was written into the user's list
    assert remote_file(sample, "tasks_list.md") == USUAL.replace("- [ ] ", "- [x] ")
    assert remote_task_list(sample).progress() == (2, 2)


async def errors_of(store, execution_id) -> list[dict]:
    async with store.transaction() as session:
        rows = await session.execute(text(
            "SELECT stage, classification, message FROM errors WHERE execution_id = :e"),
            {"e": execution_id})
        return [dict(r) for r in rows.mappings()]


async def test_an_event_with_a_task_runs_only_that_task(store, sample, pipeline_env, procs):
    procs.relay()
    procs.worker(threads=4)
    execution = await start(store, "demo/calc", sample.url,
                            task={"id": "2.1", "title": "Power and square root"})
    row = await wait_status(store, execution, {"completed", "error", "paused", "stopped"})
    assert row["status"] == "completed"
    runs = await stage_runs(store, execution)
    assert {r["task_id"] for r in runs if r["stage"] == "DONE"} == {"2.1"}
    tasks = remote_task_list(sample)
    assert tasks.get("2.1").status.value == "done"
    assert tasks.get("1.1").status.value == "pending"
    assert remote_file(sample, "src/calc/power.py") is not None
