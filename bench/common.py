"""What the benchmarks share: a throwaway stack, service processes, statistics, output.

- ``throwaway_database()``: a fresh database copied from the migrated template (the same
  template the tests use, built here when missing), dropped afterwards;
- ``redis_database(n)``: one Redis database, refused when something else uses it, flushed
  before and after;
- ``Stack``: both of the above plus a private workspace root and the process environment
  pointing every ``DEVTEAM_*`` consumer (this process too) at them;
- ``Processes``: real ``devteam serve|relay|worker`` subprocesses, each with its own log,
  stopped (process group, SIGTERM then SIGKILL) whatever happens;
- ``percentile``/``stats``, ``print_table``, ``emit_json``;
- ``interrupts_raise()``: SIGTERM and SIGHUP become KeyboardInterrupt, so every cleanup
  (``finally``/``with``) runs on Ctrl-C or a kill.

Benchmarks never import from ``tests/``; the ideas of tests/support/procs.py are repeated
here on purpose.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import redis
from alembic import command
from alembic.config import Config
from rich.console import Console
from rich.table import Table

from runner.sandbox import DockerSandbox
from runner.settings import get_settings, load_settings, reset_settings_cache

ROOT = Path(__file__).resolve().parents[1]
DEVTEAM = ROOT / ".venv" / "bin" / "devteam"
CONSOLE = Console(width=130, highlight=False, soft_wrap=False)
ERR = Console(stderr=True, highlight=False)


def note(message: str) -> None:
    """Progress for the person watching (stderr, so stdout stays table + JSON)."""
    ERR.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {message}")


# ---------------------------------------------------------------------------- statistics
def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (as bench/sandbox.py); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def stats(values: Sequence[float]) -> dict[str, float]:
    """n, p50, p95, p99, min, max of ``values``."""
    if not values:
        nan = float("nan")
        return {"n": 0, "p50": nan, "p95": nan, "p99": nan, "min": nan, "max": nan}
    return {
        "n": len(values),
        "p50": statistics.median(values),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "min": min(values),
        "max": max(values),
    }


def rnd(value: float, digits: int = 2) -> float | None:
    """Rounded for JSON; NaN becomes null."""
    return None if value != value else round(value, digits)  # noqa: PLR0124 - NaN check


# ---------------------------------------------------------------------------- output
def print_table(
    title: str,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    footnotes: Sequence[str] = (),
) -> None:
    """A rich table on stdout; numbers right-aligned; footnotes under it."""
    table = Table(title=title, title_justify="left", show_lines=False)
    for i, name in enumerate(columns):
        table.add_column(name, justify="left" if i == 0 else "right", overflow="fold")
    for row in rows:
        table.add_row(*(_cell(v) for v in row))
    CONSOLE.print(table)
    for line in footnotes:
        CONSOLE.print(f"  {line}", soft_wrap=True)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if value != value:  # noqa: PLR0124 - NaN
            return "-"
        return f"{value:,.2f}" if abs(value) < 1e6 else f"{value:,.0f}"
    return str(value)


def load_average() -> float:
    """The 1-minute load average (the machine is shared: read results with it)."""
    return round(os.getloadavg()[0], 2)


def emit_json(result: dict[str, Any]) -> None:
    """The last line of stdout: one JSON object for machines."""
    sys.stdout.flush()
    print(json.dumps(result, sort_keys=False), flush=True)


# ---------------------------------------------------------------------------- signals
@contextlib.contextmanager
def interrupts_raise() -> Iterator[None]:
    """Turn SIGINT/SIGTERM/SIGHUP into KeyboardInterrupt for the block (cleanup runs)."""

    def handler(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    # A shell starts background jobs with SIGINT ignored; Ctrl-C must still clean up.
    previous[signal.SIGINT] = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


# ---------------------------------------------------------------------------- databases
def _admin_dsn(url: str, database: str = "postgres") -> str:
    head = url.replace("postgresql+asyncpg://", "postgresql://", 1).rpartition("/")[0]
    return f"{head}/{database}"


def _url_for(url: str, database: str) -> str:
    return f"{url.rpartition('/')[0]}/{database}"


def _migrations_hash() -> str:
    """Same hash as tests/conftest.py, so both share one template database."""
    h = hashlib.sha256()
    for path in sorted((ROOT / "db").rglob("*.py")):
        h.update(path.read_bytes())
    h.update((ROOT / "src" / "pipeline" / "models.py").read_bytes())
    return h.hexdigest()[:10]


def _migrate(url: str) -> None:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.attributes["url"] = url
    command.upgrade(cfg, "head")


async def _admin(base_url: str, *sql: str) -> None:
    conn = await asyncpg.connect(_admin_dsn(base_url))
    try:
        for statement in sql:
            await conn.execute(statement)
    finally:
        await conn.close()


def ensure_template(base_url: str) -> str:
    """Name of the migrated template database (built once per migration set)."""
    name = f"devteam_tpl_{_migrations_hash()}"

    async def exists() -> bool:
        conn = await asyncpg.connect(_admin_dsn(base_url))
        try:
            return bool(await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))
        finally:
            await conn.close()

    if asyncio.run(exists()):
        return name
    build = f"{name}_build_{uuid.uuid4().hex[:6]}"
    asyncio.run(_admin(base_url, f'CREATE DATABASE "{build}"'))
    try:
        _migrate(_url_for(base_url, build))
        if not asyncio.run(exists()):
            asyncio.run(_admin(base_url, f'ALTER DATABASE "{build}" RENAME TO "{name}"'))
    finally:
        asyncio.run(_admin(base_url, f'DROP DATABASE IF EXISTS "{build}" WITH (FORCE)'))
    return name


@contextlib.contextmanager
def throwaway_database(prefix: str = "bench") -> Iterator[str]:
    """A fresh migrated database (SQLAlchemy URL); dropped afterwards, even on Ctrl-C."""
    base = load_settings().database.url
    template = ensure_template(base)
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(base, f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    try:
        yield _url_for(base, name)
    finally:
        with _uninterrupted():
            asyncio.run(_admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextlib.contextmanager
def redis_database(db: int) -> Iterator[str]:
    """Redis database ``db`` of the local stack, flushed before and after.

    Refused when it holds keys: another engineer's run (tests use 1..15 round robin, the
    demo uses 0) would lose its queue to our flush.
    """
    url = f"{load_settings().redis.url.rsplit('/', 1)[0]}/{db}"
    client = redis.Redis.from_url(url)
    try:
        if client.dbsize():
            raise SystemExit(f"Redis database {db} is in use ({client.dbsize()} keys); "
                             "pick another with --redis-db")
        yield url
    finally:
        with _uninterrupted():
            client.flushdb()
            client.close()


@contextlib.contextmanager
def _uninterrupted() -> Iterator[None]:
    """Ignore SIGINT while a cleanup step runs (a second Ctrl-C must not skip it)."""
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


# ---------------------------------------------------------------------------- processes
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    port: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM the process group, SIGKILL it after ``timeout``."""
        if self.alive():
            self.signal_group(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal_group(signal.SIGKILL)
                self.popen.wait(5)
        self.signal_group(signal.SIGKILL)  # stragglers of the group (tool subprocesses)

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def json_lines(self) -> Iterator[dict[str, Any]]:
        """The structured log lines (one JSON object each) this process wrote."""
        for line in self.output().splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    yield json.loads(line)


@dataclass
class Processes:
    """Started processes; ``close()`` stops them all, newest first."""

    env: dict[str, str]
    logdir: Path
    procs: list[Proc] = field(default_factory=list)

    def start(self, name: str, argv: Sequence[str], *, port: int | None = None,
              extra_env: dict[str, str] | None = None) -> Proc:
        self.logdir.mkdir(parents=True, exist_ok=True)
        log = self.logdir / f"{name}-{len(self.procs)}.log"
        with log.open("wb") as fh:
            popen = subprocess.Popen(
                list(argv), env={**self.env, **(extra_env or {})}, stdout=fh,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT,
                start_new_session=True,
            )
        proc = Proc(name=name, popen=popen, log=log, port=port)
        self.procs.append(proc)
        return proc

    def devteam(self, name: str, *args: str, port: int | None = None,
                extra_env: dict[str, str] | None = None) -> Proc:
        return self.start(name, [str(DEVTEAM), *args], port=port, extra_env=extra_env)

    def gateway(self, **extra_env: str) -> Proc:
        port = free_port()
        proc = self.devteam("gateway", "serve", "--port", str(port), port=port,
                            extra_env=extra_env)
        wait_http(proc, "/health", timeout=60)
        return proc

    def relay(self, **extra_env: str) -> Proc:
        return self.devteam("relay", "relay", extra_env=extra_env)

    def worker(self, threads: int = 4, **extra_env: str) -> Proc:
        return self.devteam("worker", "worker", "--threads", str(threads), extra_env=extra_env)

    def named(self, prefix: str) -> list[Proc]:
        return [p for p in self.procs if p.name.startswith(prefix)]

    def check_alive(self) -> None:
        for proc in self.procs:
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited ({proc.popen.returncode}):\n"
                                   f"{proc.output()[-3000:]}")

    def close(self) -> None:
        with _uninterrupted():
            for proc in reversed(self.procs):
                proc.stop()


