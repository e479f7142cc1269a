"""A hostile repository against the service's storage, through the real pipeline (relay,
worker, Aider and the scripted model, Docker, Postgres, the gateway).

The attacks this reproduces:

- a test command printing 2,000-character random lines grew ``notifications`` by about
  9 MB/s (194 MB in 20 s);
- a VERIFY whose commands printed long lines stored a 52 MB stage result, again in
  ``events.task_context``, and ``GET /events/{id}`` answered 52 MB;
- a ``.devteam.toml`` may list as many commands as it likes.

The stated bound, measured here: the notifications table grows by at most 5 MB per stage
run whose output reached the limit (the defaults keep 2 MiB of text per stage run), a
stage result is at most ``DEVTEAM_LIMITS_STAGE_RESULT_BYTES`` and a task context at most
``DEVTEAM_LIMITS_TASK_CONTEXT_BYTES``, all with the defaults.
"""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import text
from tests.e2e.checks import containers_of, frames, ref_updates, stage_runs
from tests.e2e.conftest import start, wait_status
from tests.integration.security.helpers import model_script, project_files

from devtools.demo.sample import create_sample
from devtools.scripted_model import ScriptedModelServer, parse_script
from runner.settings import get_settings

pytestmark = [pytest.mark.docker, pytest.mark.slow]

MB = 1024 * 1024
ENDED = {"paused", "completed", "error", "stopped"}

FLOOD = '''"""Prints what a hostile test suite prints: as much as it likes, as fast as it can."""
import random
import string
import sys

ALPHABET = string.ascii_letters + string.digits
mode, seed = sys.argv[1], int(sys.argv[2])
rng = random.Random(seed)
write = sys.stdout.write
if mode == "lines":  # 20,000 random lines of 2,000 characters: 40 MB
    for _ in range(20_000):
        write("".join(rng.choices(ALPHABET, k=2000)) + "\\n")
else:  # 250 lines of 66,000 characters: past the sandbox's 64 KiB line cut, so the
    # tail of 200 lines it keeps for the result is about 13 MB
    for _ in range(250):
        write("".join(rng.choices(ALPHABET, k=66_000)) + "\\n")
'''
FLOOD_TOML = """[commands]
test = "python3 flood.py lines 1"
build = ["python3 flood.py long 2", "python3 flood.py long 3", "python3 flood.py long 4",
         "python3 flood.py long 5"]
[criteria]
"test.pass" = "pass"
"build" = "pass"
"""
LIMIT_REACHED = "… output limit reached (limit "


async def table_bytes(store, table: str = "notifications") -> int:
    async with store.transaction() as session:
        return int((await session.execute(
            text("SELECT pg_total_relation_size(CAST(:t AS regclass))"), {"t": table}
        )).scalar_one())


