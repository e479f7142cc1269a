"""A container waiting for a sandbox slot shows in the execution's log and in its status
(``slotWait``), and the wait is cleared when the slot is granted.

The complaint: a customer at its limit had its PREP wait ten minutes with nothing in the
log and nothing in the status, then retry.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import text
from tests.integration.gateway.conftest import PROJECT, add_project, rows, start

from pipeline.logsink import LogSink
from pipeline.slots import PgSlotLimiter
from runner.ports import SlotWait
from runner.redact import default_redactor
from runner.settings import get_settings, reset_settings_cache

AUTO = "/api/devteam/automation"


@pytest.fixture(autouse=True)
def one_slot_per_customer(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The gateway (made after this) and the limiter share the limit of one."""
    monkeypatch.setenv("DEVTEAM_SANDBOX_MAX_CONTAINERS_PER_CUSTOMER", "1")
    reset_settings_cache()


async def _until(check: Callable[[], Awaitable[Any]], what: str) -> Any:
    """``check()``'s first truthy answer (a bound on how long only so a hang fails)."""
    deadline = time.monotonic() + 60
    while not (found := await check()):
        assert time.monotonic() < deadline, f"never: {what}"
        await asyncio.sleep(0.05)
    return found


async def _log_lines(store, execution) -> list[str]:
    frames = await rows(store, "SELECT payload FROM notifications WHERE execution_id = :e "
                               "AND type = 'execution-log' ORDER BY seq", e=execution)
    return [line for f in frames for line in f["payload"]["lines"]]


async def test_a_wait_for_a_slot_is_in_the_log_and_the_status_until_it_is_granted(
    client, alice, project, sample, store
) -> None:
    await add_project(store, "acme/api", sample.url)
    web, api = await start(store), await start(store, "acme/api")
    settings = get_settings()
    limiter = PgSlotLimiter(settings, store, asyncio.get_running_loop())
    await asyncio.to_thread(limiter.acquire, "acme", "dt-held", 5, execution_id=str(web))
    pipeline = settings.pipeline
    sink = LogSink(store, default_redactor(), execution_id=web, stage="PREP", task_id="1.2",
                   flush_ms=pipeline.log_flush_ms, batch_lines=pipeline.log_batch_lines)
    sink.start()
    heard: list[SlotWait] = []

    def tell(wait: SlotWait) -> None:  # what DockerSandbox.session does with on_wait
        heard.append(wait)
        sink.line(wait.describe(), "warning")

    waiter = asyncio.create_task(asyncio.to_thread(
        limiter.acquire, "acme", "dt-web-1.2", 60, execution_id=str(web), on_wait=tell))
    await _until(lambda: asyncio.sleep(0, heard), "the first report")
    other = asyncio.create_task(asyncio.to_thread(
        limiter.acquire, "acme", "dt-api-1.1", 60, execution_id=str(api)))

    async def slot_wait(project_id: str) -> dict[str, Any] | None:
        answer = await client.get(f"{AUTO}/status/{project_id}", headers=alice)
        assert answer.status_code == 200, answer.text
        wait: dict[str, Any] | None = answer.json().get("slotWait")
        return wait

    second = await _until(lambda: slot_wait("acme/api"), "the second waiter in the status")
    first = await slot_wait(PROJECT)
    assert first is not None
    assert {k: first[k] for k in ("container", "position", "waiting", "customerRunning",
                                  "customerLimit", "running", "limit")} == {
        "container": "dt-web-1.2", "position": 1, "waiting": 2, "customerRunning": 1,
        "customerLimit": 1, "running": 1, "limit": settings.sandbox.max_containers}
    assert (second["container"], second["position"]) == ("dt-api-1.1", 2)
    assert first["since"] <= second["since"]
    await sink.flush()
    logged = await _log_lines(store, web)
    assert logged[0].startswith("waiting for a sandbox slot (")
    assert "customer acme holds 1 of its 1; 1 waiting, this container 1st of acme's" in logged[0]

    await asyncio.to_thread(limiter.release, "dt-held")
    await waiter

    assert await slot_wait(PROJECT) is None  # cleared when granted
    assert (await slot_wait("acme/api"))["position"] == 1  # next in line now
    await sink.close()
    logged = await _log_lines(store, web)
    assert logged[-1].startswith("sandbox slot granted after ")
    assert sum("waiting for a sandbox slot" in line for line in logged) == len(heard) - 1
    await asyncio.to_thread(limiter.release, "dt-web-1.2")
    await other
    assert await slot_wait("acme/api") is None
    await asyncio.to_thread(limiter.release, "dt-api-1.1")
    async with store.transaction() as session:
        assert (await session.execute(text("SELECT count(*) FROM sandbox_leases"))).scalar() == 0
