"""End-to-end fixtures: the sample project, the scripted model, relay and workers."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from tests.support.settings import use_settings

from devtools.demo.sample import Sample, create_sample
from devtools.scripted_model import ScriptedModelServer, load_script
from pipeline import commands
from pipeline.audit import Principal
from pipeline.db import Store


@pytest.fixture
def sample(tmp_path: Path) -> Sample:
    return create_sample(tmp_path / "sample")


@pytest.fixture
def model(sample: Sample) -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer(load_script(sample.script)) as server:
        yield server


@pytest.fixture
def pipeline_env(env: dict[str, str], model: ScriptedModelServer, monkeypatch) -> dict[str, str]:
    values = {
        "DEVTEAM_MODEL_API_BASE": model.url,
        "DEVTEAM_PIPELINE_STAGE_LEASE_SECONDS": "5",
        "DEVTEAM_PIPELINE_DISPATCH_GRACE_SECONDS": "10",
        "DEVTEAM_PIPELINE_RELAY_POLL_SECONDS": "0.5",
    }
    return use_settings(env, monkeypatch, values)


async def start(store: Store, project_id: str, url: str, **kwargs: Any) -> uuid.UUID:
    result = await commands.start_execution(
        store, principal=Principal(user_id="tester", correlation_id=uuid.uuid4().hex),
        project_id=project_id, repository_url=url, **kwargs,
    )
    return result.execution_id


async def wait_status(store: Store, execution_id: uuid.UUID, statuses: set[str],
                      timeout: float = 300) -> dict[str, Any]:
    """Poll the execution row until its status is one of ``statuses``."""
    deadline = time.monotonic() + timeout
    row: dict[str, Any] = {}
    while time.monotonic() < deadline:
        async with store.transaction() as session:
            row = dict((await session.execute(
                text("SELECT * FROM executions WHERE id = :id"), {"id": execution_id}
            )).mappings().one())
        if row["status"] in statuses:
            return row
        await asyncio.sleep(0.5)
    raise TimeoutError(f"execution still {row.get('status')} after {timeout}s: {row}")
