"""The whole pipeline on the sample project: real Postgres, Redis, Docker, git and Aider."""

from __future__ import annotations

from tests.e2e.conftest import start, wait_status


async def test_the_sample_project_completes_end_to_end(store, sample, pipeline_env, procs):
    procs.relay()
    procs.worker(threads=4)
    execution = await start(store, "demo/calc", sample.url)
    row = await wait_status(store, execution, {"completed", "error", "stopped", "paused"},
                            timeout=600)
    assert row["status"] == "completed", row