def wait_http(proc: Proc, path: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited:\n{proc.output()[-3000:]}")
        try:
            httpx.get(proc.url + path, timeout=2)
            return
        except httpx.HTTPError as exc:
            last = exc
            time.sleep(0.1)
    raise RuntimeError(f"{proc.name} did not answer: {last}\n{proc.output()[-3000:]}")


def wait_for_log(proc: Proc, message: str, timeout: float = 30) -> None:
    """Wait until ``proc`` logged a line whose ``msg`` is ``message``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(line.get("msg") == message for line in proc.json_lines()):
            return
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited:\n{proc.output()[-3000:]}")
        time.sleep(0.1)
    raise RuntimeError(f"{proc.name} never logged {message}:\n{proc.output()[-3000:]}")


# ---------------------------------------------------------------------------- the stack
@dataclass
class Stack:
    """A throwaway database, a Redis database, a workspace root, and their environment."""

    db_url: str
    redis_url: str
    root: Path
    env: dict[str, str]
    procs: Processes

    @property
    def db_name(self) -> str:
        return self.db_url.rpartition("/")[2]

    def remove_containers(self, execution_ids: Iterable[str]) -> int:
        """Remove task containers of these executions (FINALIZE normally does it)."""
        ids = list(execution_ids)
        if not ids:
            return 0
        sandbox = DockerSandbox(settings=get_settings())
        try:
            return sum(sandbox.remove_execution(i) for i in ids)
        finally:
            sandbox.close()


@contextlib.contextmanager
def stack(*, redis_db: int, prefix: str = "bench", extra: dict[str, str] | None = None
          ) -> Iterator[Stack]:
    """Set up a Stack and point this process's settings at it; tear everything down after.

    Teardown order: processes, the containers of every execution in the database, the
    database, the Redis database, the workspace root.
    """
    saved = dict(os.environ)
    tmp = Path(tempfile.mkdtemp(prefix=f"devteam-{prefix}-"))
    try:
        with throwaway_database(prefix) as db_url, redis_database(redis_db) as redis_url:
            values = {
                "DEVTEAM_DATABASE_URL": db_url,
                "DEVTEAM_REDIS_URL": redis_url,
                "DEVTEAM_WORKSPACE_ROOT": str(tmp / "workspaces"),
                "DEVTEAM_WORKSPACE_ALLOWED_FILE_ROOTS": str(tmp),
                "DEVTEAM_LOG_FORMAT": "json",
                **(extra or {}),
            }
            os.environ.update(values)
            reset_settings_cache()
            procs = Processes(env={**os.environ, **values}, logdir=tmp / "logs")
            st = Stack(db_url=db_url, redis_url=redis_url, root=tmp, env=procs.env, procs=procs)
            try:
                yield st
            finally:
                procs.close()
                with _uninterrupted(), contextlib.suppress(Exception):
                    ids = asyncio.run(_execution_ids(db_url))
                    removed = st.remove_containers(ids)
                    if removed:
                        note(f"removed {removed} leftover container(s)")
    finally:
        os.environ.clear()
        os.environ.update(saved)
        reset_settings_cache()
        if os.environ.get("DEVTEAM_BENCH_KEEP"):
            note(f"kept {tmp} (DEVTEAM_BENCH_KEEP)")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


async def _execution_ids(db_url: str) -> list[str]:
    conn = await asyncpg.connect(db_url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        return [str(r[0]) for r in await conn.fetch("SELECT id FROM executions")]
    finally:
        await conn.close()


def all_done(task_list: str) -> str:
    """``task_list`` (hierarchical format) with every task marked ``[x]``."""
    return mark_done(task_list, None)


def mark_done(task_list: str, ids: set[str] | None) -> str:
    """Mark the listed task ids (None: all) done with ``[x]`` after the dash."""
    out = []
    for line in task_list.splitlines(keepends=True):
        stripped = line.lstrip()
        marked = line
        if stripped.startswith("- ") and not stripped.startswith("- ["):
            task_id = stripped[2:].split(" ", 1)[0]
            if ids is None or task_id in ids:
                marked = f"{line[: len(line) - len(stripped)]}- [x] {stripped[2:]}"
        out.append(marked)
    return "".join(out)