async def test_given_a_repository_flooding_its_output_then_what_is_stored_and_sent_is_bounded(
    store, tmp_path, attack_env, procs, token_for, runner_image
):
    hostile = create_sample(
        tmp_path / "flood",
        files=project_files(**{".devteam.toml": FLOOD_TOML, "flood.py": FLOOD}),
        script=model_script(),
    )
    before = await table_bytes(store)
    with ScriptedModelServer(parse_script(model_script())) as model:
        attack_env(model.url)
        procs.relay()
        procs.worker(threads=2)
        gateway = procs.gateway()
        execution = await start(store, "evil/flood", hostile.url)
        row = await wait_status(store, execution, ENDED, timeout=900)
    growth = await table_bytes(store) - before

    # the flood passes its own checks: the execution goes on as for any project
    assert row["status"] == "completed", row
    got = await frames(store, execution)
    logs = [f["payload"] for f in got if f["type"] == "execution-log"]
    lines = [line for p in logs for line in p["lines"]]
    # each stage run that ran the flood stopped at the limit, said so once, and counted
    # what it dropped at its end
    reached = [line for line in lines if line.startswith(LIMIT_REACHED)]
    counted = [line for line in lines if line.startswith("… ") and " lines dropped (limit " in line]
    assert reached, "the output never reached the limit: the attack did not happen"
    assert len(counted) == len(reached)
    dropped = sum(int(line.split()[1].replace(",", "")) for line in counted)
    assert dropped > 15_000  # most of the 20,000 lines and every long one
    # the stated bound: at most 5 MB of notifications per stage run that reached the limit
    assert growth <= 5 * MB * len(reached), (
        f"notifications grew by {growth:,} bytes for {len(reached)} flooded stage run(s)")
    async with store.transaction() as session:
        per_stage = dict((await session.execute(text(
            "SELECT payload->>'stage', sum(pg_column_size(payload)) FROM notifications "
            "WHERE execution_id = :e GROUP BY 1"), {"e": execution})).all())
    assert all(size <= 5 * MB for size in per_stage.values()), per_stage

    # the VERIFY result: each command's output cut to its end, after a marker
    limits = get_settings().limits
    verify = [r for r in await stage_runs(store, execution) if r["stage"] == "VERIFY"]
    assert [r["status"] for r in verify] == ["succeeded"]
    commands = verify[0]["result"]["commands"]
    assert [c["command"] for c in commands] == [
        "python3 flood.py lines 1", *(f"python3 flood.py long {i}" for i in range(2, 6))]
    for command in commands:
        marker = command["outputTail"].split("\n", 1)[0]
        assert marker.startswith("… ") and "bytes of output dropped" in marker, marker
    async with store.transaction() as session:
        sizes = (await session.execute(text(
            "SELECT max(octet_length(s.result::text)), "
            "(SELECT octet_length(v.task_context::text) FROM events v "
            " JOIN executions x ON x.event_id = v.id WHERE x.id = :e) "
            "FROM stage_runs s WHERE s.execution_id = :e"), {"e": execution})).one()
        event_id = (await session.execute(text(
            "SELECT event_id FROM executions WHERE id = :e"), {"e": execution})).scalar_one()
    largest_result, context_size = sizes
    assert largest_result <= limits.stage_result_bytes
    assert context_size <= limits.task_context_bytes
    # and what a client is sent for the event is as small
    answer = httpx.get(f"{gateway.url}/events/{event_id}", timeout=30,
                       headers={"Authorization": f"Bearer {token_for('eve', ['evil/*'])}"})
    assert answer.status_code == 200, answer.text[:500]
    assert len(answer.content) <= limits.task_context_bytes + 64 * 1024
    assert "VerifyNode" in answer.json()["task_context"]["nodes"]
    assert containers_of(execution) == []


async def test_given_a_devteam_toml_with_too_many_commands_then_a_config_error_names_the_limit(
    store, tmp_path, attack_env, procs, runner_image
):
    limit = get_settings().limits.max_commands
    builds = ", ".join(f'"echo build-{i}"' for i in range(limit + 5))
    toml = f'[commands]\ntest = "echo tests-ran"\nbuild = [{builds}]\n'
    hostile = create_sample(
        tmp_path / "many",
        files=project_files(**{".devteam.toml": toml}),
        script=model_script(),
    )
    with ScriptedModelServer(parse_script(model_script())) as model:
        attack_env(model.url)
        procs.relay()
        procs.worker(threads=2)
        execution = await start(store, "evil/many", hostile.url)
        row = await wait_status(store, execution, ENDED, timeout=600)

    assert row["status"] in {"error", "paused"}, row
    async with store.transaction() as session:
        errors = (await session.execute(text(
            "SELECT classification, message FROM errors WHERE execution_id = :e"),
            {"e": execution})).all()
    assert [c for c, _ in errors] == ["config"], errors
    message = errors[0][1]
    assert f"lists {limit + 6} commands; at most {limit} are allowed" in message
    assert "DEVTEAM_LIMITS_MAX_COMMANDS" in message
    # refused before anything ran or was merged: no command's output, the remote untouched
    lines = [line for f in await frames(store, execution) if f["type"] == "execution-log"
             for line in f["payload"]["lines"]]
    assert not [line for line in lines if "build-" in line or "tests-ran" in line]
    assert ref_updates(hostile) == {"main": 1}
    assert containers_of(execution) == []
