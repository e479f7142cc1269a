"""Shared fixtures: real Postgres and Redis from the local stack, a fresh database per test.

The schema is migrated once into a template database (named by a hash of the migrations,
so a changed migration rebuilds it); each test that asks for ``db_url`` gets its own copy
(``CREATE DATABASE … TEMPLATE``, a few tens of milliseconds) and it is dropped afterwards.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis

from runner.settings import PROJECT_ROOT, Settings, load_settings, reset_settings_cache
from tests.support import databases

ROOT = PROJECT_ROOT
SHARED = ROOT.parent / "shared"
FIXTURES = SHARED / "fixtures"


def pytest_configure(config: pytest.Config) -> None:
    """SIGTERM and SIGHUP end the run like Ctrl-C does, so fixture teardown still stops
    the gateway, relay and worker processes a test started (they run in sessions of their
    own and would otherwise outlive a killed pytest)."""

    def interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)


SERVICE_FIXTURES = frozenset({
    # Postgres and Redis (``env`` and ``store`` stand on these)
    "template_db", "db_url", "redis_url",
    # gateway, relay and worker processes; the scripted model's HTTP server
    "procs", "model",
    # the Docker engine and what stands on it
    "docker_client", "runner_image", "sandbox",
    # a real browser against a served dashboard
    "browser_page",
})
"""Fixtures that reach a service: a test using any of them (directly or through another
fixture) is not in the ``unit`` tier."""

SERVICE_MARKERS = frozenset({"docker", "slow", "e2e", "chaos", "sockets"})
"""Markers that say a test needs more than the process it runs in."""

TIER_BY_FOLDER = {"e2e": "e2e", "chaos": "chaos"}
"""Markers every test under ``tests/<folder>/`` gets (a ``pytestmark`` in a conftest.py
marks nothing, so the folder's tier is applied here)."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test by what it depends on, not by the folder it sits in: ``e2e`` and
    ``chaos`` by folder, ``docker`` for every test using the Docker engine, and ``unit``
    for every test that needs no service (no Postgres, Redis, Docker, Aider or socket),
    so ``pytest -m unit`` runs the fast tier. The selection of a plain ``pytest`` is
    unchanged: markers are only added."""
    tests_dir = Path(__file__).parent
    for item in items:
        try:
            folder = item.path.relative_to(tests_dir).parts[0]
        except ValueError:
            folder = ""
        if folder in TIER_BY_FOLDER:
            item.add_marker(TIER_BY_FOLDER[folder])
        fixtures = set(getattr(item, "fixturenames", ()))
        if "docker_client" in fixtures and item.get_closest_marker("docker") is None:
            item.add_marker("docker")
        marked = {mark.name for mark in item.iter_markers()}
        if not fixtures & SERVICE_FIXTURES and not marked & SERVICE_MARKERS:
            item.add_marker("unit")


@pytest.fixture(autouse=True)
def _unit_tests_open_no_sockets(request: pytest.FixtureRequest,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A test in the ``unit`` tier that connects or binds a socket fails at once, so the
    tier stays what its marker says (a test that needs one says so: a service fixture
    or ``@pytest.mark.sockets``). Socket pairs (the event loop's wake-up) still work."""
    if request.node.get_closest_marker("unit") is None:
        return

    def refuse(sock: socket.socket, address: object, *_args: object) -> None:
        raise RuntimeError(
            f"a unit-tier test opened a socket ({address!r}); use a service fixture or "
            "mark the test @pytest.mark.sockets"
        )

    for name in ("connect", "connect_ex", "bind"):
        monkeypatch.setattr(socket.socket, name, refuse)


def _base_settings() -> Settings:
    return load_settings()


@pytest.fixture(scope="session")
def template_db() -> str:
    """Name of a migrated template database, built once per migration set."""
    return asyncio.run(databases.ensure_template(_base_settings().database.url, drop_stale=True))


@pytest.fixture
def db_url(template_db: str) -> Iterator[str]:
    """A fresh, migrated database for this test; dropped afterwards."""
    url = asyncio.run(databases.create_copy(_base_settings().database.url, template_db, "t"))
    try:
        yield url
    finally:
        asyncio.run(databases.drop(url))


_redis_db_counter = iter(range(1, 16))


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A flushed Redis database (1..15, round robin) for this test."""
    global _redis_db_counter
    try:
        n = next(_redis_db_counter)
    except StopIteration:
        _redis_db_counter = iter(range(1, 16))
        n = next(_redis_db_counter)
    base = _base_settings().redis.url.rsplit("/", 1)[0]
    url = f"{base}/{n}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    yield url
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()


@pytest.fixture
def env(db_url: str, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Process environment pointing every DEVTEAM_* consumer at this test's database,
    Redis and a private workspace root; settings are re-read with it."""
    values = {
        "DEVTEAM_DATABASE_URL": db_url,
        "DEVTEAM_REDIS_URL": redis_url,
        # keys of this test only, even when several test sessions share one Redis
        "DEVTEAM_REDIS_NAMESPACE": f"devteam-{db_url.rsplit('/', 1)[1]}",
        "DEVTEAM_WORKSPACE_ROOT": str(tmp_path / "workspaces"),
        "DEVTEAM_WORKSPACE_ALLOWED_FILE_ROOTS": str(tmp_path),
        "DEVTEAM_LOG_FORMAT": "json",
        # no metrics ports unless a test asks for one (tests run many relays and workers)
        "DEVTEAM_METRICS_RELAY_PORT": "0",
        "DEVTEAM_METRICS_WORKER_PORT": "0",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    reset_settings_cache()
    yield {**os.environ, **values}
    reset_settings_cache()


@pytest.fixture
async def store(env: dict[str, str]) -> AsyncIterator[object]:
    from pipeline.db import Store
    from runner.settings import get_settings

    s = Store.from_settings(get_settings(), pool_size=5)
    yield s
    await s.close()


@pytest.fixture
def procs(env: dict[str, str], tmp_path: Path) -> Iterator[object]:
    """Real service processes (gateway, relay, worker) on this test's database."""
    from tests.support.procs import processes

    with processes(env, tmp_path / "logs") as registry:
        yield registry


@pytest.fixture
def token_for(env: dict[str, str]):
    """Mint a token: ``token_for("alice", ["acme/*"], role="developer")``."""
    from gateway.auth import mint
    from runner.settings import get_settings

    def make(sub: str, projects: list[str], role: str = "developer", ttl: int = 3600) -> str:
        return mint(get_settings(), sub=sub, projects=projects, role=role, ttl=ttl)

    return make
