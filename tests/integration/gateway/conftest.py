"""Gateway fixtures: the app in-process (Litestar's AsyncTestClient over ASGI) on this
test's database, Redis and workspace; the sample project as a bare remote; tokens.

Tests where sockets matter (concurrency, schemathesis, the benchmark) use a real
``devteam serve`` process through the ``procs`` fixture instead.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import text

from devtools.demo.sample import Sample, create_sample
from gateway.app import create_app
from pipeline import commands
from pipeline.audit import Principal
from pipeline.db import Store
from runner.settings import get_settings

PROJECT = "acme/web"


@pytest.fixture
def sample(tmp_path: Path) -> Sample:
    return create_sample(tmp_path / "sample")


@pytest.fixture
async def client(env: dict[str, str]) -> AsyncIterator[AsyncTestClient[Any]]:
    app = create_app(get_settings())
    async with AsyncTestClient(app, base_url="http://gateway.local") as c:
        yield c


@pytest.fixture
def alice(token_for: Callable[..., str]) -> dict[str, str]:
    """A developer of customer ``acme``."""
    return bearer(token_for("alice", ["acme/*"]))


@pytest.fixture
async def project(store: Store, sample: Sample) -> str:
    """``acme/web``, registered with the sample repository."""
    await add_project(store, PROJECT, sample.url)
    return PROJECT


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def add_project(store: Store, project_id: str, url: str) -> None:
    """Register ``project_id`` with its repository (as initialize does)."""
    async with store.transaction() as session:
        await session.execute(
            text("INSERT INTO projects (project_id, customer_id, repository_url) "
                 "VALUES (:p, :c, :u)"),
            {"p": project_id, "c": project_id.split("/", maxsplit=1)[0], "u": url},
        )


async def rows(store: Store, sql: str, **params: Any) -> list[dict[str, Any]]:
    async with store.transaction() as session:
        result = await session.execute(text(sql), params)
        return [dict(r) for r in result.mappings().all()]


async def audit(store: Store, action: str) -> list[dict[str, Any]]:
    """The audit rows of ``action``, oldest first."""
    return await rows(store, "SELECT * FROM audit_log WHERE action = :a ORDER BY id", a=action)


async def start(store: Store, project_id: str = PROJECT, user: str = "alice") -> uuid.UUID:
    """A started execution of an already registered project (its URL is left alone)."""
    result = await commands.start_execution(
        store, principal=Principal(user_id=user, correlation_id=uuid.uuid4().hex),
        project_id=project_id,
    )
    return result.execution_id


async def set_status(store: Store, project_id: str, status: str,
                     pause_reason: str | None = None) -> None:
    """Put the project's latest execution in ``status`` (as the pipeline would have)."""
    async with store.transaction() as session:
        await session.execute(
            text("UPDATE executions SET status = :s, pause_reason = :r WHERE id = "
                 "(SELECT id FROM executions WHERE project_id = :p "
                 "ORDER BY started_at DESC LIMIT 1)"),
            {"s": status, "r": pause_reason, "p": project_id},
        )
