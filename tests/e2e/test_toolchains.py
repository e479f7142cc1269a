"""A project's Node.js line through the whole pipeline.

A small Node project pins Node.js 20 in ``.nvmrc`` (the image's default line is newer) and
its test fails on any other line: SETUP records the line it chose and why, the baseline
and VERIFY run the project's test on Node.js 20 (its output says so), and the task
completes. A project pinning a line the image does not offer pauses at SETUP for a person
with an ``environment`` error naming what it asked and what is offered, before any model
call.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from sqlalchemy import text
from tests.e2e.checks import containers_of, frames, remote_task_list, stage_runs
from tests.e2e.conftest import start, wait_status
from tests.support.settings import use_settings

from devtools.demo.sample import create_sample
from devtools.scripted_model import ScriptedModelServer, parse_script

pytestmark = [pytest.mark.docker, pytest.mark.slow]

END = {"paused", "completed", "error", "stopped"}
TASKS = ("# Twenty\n\nPhase 1: Helpers (Dependencies: [])\n\n"
         "- 1.1 Add double (Dependencies: [])\n  • files: double.js, test.js\n")
CHECK_LINE = ("'use strict';\nconsole.log('running on node ' + process.version);\n"
              "if (!process.version.startsWith('v20.')) {\n"
              "  console.error('wrong line: ' + process.version);\n  process.exit(1);\n}\n")
DOUBLE = "'use strict';\n\nmodule.exports = function double(n) {\n  return 2 * n;\n};\n"
DOUBLE_TEST = ("const assert = require('assert');\nconst double = require('./double');\n"
               "assert.strictEqual(double(21), 42);\nconsole.log('double ok');\n")
SCRIPT = ('[tasks."1.1"]\nedit_format = "whole"\nreply = "Adding double."\n'
          f'[[tasks."1.1".edits]]\npath = "double.js"\ncontent = {json.dumps(DOUBLE)}\n'
          f'[[tasks."1.1".edits]]\npath = "test.js"\n'
          f"content = {json.dumps(CHECK_LINE + DOUBLE_TEST)}\n")


def project_files(nvmrc: str) -> dict[str, str]:
    package = {"name": "twenty", "version": "1.0.0", "private": True,
               "scripts": {"test": "node test.js"}}
    return {"tasks_list.md": TASKS, ".nvmrc": nvmrc, "package.json": json.dumps(package),
            "test.js": CHECK_LINE}


@pytest.fixture
def run_env(env: dict[str, str], monkeypatch) -> Any:
    def apply(model_url: str) -> None:
        use_settings(env, monkeypatch, {
            "DEVTEAM_MODEL_API_BASE": model_url,
            "DEVTEAM_PIPELINE_STAGE_LEASE_SECONDS": "10",
            "DEVTEAM_PIPELINE_DISPATCH_GRACE_SECONDS": "15",
            "DEVTEAM_PIPELINE_RELAY_POLL_SECONDS": "0.5",
        })

    return apply


def logged(got: list[dict[str, Any]]) -> str:
    return "\n".join(line for f in got if f["type"] == "execution-log"
                     for line in f["payload"]["lines"])


async def run_project(store, tmp_path, run_env, procs, nvmrc: str) -> tuple[Any, ...]:
    """Run the project with ``.nvmrc`` holding ``nvmrc`` until it ends or pauses: the
    sample, the execution id, its row, and how many model calls were made."""
    project = create_sample(tmp_path / "twenty", name="twenty", files=project_files(nvmrc),
                            script=SCRIPT)
    with ScriptedModelServer(parse_script(SCRIPT)) as model:
        run_env(model.url)
        procs.relay()
        procs.worker(threads=2)
        execution = await start(store, f"tc-{uuid.uuid4().hex[:6]}/twenty", project.url)
        row = await wait_status(store, execution, END, timeout=600)
        requests = len(model.requests)
    return project, execution, row, requests


async def test_given_a_project_pinning_node_20_in_nvmrc_then_its_checks_run_on_node_20_and_setup_says_why(  # noqa: E501
    store, tmp_path, run_env, procs
):
    project, execution, row, requests = await run_project(store, tmp_path, run_env, procs,
                                                          "20\n")

    assert row["status"] == "completed", row
    assert requests == 1
    assert remote_task_list(project).progress() == (1, 1)
    runs = await stage_runs(store, execution)
    [setup] = [r for r in runs if r["stage"] == "SETUP"]
    [node] = setup["result"]["toolchain"]
    assert (node["tool"], node["source"], node["asked"]) == ("node", ".nvmrc", "20")
    assert node["version"].startswith("20.")
    text_logged = logged(await frames(store, execution))
    assert f"toolchain: node {node['version']} chosen from .nvmrc ('20')" in text_logged
    assert f"running on node v{node['version']}" in text_logged  # the project's own test
    assert "wrong line: v" not in text_logged
    assert "double ok" in text_logged  # VERIFY ran the changed test on that line too
    assert containers_of(execution) == []


async def test_given_a_project_pinning_a_node_line_the_image_lacks_then_setup_pauses_as_environment_before_any_model_call(  # noqa: E501
    store, tmp_path, run_env, procs
):
    project, execution, row, requests = await run_project(store, tmp_path, run_env, procs,
                                                          "18\n")

    assert (row["status"], row["pause_reason"]) == ("paused", "human_review")
    assert requests == 0
    async with store.transaction() as session:
        [error] = (await session.execute(text(
            "SELECT stage, classification, message, details FROM errors "
            "WHERE execution_id = :e"), {"e": execution})).mappings().all()
    assert (error["stage"], error["classification"]) == ("SETUP", "environment")
    assert ".nvmrc asks for Node.js '18', which the sandbox image does not offer" in (
        error["message"])
    offered = error["details"]["offered"]
    assert offered and all(not v.startswith("18.") for v in offered)
    assert ", ".join(offered) in error["message"]
    runs = await stage_runs(store, execution)
    assert not [r for r in runs if r["stage"] == "IMPLEMENT"]
    assert remote_task_list(project).progress() == (0, 1)
    assert containers_of(execution) == []
