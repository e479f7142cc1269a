"""VERIFY refuses a change to the project's own task list (wherever the project keeps it)
and to ``task_lists.md``, before any check runs: a task may not mark other tasks done.

The real stages INIT, SELECT, PREP and VERIFY run on the in-memory store and a bare
remote on disk; the model's round (IMPLEMENT) is a stand-in that commits the cheat, SETUP
a stand-in with nothing to install, and the sandbox a stand-in that records nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pygit2
import pytest

from devtools.demo.sample import INITIAL, Sample, create_sample
from pipeline import commands
from pipeline.audit import Principal
from pipeline.engine import Engine
from pipeline.lifecycle import Stage
from pipeline.outcome import Outcome, StageContext
from pipeline.services import Services
from pipeline.stages import start, work
from pipeline.stages.results import prepared
from pipeline.store.memory import MemoryStore
from runner.settings import get_settings, reset_settings_cache

ONE_TASK = """# Calculator

Phase 1: Core arithmetic (Dependencies: [])

- 1.1 Add and subtract (Dependencies: [])
  • files: src/calc/basic.py

- 1.2 Multiply and divide (Dependencies: [1.1])
  • files: src/calc/basic.py
"""
CHEAT = ONE_TASK.replace("- 1.2 Multiply", "- [x] 1.2 Multiply")


@dataclass
class _Session:
    name: str


class _Sandbox:
    """No containers: PREP's health check passes, removals are no-ops."""

    def session(self, spec: Any, on_wait: Any = None) -> _Session:
        return _Session(name=f"box-{spec.task_id}-{spec.attempt}")

    def remove(self, spec: Any) -> None:
        return None


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("DEVTEAM_WORKSPACE_ROOT", str(tmp_path / "workspaces"))
    monkeypatch.setenv("DEVTEAM_WORKSPACE_ALLOWED_FILE_ROOTS", str(tmp_path))
    reset_settings_cache()
    yield tmp_path
    reset_settings_cache()


def _stand_ins(edits: dict[str, str]) -> dict[Stage, Any]:
    async def setup(ctx: StageContext) -> Outcome:
        return Outcome(result={}, next=ctx.then(Stage.IMPLEMENT))

    async def implement(ctx: StageContext) -> Outcome:
        """The model's round: ``edits`` committed on the task's branch."""
        prep = await prepared(ctx)
        co = await work.checkout(ctx)
        for path, text in edits.items():
            (Path(co.path) / path).parent.mkdir(parents=True, exist_ok=True)
            (Path(co.path) / path).write_text(text)
        head = ctx.services.git.commit_task(co, prep.branch, prep.base_commit,
                                            f"{ctx.task_id}: cheat", {"Task-Id": ctx.task_id})
        return Outcome(result={"commit": head, "branch": prep.branch},
                       next=ctx.then(Stage.VERIFY, attempt=ctx.attempt))

    return {Stage.SETUP: setup, Stage.IMPLEMENT: implement}


async def _verify(sample: Sample, edits: dict[str, str],
                  task_list_path: str | None = None) -> tuple[dict[str, Any], MemoryStore]:
    """Run INIT … VERIFY with ``edits`` as the model's change: VERIFY's stage run."""
    store = MemoryStore()
    started = await commands.start_execution(
        store, principal=Principal(user_id="t", correlation_id="c"),
        project_id="acme/cheat", repository_url=sample.url)
    if task_list_path is not None:  # what a project configured before its first run
        store.tables.projects["acme/cheat"]["task_list_path"] = task_list_path
    services = Services(get_settings(), store)
    services.sandbox = _Sandbox()  # type: ignore[assignment]
    engine = Engine(services, {Stage.INIT: start.init, Stage.SELECT: start.select,
                               Stage.PREP: work.prep, Stage.VERIFY: work.verify,
                               **_stand_ins(edits)})
    command_id = started.command_id
    for stage in (Stage.INIT, Stage.SELECT, Stage.PREP, Stage.SETUP, Stage.IMPLEMENT,
                  Stage.VERIFY):
        what = await engine.run(command_id)
        runs = [r for r in store.tables.stage_runs if r["stage"] == stage.value]
        if stage is Stage.VERIFY:
            return runs[-1], store
        assert what == "succeeded", (stage, runs)
        pending = [c for c in store.tables.outbox if c["completed_at"] is None]
        command_id = pending[-1]["id"]
    raise AssertionError("unreachable")


def _main_file(sample: Sample, path: str) -> str:
    repo = pygit2.Repository(str(sample.remote))
    tree = repo.references["refs/heads/main"].peel(pygit2.Commit).tree
    return bytes(repo[tree[path].id].data).decode()


@pytest.mark.parametrize(("listed", "configured"), [
    ("task_lists.md", None),                   # the second name INIT looks for
    ("planning/TODO.md", "planning/TODO.md"),  # the project's own path
    ("TODO.md", "TODO.md"),
])
async def test_a_change_marking_other_tasks_done_in_the_project_s_list_is_refused(
    workspace, listed, configured
):
    files = {**INITIAL, listed: ONE_TASK}
    del files["tasks_list.md"]
    sample = create_sample(workspace / "cheat", files=files)

    run, store = await _verify(sample, {listed: CHEAT}, configured)

    assert run["status"] == "failed", run
    assert run["error"]["classification"] == "verification"
    assert run["result"]["protectedPaths"] == [listed]
    assert f"the change edits protected paths ({listed})" in run["error"]["message"]
    assert "commands" not in run["result"]  # refused before any check ran
    [execution] = store.tables.executions.values()
    assert (execution["status"], execution["pause_reason"]) == ("paused", "human_review")
    assert _main_file(sample, listed) == ONE_TASK  # nothing merged


async def test_a_change_to_the_outcomes_document_beside_a_configured_list_is_refused(
    workspace,
):
    files = {**INITIAL, "planning/TODO.md": ONE_TASK,
             "planning/task_outcomes.md": "# Task outcomes\n"}
    del files["tasks_list.md"]
    sample = create_sample(workspace / "cheat", files=files)

    run, _ = await _verify(sample, {"planning/task_outcomes.md": "## 1.2 done\n"},
                           "planning/TODO.md")

    assert run["result"]["protectedPaths"] == ["planning/task_outcomes.md"]
