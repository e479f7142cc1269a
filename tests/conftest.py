"""Shared fixtures: real Postgres and Redis from the local stack, a fresh database per test.

The schema is migrated once into a template database (named by a hash of the migrations,
so a changed migration rebuilds it); each test that asks for ``db_url`` gets its own copy
(``CREATE DATABASE … TEMPLATE``, a few tens of milliseconds) and it is dropped afterwards.
"""

from __future__ import annotations

import sys
from pathlib import Path

if sys.dont_write_bytecode:
    # PYTHONDONTWRITEBYTECODE asks for no __pycache__ beside the sources; without any
    # cache every run compiled the project's modules and rewrote the asserts of every
    # test module again (about 4 s of the unit tier's 28). The cache goes to the
    # project's own state directory instead (ignored by git), before anything of the
    # project is imported.
    sys.dont_write_bytecode = False
    sys.pycache_prefix = str(Path(__file__).resolve().parents[1] / ".devteam" / "pycache")

import asyncio
import concurrent.futures
import contextlib
import itertools
import os
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator

import asyncpg
import pytest
import redis

from runner.settings import PROJECT_ROOT, Settings, load_settings, reset_settings_cache
from tests.support import databases
from tests.support.locks import file_lock

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
    "template_db", "_db_copies", "db_url", "redis_url",
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

SERIAL = {
    "chaos/test_faults.py": "restarts Postgres, Redis and the Docker daemon",
    "integration/stream/test_replay_properties.py"
    "::test_a_postgres_restart_mid_stream_loses_and_repeats_nothing": "restarts Postgres",
}
"""Tests (a module, or one test by its node id under ``tests/``) that break the shared
services every other test stands on. They get the ``serial`` marker; ``make test`` runs
them after the parallel phase, in a ``pytest -m serial`` without workers."""

ONE_AT_A_TIME = {
    "integration/client/test_typescript_client.py": "npm ci into the package's node_modules",
    "integration/sandbox/test_sandbox_setup.py": "removes every setup-test-* cache volume",
    "integration/sandbox/test_sandbox_toolchain.py": "removes every toolchain-test-* volume",
    "e2e/test_run_command.py": "shares .devteam/runs/local and removes it when empty",
}
"""Modules whose tests share something outside their own test (named here): under
pytest-xdist a test of one of them holds a lock of its module (setup to teardown), so no two
of its tests run at once on different workers. (xdist 3.8's ``xdist_group`` does nothing
under pytest 9.2: it rewrites ``item._nodeid``, which pytest no longer reads.)"""

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
            relative = item.path.relative_to(tests_dir)
        except ValueError:
            relative = Path()
        folder = relative.parts[0] if relative.parts else ""
        if folder in TIER_BY_FOLDER:
            item.add_marker(TIER_BY_FOLDER[folder])
        module = relative.as_posix()
        test_id = f"{module}::{item.name}"
        if module in SERIAL or test_id in SERIAL:
            item.add_marker("serial")
        fixtures = set(getattr(item, "fixturenames", ()))
        if "docker_client" in fixtures and item.get_closest_marker("docker") is None:
            item.add_marker("docker")
        marked = {mark.name for mark in item.iter_markers()}
        if not fixtures & SERVICE_FIXTURES and not marked & SERVICE_MARKERS:
            item.add_marker("unit")
    items.sort(key=_start_rank)


def _start_rank(item: pytest.Item) -> int:
    """Long tests first, the unit tier last (a stable sort: modules stay together within a
    rank): pytest-xdist hands out tests in this order, so a test of minutes started late
    no longer runs alone at the end while the other workers idle, and the unit tier's
    thousand short tests fill the gaps as workers free up."""
    marked = {mark.name for mark in item.iter_markers()}
    if marked & {"e2e", "slow", "chaos"}:
        return 0
    if "docker" in marked:
        return 1
    return 3 if "unit" in marked else 2


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A ``serial`` test under pytest-xdist fails instead of breaking the tests beside it."""
    if item.get_closest_marker("serial") is not None and _xdist_workers() > 1:
        pytest.fail("this test restarts services other tests use: run it without -n, as "
                    "make test does (pytest -m serial)", pytrace=False)


@pytest.fixture(autouse=True)
def _one_at_a_time(request: pytest.FixtureRequest) -> Iterator[None]:
    """Under pytest-xdist, a test of an ``ONE_AT_A_TIME`` module holds its module's lock."""
    try:
        module = request.node.path.relative_to(Path(__file__).parent).as_posix()
    except ValueError:
        module = ""
    if module not in ONE_AT_A_TIME or _xdist_workers() <= 1:
        yield
        return
    with file_lock("module-" + module.replace("/", "-")):
        yield


