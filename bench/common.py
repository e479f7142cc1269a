"""What the benchmarks share: a throwaway stack, service processes, statistics, output.

- ``throwaway_database()``: a fresh database copied from the migrated template (the same
  template the tests use, built here when missing), dropped afterwards;
- ``redis_database(n)``: one Redis database, refused when something else uses it, flushed
  before and after;
- ``Stack``: both of the above plus a private workspace root and the process environment
  pointing every ``DEVTEAM_*`` consumer (this process too) at them;
- ``Processes``: real ``devteam serve|relay|worker`` subprocesses, each with its own log,
  stopped (process group, SIGTERM then SIGKILL) whatever happens (the tests' harness,
  tests/support/procs.py, as is the template database in tests/support/databases.py);
- ``percentile``/``stats``, ``print_table``, ``emit_json`` (with ``host_ms()``, the host's
  speed in the same run);
- ``interrupts_raise()``: SIGTERM and SIGHUP become KeyboardInterrupt, so every cleanup
  (``finally``/``with``) runs on Ctrl-C or a kill.

"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import redis
from rich.console import Console
from rich.table import Table

from runner.sandbox import DockerSandbox
from runner.settings import get_settings, load_settings, reset_settings_cache

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # for the harness shared with the tests

from tests.support import databases  # noqa: E402
from tests.support.procs import Proc, Processes, uninterrupted, wait_for_log  # noqa: E402

# What the benchmarks take from here rather than from tests/support themselves
__all__ = ["Proc", "Processes", "wait_for_log"]

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


_HOST_DOC = {"tasks": [{"id": f"{i // 100}.{i % 100}", "title": f"Task number {i}",
                        "done": i % 3 == 0, "dependencies": [f"{i - 1}"] if i else []}
                       for i in range(2000)]}
_HOST_TEXT = "\n".join(f"- [ ] {i}.1 Task {i} (after {i - 1}.1) token=t{i * 7919 % 10007}"
                       for i in range(5000))
_HOST_PATTERN = re.compile(r"token=(\w+)")


def _host_work() -> int:
    blob = json.dumps(_HOST_DOC)
    back = json.loads(blob)
    found = sorted(_HOST_PATTERN.findall(_HOST_TEXT), reverse=True)
    index = {task["id"]: task for task in back["tasks"]}
    return len(blob) + len(found) + len(index)


def host_ms(repeats: int = 9) -> float:
    """Milliseconds this host takes for a fixed piece of CPU-bound Python (JSON, a regular
    expression, sorting, a dict; median of ``repeats``, no garbage collection meanwhile).

    Nothing in the project changes it, so it measures the host alone: the machine is
    shared, and the same unchanged code has run 1.5 times slower on one day than on
    another (``bench/runner.py``'s parse + select: 33.6 ms, then 52 ms). A run whose
    ``host_ms`` is that much higher is that much slower in every CPU-bound figure; compare
    runs of different days by it, not by their absolute latencies."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            for _ in range(5):
                _host_work()
            times.append((time.perf_counter() - started) * 1000)
    finally:
        if was_enabled:
            gc.enable()
    return round(statistics.median(times), 2)


def emit_json(result: dict[str, Any]) -> None:
    """The last line of stdout: one JSON object for machines, with ``host_ms`` (the host's
    speed when the run ended, see ``host_ms()``) unless the benchmark measured it itself."""
    if "host_ms" not in result:
        result = {**result, "host_ms": host_ms()}
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
@contextlib.contextmanager
def throwaway_database(prefix: str = "bench") -> Iterator[str]:
    """A fresh migrated database (SQLAlchemy URL); dropped afterwards, even on Ctrl-C."""
    base = load_settings().database.url
    url = asyncio.run(databases.create_copy(base, asyncio.run(databases.ensure_template(base)),
                                            prefix))
    try:
        yield url
    finally:
        with uninterrupted():
            asyncio.run(databases.drop(url))


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
        with uninterrupted():
            client.flushdb()
            client.close()


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
                with uninterrupted(), contextlib.suppress(Exception):
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


def gateway_variants(metrics_both: bool, compare_src: str,
                     single: str) -> dict[str, dict[str, str]]:
    """The gateways a benchmark runs, by label, with their extra environment: metrics on
    and off (``--metrics-both``), this tree and another source tree (``--compare-src``,
    its ``src`` first on ``PYTHONPATH``), else one gateway labelled ``single``."""
    if metrics_both:
        return {"metrics_on": {"DEVTEAM_METRICS_ENABLED": "true"},
                "metrics_off": {"DEVTEAM_METRICS_ENABLED": "false"}}
    if compare_src:
        other = str(Path(compare_src).resolve())
        path = os.pathsep.join(filter(None, [other, os.environ.get("PYTHONPATH")]))
        return {"this_tree": {}, "compared": {"PYTHONPATH": path}}
    return {single: {}}
