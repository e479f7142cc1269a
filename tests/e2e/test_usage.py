"""Usage end to end: a scripted execution whose model reports known token counts, with
prices configured, through real Aider, Docker, Postgres and the gateway's usage and
status APIs."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from tests.e2e.conftest import start, wait_status

from devtools.demo.sample import INITIAL, create_sample, model_script
from devtools.scripted_model import ScriptedModelServer, parse_script
from gateway.app import create_app
from runner.settings import get_settings

ONE_TASK = """# Calculator — one task

Phase 1: Core arithmetic (Dependencies: [])

- 1.1 Add and subtract (Dependencies: [])
  • files: src/calc/basic.py, tests/test_basic.py
  • test.coverage: ≥80%
"""
PROJECT = "acme/calc"
# 400 tokens at $10 per million and 120 at $25 per million: $0.004 + $0.003
SENT, RECEIVED, COST = 400, 120, 0.007


def _script() -> str:
    script = model_script()
    header = '[tasks."1.1"]\n'
    assert header in script
    return script.replace(header, f"{header}prompt_tokens = {SENT}\n"
                                  f"completion_tokens = {RECEIVED}\n", 1)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.timeout(900)
async def test_a_scripted_execution_reports_its_tokens_cost_and_container_usage(
    store, tmp_path, pipeline_env, procs, token_for
):
    script = _script()
    sample = create_sample(tmp_path / "usage", files={**INITIAL, "tasks_list.md": ONE_TASK},
                           script=script)
    with ScriptedModelServer(parse_script(script)) as model:
        procs.env.update({
            "DEVTEAM_MODEL_API_BASE": model.url,
            "DEVTEAM_MODEL_INPUT_COST_PER_MILLION": "10",
            "DEVTEAM_MODEL_OUTPUT_COST_PER_MILLION": "25",
        })
        procs.relay()
        procs.worker(threads=4)
        execution = await start(store, PROJECT, sample.url)
        row = await wait_status(store, execution, {"completed", "error", "stopped", "paused"},
                                timeout=600)
    assert row["status"] == "completed", row
    async with store.transaction() as session:
        runs = [dict(r) for r in (await session.execute(text(
            "SELECT stage, attempt, usage, (finished_at AT TIME ZONE 'UTC')::date AS day "
            "FROM stage_runs WHERE execution_id = :e ORDER BY id"),
            {"e": execution})).mappings()]
    # the IMPLEMENT round stored what Aider printed: the scripted counts and their cost
    [implement] = [r for r in runs if r["stage"] == "IMPLEMENT"]
    assert implement["usage"]["tokensSent"] == SENT
    assert implement["usage"]["tokensReceived"] == RECEIVED
    assert implement["usage"]["cost"] == pytest.approx(COST)
    # the verification container's cgroup was read before it went
    [verify] = [r for r in runs if r["stage"] == "VERIFY"]
    assert verify["usage"]["containers"] == 1
    assert verify["usage"]["cpuSeconds"] > 0
    assert verify["usage"]["peakMemoryBytes"] > 0
    assert verify["usage"]["wallSeconds"] > 0
    assert verify["usage"]["tokensSent"] is None
    measured = [r for r in runs if r["usage"] is not None]
    assert {r["stage"] for r in measured} <= {"SETUP", "IMPLEMENT", "VERIFY"}
    days = sorted({str(r["day"]) for r in measured})

    admin = _bearer(token_for("root", [], role="admin"))
    manager = _bearer(token_for("maria", ["acme/*"], role="manager"))
    app = create_app(get_settings())
    async with AsyncTestClient(app, base_url="http://gateway.local") as client:
        reply = await client.get("/api/devteam/usage/acme",
                                 params={"from": days[0], "to": days[-1]}, headers=manager)
        assert reply.status_code == 200, reply.text
        body: dict[str, Any] = reply.json()
        assert (body["customerId"], body["from"], body["to"]) == ("acme", days[0], days[-1])
        totals = body["totals"]
        assert (totals["tokensSent"], totals["tokensReceived"]) == (SENT, RECEIVED)
        assert totals["cost"] == pytest.approx(COST)
        assert totals["implementRounds"] == 1
        assert totals["containers"] == sum(r["usage"].get("containers", 0) for r in measured)
        assert totals["containers"] >= 1
        assert totals["cpuSeconds"] > 0 and totals["peakMemoryBytes"] > 0
        assert totals["peakMemoryBytes"] == max(r["usage"]["peakMemoryBytes"] or 0
                                                for r in measured)
        [project] = body["projects"]
        assert project["projectId"] == PROJECT
        assert [d["date"] for d in project["days"]] == days
        assert sum(d["tokensSent"] or 0 for d in project["days"]) == SENT
        assert project["totals"] == totals  # one project: its totals are the customer's

        # an admin reads it too; the running figures are on the status API
        assert (await client.get("/api/devteam/usage/acme", headers=admin)).status_code == 200
        status = await client.get(f"/api/devteam/automation/status/{PROJECT}", headers=manager)
        assert status.status_code == 200, status.text
        used = status.json()["usage"]
        assert (used["tokensSent"], used["tokensReceived"]) == (SENT, RECEIVED)
        assert used["cost"] == pytest.approx(COST)
        assert used["implementRounds"] == 1 and used["cpuSeconds"] > 0