def _xdist_workers() -> int:
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return 1
    return int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)


@pytest.fixture(autouse=True)
def _unit_tests_open_no_sockets(request: pytest.FixtureRequest,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A test in the ``unit`` tier that connects or binds a socket fails at once, so the
    tier stays what its marker says (a test that needs one says so: a service fixture
    or ``@pytest.mark.sockets``). Socket pairs (the event loop's wake-up) still work, and
    so does the fixtures' own thread that copies and drops databases behind the tests
    (``_Copies``): it is not the test's doing."""
    if request.node.get_closest_marker("unit") is None:
        return

    def refusing(name: str) -> Callable[..., object]:
        real = getattr(socket.socket, name)

        def refuse(sock: socket.socket, address: object, *args: object) -> object:
            if threading.current_thread().name.startswith(_Copies.THREADS):
                return real(sock, address, *args)
            raise RuntimeError(
                f"a unit-tier test opened a socket ({address!r}); use a service fixture or "
                "mark the test @pytest.mark.sockets"
            )

        return refuse

    for name in ("connect", "connect_ex", "bind"):
        monkeypatch.setattr(socket.socket, name, refusing(name))


def _base_settings() -> Settings:
    return load_settings()


@pytest.fixture(scope="session")
def template_db() -> str:
    """Name of a migrated template database, built once per migration set."""
    return asyncio.run(databases.ensure_template(_base_settings().database.url, drop_stale=True))


class _Copies:
    """Copies of the template made one test ahead and dropped behind, in a thread of their
    own: a ``CREATE DATABASE … TEMPLATE`` and a ``DROP DATABASE`` each take from a fraction
    of a second to over a second on a busy machine, and need not hold up a test.

    A copy is only ever handed to one test, and each is dropped once its test (and every
    process the test started) is done; the session waits for every drop at its end."""

    THREADS = "devteam-test-db-copies"
    """Name prefix of its threads."""

    def __init__(self, url: str, template: str) -> None:
        self.url, self.template = url, template
        self.pool = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix=self.THREADS)
        self.ahead: concurrent.futures.Future[str] | None = None
        self.drops: list[concurrent.futures.Future[None]] = []

    def _create(self) -> str:
        return asyncio.run(databases.create_copy(self.url, self.template, "t"))

    def _drop(self, url: str) -> None:
        # Postgres may be restarting (a serial test, a bench): wait for it as long as a
        # restart may take (pg_ctl -w waits up to 60 s)
        for attempt in range(20):
            try:
                asyncio.run(databases.drop(url))
                return
            except (OSError, asyncpg.PostgresError):
                if attempt == 19:
                    raise
                time.sleep(3)

    def take(self) -> str:
        """A fresh copy (the one made ahead, if any); the next one is started."""
        ahead, self.ahead = self.ahead, None
        try:
            url = ahead.result() if ahead is not None else self._create()
        except (OSError, asyncpg.PostgresError):  # made while Postgres restarted: again
            url = self._create()
        self.ahead = self.pool.submit(self._create)
        return url

    def drop(self, url: str) -> None:
        self.drops.append(self.pool.submit(self._drop, url))

    def close(self) -> None:
        if self.ahead is not None:
            with contextlib.suppress(Exception):  # a failed spare copy is nobody's problem
                self.drop(self.ahead.result())
        self.pool.shutdown(wait=True)
        for done in self.drops:
            done.result()  # a failed drop fails the session's last test, not silently


@pytest.fixture(scope="session")
def _db_copies(template_db: str) -> Iterator[_Copies]:
    copies = _Copies(_base_settings().database.url, template_db)
    yield copies
    copies.close()


@pytest.fixture
def db_url(_db_copies: _Copies) -> Iterator[str]:
    """A fresh, migrated database for this test; dropped afterwards."""
    url = _db_copies.take()
    try:
        yield url
    finally:
        _db_copies.drop(url)


def _redis_dbs() -> range:
    """The Redis databases this test process may flush: 1..15, or under pytest-xdist a
    slice of them of its own per worker (``gw0``, ``gw1``…), so one worker's flush never
    empties a database another worker's test is using."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER", ""), _xdist_workers()
    if not worker.startswith("gw") or count <= 1:
        return range(1, 16)
    if count > 15:
        raise RuntimeError("at most 15 xdist workers: each needs a Redis database of its own")
    index, width = int(worker[2:]), 15 // count
    return range(1 + index * width, 1 + (index + 1) * width)


_redis_db_counter = itertools.cycle(_redis_dbs())


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A flushed Redis database (1..15, round robin; a slice of them per xdist worker)."""
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
