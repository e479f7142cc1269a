"""A task cannot move its own goalposts, and is not charged with what was broken before it.

Each test reproduces an attack by a (scripted) model, or a broken base, through the real
pipeline: Postgres, Redis, Docker, git and Aider. What it asserts is what a person would
see: the remote's ``main`` untouched, the execution paused for review, the error record.
"""

from __future__ import annotations

import pytest
from sqlalchemy import text
from tests.e2e.checks import containers_of, main_commits, remote_file, stage_runs
from tests.e2e.conftest import start, wait_status

from devtools.demo.sample import BASIC_1, INITIAL, TEST_BASIC_1, create_sample, model_script
from devtools.scripted_model import ScriptedModelServer, parse_script

ONE_TASK = """# Calculator — goalposts

Phase 1: Core arithmetic (Dependencies: [])

- 1.1 Add and subtract (Dependencies: [])
  • files: src/calc/basic.py, tests/test_basic.py

- 1.2 Multiply and divide (Dependencies: [1.1])
  • files: src/calc/basic.py, tests/test_basic.py
"""
BROKEN_ADD = BASIC_1.replace("return a + b", "return a - b")
CHEATS = {
    # the test command becomes `true`, while the code is broken
    ".devteam.toml": INITIAL[".devteam.toml"].replace(
        'test = "python3 -m coverage run --source=src -m pytest -q -p no:cacheprovider"',
        'test = "true"'),
    # the next task is marked done, so it would never run
    "tasks_list.md": ONE_TASK.replace("- 1.2 Multiply", "- [x] 1.2 Multiply"),
    # the project's CI is switched off
    ".github/workflows/ci.yml": "on: push\njobs: {}\n",
}


async def _errors(store, execution):
    async with store.transaction() as session:
        return (await session.execute(text(
            "SELECT classification, message, details FROM errors WHERE execution_id = :e "
            "ORDER BY created_at"), {"e": execution})).all()


@pytest.mark.parametrize("path", sorted(CHEATS))
async def test_a_change_to_a_protected_path_is_never_merged_and_waits_for_a_person(
    store, tmp_path, pipeline_env, procs, path
):
    files = {**INITIAL, "tasks_list.md": ONE_TASK,
             ".github/workflows/ci.yml": "on: push\njobs:\n  test: {runs-on: ubuntu-latest}\n"}
    edits = {"1.1": {"src/calc/basic.py": BROKEN_ADD if path == ".devteam.toml" else BASIC_1,
                     "tests/test_basic.py": TEST_BASIC_1, path: CHEATS[path]}}
    script = model_script(edits, {})
    sample = create_sample(tmp_path / "cheat", files=files, script=script)
    before = [c.id for c in main_commits(sample)]
    with ScriptedModelServer(parse_script(script)) as model:
        procs.env["DEVTEAM_MODEL_API_BASE"] = model.url
        procs.relay()
        procs.worker(threads=2)
        execution = await start(store, "acme/cheat", sample.url)
        row = await wait_status(store, execution, {"paused", "completed", "error", "stopped"})
    assert (row["status"], row["pause_reason"]) == ("paused", "human_review"), (
        row, await _errors(store, execution))
    assert [c.id for c in main_commits(sample)] == before  # nothing merged, nothing pushed
    assert remote_file(sample, path) == files[path]
    [(kind, message, details)] = await _errors(store, execution)
    assert kind == "verification"
    assert f"the change edits protected paths ({path})" in message
    assert details["protectedPaths"] == [path]
    assert details["diff"].startswith(f"diff --git a/{path} b/{path}")
    assert "diff --git a/src/calc/basic.py" not in details["diff"]  # only what to review
    verify = [r for r in await stage_runs(store, execution) if r["stage"] == "VERIFY"]
    assert [r["status"] for r in verify] == ["failed"]
    assert "commands" not in verify[0]["result"]  # refused before any check ran
    assert containers_of(execution) == []


