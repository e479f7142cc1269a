"""``devteam submit --watch`` follows an execution and returns when it ends — including
when it pauses for a person (it used to wait forever on a pause)."""

from __future__ import annotations

import json
import subprocess

import pytest
from tests.e2e.scripts import ALWAYS_FAILS
from tests.e2e.test_run_command import SHORT_LIST
from tests.support.procs import DEVTEAM

from devtools.demo.sample import INITIAL, create_sample
from devtools.scripted_model import ScriptedModelServer, parse_script

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_given_an_execution_that_pauses_for_a_person_then_submit_watch_returns_non_zero(
    tmp_path, pipeline_env, procs
):
    sample = create_sample(tmp_path / "failing", files={**INITIAL, "tasks_list.md": SHORT_LIST},
                           script=ALWAYS_FAILS)
    with ScriptedModelServer(parse_script(ALWAYS_FAILS)) as model:
        procs.env.update({"DEVTEAM_MODEL_API_BASE": model.url,
                          "DEVTEAM_PIPELINE_VERIFY_ROUNDS": "1",
                          "DEVTEAM_PIPELINE_MAX_RESOLUTION_TASKS": "0"})
        procs.relay()
        procs.worker(threads=2)
        done = subprocess.run(
            [str(DEVTEAM), "submit", "--repo", sample.url, "--project", "acme/watched",
             "--watch"],
            env={**procs.env, "COLUMNS": "200"}, capture_output=True, text=True, timeout=600,
            stdin=subprocess.DEVNULL, check=False,
        )

    assert done.returncode == 1, done.stderr[-3000:]
    started = json.loads(done.stdout.strip().splitlines()[0])
    assert started["status"] == "initializing"
    assert "human_review" in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