MORE = ("import calc\n\n\ndef test_one() -> None:\n    assert calc\n\n\n"
        "def test_two() -> None:\n    assert calc.__name__ == 'calc'\n")
RUNS_FEWER = {
    "src/calc/basic.py": BASIC_1,
    "tests/test_more.py": "# gone\n",  # two of the base's three tests; the one left passes
}


async def test_a_change_that_runs_fewer_tests_fails_its_round_with_the_counts(
    store, tmp_path, pipeline_env, procs
):
    files = {**INITIAL, "tasks_list.md": ONE_TASK, "tests/test_more.py": MORE}
    edits = {"1.1": {"src/calc/basic.py": BASIC_1, "tests/test_basic.py": TEST_BASIC_1,
                     "tests/test_more.py": MORE},
             "1.2": {"src/calc/basic.py": BASIC_1 + "\n\ndef multiply(a: float, b: float)"
                     " -> float:\n    return a * b\n", "tests/test_basic.py": TEST_BASIC_1}}
    script = model_script(edits, {"1.1": RUNS_FEWER})
    sample = create_sample(tmp_path / "fewer", files=files, script=script)
    with ScriptedModelServer(parse_script(script)) as model:
        procs.env["DEVTEAM_MODEL_API_BASE"] = model.url
        procs.relay()
        procs.worker(threads=2)
        execution = await start(store, "acme/fewer", sample.url)
        row = await wait_status(store, execution, {"paused", "completed", "error", "stopped"})
    assert row["status"] == "completed", row
    runs = await stage_runs(store, execution)
    verify = [r for r in runs if r["task_id"] == "1.1" and r["stage"] == "VERIFY"]
    assert [r["status"] for r in verify] == ["failed", "succeeded"]
    guard = verify[0]["result"]["results"]["tests.run"]
    assert guard["passed"] is False
    assert guard["detail"].startswith("tests run: 3 → 1")  # base: 1 + 2; the change: 1 + 0
    assert "tests run: 3 → 1" in verify[0]["result"]["feedback"]  # the model is told
    assert verify[1]["result"]["measures"]["testsRun"] == 5
    # the unchanged base was verified once; the second task reused it
    setups = [r["result"].get("baseline") for r in runs if r["stage"] == "SETUP"]
    assert setups[0]["measures"]["testsRun"] == 3 and setups[0]["problems"] == []
    assert [s.get("reusedFrom") for s in setups[1:]] == [setups[0]["commit"]]
    assert remote_file(sample, "tests/test_more.py") == MORE


async def test_a_base_that_cannot_pass_its_checks_pauses_before_any_model_call(
    store, tmp_path, pipeline_env, procs
):
    broken = "def test_broken_before_anyone_came() -> None:\n    assert 1 + 1 == 3\n"
    files = {**INITIAL, "tasks_list.md": ONE_TASK, "tests/test_broken.py": broken}
    script = model_script({"1.1": {"src/calc/basic.py": BASIC_1}}, {})
    sample = create_sample(tmp_path / "broken", files=files, script=script)
    with ScriptedModelServer(parse_script(script)) as model:
        procs.env["DEVTEAM_MODEL_API_BASE"] = model.url
        procs.relay()
        procs.worker(threads=2)
        execution = await start(store, "acme/broken", sample.url)
        row = await wait_status(store, execution, {"paused", "completed", "error", "stopped"})
        assert model.requests == []
    assert (row["status"], row["pause_reason"]) == ("paused", "human_review"), row
    runs = await stage_runs(store, execution)
    assert not [r for r in runs if r["stage"] in ("IMPLEMENT", "VERIFY")]
    [(kind, message, details)] = await _errors(store, execution)
    assert kind == "environment"
    expected = "does not pass its own checks before any change (test.pass: required pass, got"
    assert f"{expected} exit 1)" in message
    assert "no model call was made" in message
    assert "test_broken_before_anyone_came" in details["feedback"]
    assert containers_of(execution) == []
