"""Soak run: a steady rate of events and connected clients for minutes; nothing may grow.

    .venv/bin/python bench/soak.py [--minutes 10] [--rate 2] [--clients 20] [--json]

Not part of CI. Starts a real gateway, relay and workers on a throwaway database, then:
- POSTs ``/events`` through the gateway at ``--rate`` events per second (open loop: a slow
  answer does not slow the schedule), each on one of ``--projects`` projects (spread over
  ``--customers`` customers) that is idle at that moment, with tokens minted by
  ``gateway.auth.mint``. Every project's repository is the sample calculator with every
  task already done, so an event runs INIT → SELECT → FINALIZE without Aider;
- keeps ``--clients`` WebSocket clients connected to ``/ws/devteam`` (all projects); each
  checks that every execution's frames arrive as seq 1..N with no gap and no duplicate;
- samples the RSS (psutil) of the gateway, the relay, each worker (with children), the
  Postgres backends serving this database, and Redis every ``--sample-seconds``.
Reports throughput, latency percentiles (POST answer; accepted → completion frame at a
client), memory over time with first-quarter vs last-quarter means, and every error.
Ctrl-C stops early and still reports. Prints tables and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
if sys.path and Path(sys.path[0] or ".").resolve() == _HERE:
    sys.path.pop(0)  # bench/pipeline.py and bench/runner.py must not shadow the packages
sys.path.append(str(_HERE))

import httpx  # noqa: E402
import psutil  # noqa: E402
import websockets  # noqa: E402
from sqlalchemy import text  # noqa: E402

from common import (  # noqa: E402
    Proc,
    Stack,
    all_done,
    emit_json,
    interrupts_raise,
    load_average,
    note,
    print_table,
    rnd,
    stack,
    stats,
    wait_for_log,
)
from devtools.demo.sample import INITIAL, TASK_LIST, create_sample  # noqa: E402
from gateway.auth import mint  # noqa: E402
from pipeline.db import Store  # noqa: E402
from runner.settings import get_settings  # noqa: E402

MB = 1024 * 1024


# ---------------------------------------------------------------------------- clients
@dataclass
class Client:
    """One WebSocket subscriber; checks per-execution order and records completions."""

    index: int
    frames: int = 0
    duplicates: int = 0
    gaps: int = 0
    resyncs: int = 0
    reconnects: int = 0
    errors: list[str] = field(default_factory=list)
    last_seq: dict[str, int] = field(default_factory=dict)
    completed_at: dict[str, float] = field(default_factory=dict)
    cursor: str | None = None

    def take(self, frame: dict[str, Any]) -> str | None:
        """Account for a frame; returns the project id of a completion frame."""
        kind = frame.get("type")
        if kind == "resync":
            self.resyncs += 1
            return None
        if frame.get("executionId") is None:
            return None
        self.frames += 1
        if frame.get("id"):
            self.cursor = str(frame["id"])
        execution, seq = str(frame["executionId"]), int(frame["seq"])
        last = self.last_seq.get(execution, 0)
        if seq <= last:
            self.duplicates += 1
        elif seq != last + 1:
            self.gaps += seq - last - 1
        self.last_seq[execution] = max(last, seq)
        if kind == "completion":
            self.completed_at.setdefault(execution, time.perf_counter())
            return str(frame.get("projectId"))
        return None


async def run_client(client: Client, url: str, stop: asyncio.Event,
                     on_completion: Any) -> None:
    """Stay connected until ``stop``; reconnect from the last cursor when dropped."""
    while not stop.is_set():
        target = url + (f"&since={client.cursor}" if client.cursor else "")
        try:
            async with websockets.connect(target, max_size=2**22, open_timeout=10) as ws:
                hello = json.loads(await ws.recv())
                if hello.get("type") != "connection-established":
                    client.errors.append(f"first frame {hello.get('type')}")
                while not stop.is_set():
                    try:
                        raw = await asyncio.wait_for(ws.recv(), timeout=1.0)
                    except TimeoutError:
                        continue
                    done = client.take(json.loads(raw))
                    if done is not None:
                        on_completion(done, client.index)
                return
        except (OSError, websockets.WebSocketException, TimeoutError) as exc:
            if stop.is_set():
                return
            client.reconnects += 1
            client.errors.append(f"{type(exc).__name__}: {str(exc)[:120]}")
            await asyncio.sleep(0.5)


# ---------------------------------------------------------------------------- memory
@dataclass
class Sampler:
    """RSS of each service process over time (MB)."""

    procs: list[Proc]
    db_name: str
    series: dict[str, list[tuple[float, float]]] = field(default_factory=lambda: defaultdict(list))
    backends: list[tuple[float, int]] = field(default_factory=list)
    load: list[tuple[float, float]] = field(default_factory=list)

    def sample(self, at: float) -> None:
        for proc in self.procs:
            self.series[proc.name + f"[{proc.pid}]"].append((at, _tree_rss(proc.pid)))
        rss, uss, count = self._pg()
        self.series["postgres backends (this db) RSS"].append((at, rss))
        self.series["postgres backends (this db) USS"].append((at, uss))
        self.backends.append((at, count))
        self.load.append((at, load_average()))
        self.series["redis-server (shared)"].append((at, self._named("redis-server")))

    def _pg(self) -> tuple[float, float, int]:
        """RSS and USS (private pages only: no shared buffers) of this database's backends."""
        rss = uss = count = 0
        for p in psutil.process_iter(["cmdline"]):
            with contextlib.suppress(psutil.Error):
                cmd = " ".join(p.info["cmdline"] or [])
                if cmd.startswith("postgres: ") and f" {self.db_name} " in f"{cmd} ":
                    full = p.memory_full_info()
                    rss, uss, count = rss + full.rss, uss + full.uss, count + 1
        return rss / MB, uss / MB, count

    @staticmethod
    def _named(name: str) -> float:
        total = 0
        for p in psutil.process_iter(["name"]):
            with contextlib.suppress(psutil.Error):
                if p.info["name"] == name:
                    total += p.memory_info().rss
        return total / MB


def _tree_rss(pid: int) -> float:
    try:
        root = psutil.Process(pid)
        total = root.memory_info().rss
        for child in root.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += child.memory_info().rss
        return total / MB
    except psutil.Error:
        return float("nan")


def growth(points: list[tuple[float, float]]) -> dict[str, float]:
    """First-quarter and last-quarter mean, change, and least-squares slope (MB/min)."""
    values = [v for _, v in points if v == v]  # noqa: PLR0124 - drop NaN
    if len(values) < 4:
        nan = float("nan")
        return {"first": nan, "last": nan, "delta": nan, "pct": nan, "slope": nan, "max": nan}
    q = max(1, len(values) // 4)
    first, last = sum(values[:q]) / q, sum(values[-q:]) / q
    xs = [t / 60 for t, v in points if v == v]  # noqa: PLR0124
    mx, my = sum(xs) / len(xs), sum(values) / len(values)
    den = sum((x - mx) ** 2 for x in xs) or 1.0
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, values, strict=True)) / den
    return {"first": first, "last": last, "delta": last - first,
            "pct": (last - first) / first * 100 if first else float("nan"), "slope": slope,
            "max": max(values)}


def grows(g: dict[str, float]) -> bool:
    """Flagged when the last quarter is >10 % and >16 MB above the first."""
    return g["delta"] == g["delta"] and g["delta"] > 16 and g["pct"] > 10  # noqa: PLR0124


# ---------------------------------------------------------------------------- the run
@dataclass
class Soak:
    st: Stack
    gateway: Proc
    args: argparse.Namespace
    projects: list[str]
    repo_url: str
    token: str
    accepted_at: dict[str, float] = field(default_factory=dict)
    execution_of_event: dict[str, str] = field(default_factory=dict)
    project_of_execution: dict[str, str] = field(default_factory=dict)
    busy: dict[str, float] = field(default_factory=dict)
    post_ms: list[tuple[float, float]] = field(default_factory=list)
    e2e_ms: list[tuple[float, float]] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    errors: list[str] = field(default_factory=list)
    skipped_busy: int = 0
    completions: int = 0
    scheduled: int = 0
    started: float = 0.0
    started_wall: float = 0.0

    def completion(self, project: str, client: int) -> None:
        """Client 0 saw a project's completion frame: the project may take events again."""
        if client == 0:
            self.busy.pop(project, None)
            self.completions += 1

    def idle_project(self, turn: int) -> str | None:
        n = len(self.projects)
        for k in range(n):
            project = self.projects[(turn + k) % n]
            if project not in self.busy:
                return project
        return None

    async def post(self, http: httpx.AsyncClient, project: str) -> None:
        body = {"workflow_type": "DEVTEAM_AUTOMATION",
                "data": {"projectId": project, "repositoryUrl": self.repo_url}}
        self.busy[project] = time.perf_counter()
        t0 = time.perf_counter()
        try:
            response = await http.post("/events", json=body,
                                       headers={"Idempotency-Key": uuid.uuid4().hex})
        except httpx.HTTPError as exc:
            self.busy.pop(project, None)
            self.errors.append(f"POST /events: {type(exc).__name__}: {str(exc)[:120]}")
            return
        elapsed = time.perf_counter() - t0
        self.statuses[response.status_code] += 1
        self.post_ms.append((t0 - self.started, elapsed * 1000))
        if response.status_code != 202:
            self.busy.pop(project, None)
            if response.status_code != 409:
                self.errors.append(f"POST /events {response.status_code}: {response.text[:200]}")
            return
        event_id = response.json()["event_id"]
        execution = await self._execution_of(http, event_id)
        if execution is None:
            self.errors.append(f"event {event_id}: no execution id")
            return
        self.project_of_execution[execution] = project
        self.accepted_at[execution] = t0 + elapsed

    async def _execution_of(self, http: httpx.AsyncClient, event_id: str) -> str | None:
        try:
            response = await http.get(f"/events/{event_id}")
            value = response.json().get("executionId") if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            value = None
        if value is None:
            self.errors.append(f"GET /events/{event_id} failed")
        return str(value) if value else None

    async def drive(self, stop: asyncio.Event) -> None:
        """Fire events at the steady rate until the time is up or ``stop``."""
        period = 1.0 / self.args.rate
        end = self.started + self.args.minutes * 60
        headers = {"Authorization": f"Bearer {self.token}"}
        limits = httpx.Limits(max_connections=50, max_keepalive_connections=20)
        async with httpx.AsyncClient(base_url=self.gateway.url, headers=headers, timeout=30,
                                     limits=limits) as http:
            pending: set[asyncio.Task[None]] = set()
            turn = 0
            while not stop.is_set():
                due = self.started + self.scheduled * period
                if due >= end:
                    break
                delay = due - time.perf_counter()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=delay)
                    if stop.is_set():
                        break
                self.scheduled += 1
                project = self.idle_project(turn)
                turn += 1
                if project is None:
                    self.skipped_busy += 1
                    continue
                task = asyncio.create_task(self.post(http, project))
                pending.add(task)
                task.add_done_callback(pending.discard)
            if pending:
                await asyncio.wait(pending, timeout=30)


async def soak(st: Stack, gateway: Proc, args: argparse.Namespace, repo_url: str
               ) -> dict[str, Any]:
    settings = get_settings()
    customers = [f"soak-c{k}" for k in range(args.customers)]
    projects = [f"{customers[i % len(customers)]}/p{i:03d}" for i in range(args.projects)]
    token = mint(settings, sub="soak", projects=[f"{c}/*" for c in customers],
                 role="developer", ttl=int(args.minutes * 60) + 3600)
    run = Soak(st=st, gateway=gateway, args=args, projects=projects, repo_url=repo_url,
               token=token)
    stop = asyncio.Event()
    stop_clients = asyncio.Event()
    interrupted = False

    def on_signal() -> None:
        nonlocal interrupted
        if interrupted:
            raise KeyboardInterrupt
        interrupted = True
        note("stopping early (again to abort)")
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)

    ws_url = gateway.url.replace("http://", "ws://") + f"/ws/devteam?token={token}"
    clients = [Client(i) for i in range(args.clients)]
    client_tasks = [asyncio.create_task(run_client(c, ws_url, stop_clients, run.completion))
                    for c in clients]
    await asyncio.sleep(1.0)
    db_size_start = await database_size()
    load_start = load_average()
    sampler = Sampler(st.procs.procs, st.db_name)
    run.started, run.started_wall = time.perf_counter(), time.time()

    async def sample_memory() -> None:
        while not stop_clients.is_set():
            sampler.sample(time.perf_counter() - run.started)
            for proc in st.procs.procs:
                if not proc.alive():
                    run.errors.append(f"{proc.name} exited ({proc.popen.returncode})")
                    tail = "\n".join(proc.output().splitlines()[-25:])
                    note(f"{proc.name} exited ({proc.popen.returncode}); its last lines:\n{tail}")
                    stop.set()
                    return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop_clients.wait(), timeout=args.sample_seconds)

    async def progress() -> None:
        while not stop_clients.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop_clients.wait(), timeout=60)
            if stop_clients.is_set():
                return
            minutes = (time.perf_counter() - run.started) / 60
            note(f"{minutes:.1f} min: {run.statuses.get(202, 0)} accepted, "
                 f"{run.completions} completed, {len(run.errors)} errors")

    sampler_task = asyncio.create_task(sample_memory())
    progress_task = asyncio.create_task(progress())
    note(f"soak: {args.minutes} min at {args.rate}/s on {len(projects)} projects, "
         f"{args.clients} clients")
    await run.drive(stop)
    driven = time.perf_counter() - run.started
    drain_until = time.perf_counter() + (15 if interrupted else 60)
    while run.busy and time.perf_counter() < drain_until:
        await asyncio.sleep(0.5)
    await asyncio.sleep(1.5)  # let every client read the last frames
    stop_clients.set()
    await asyncio.gather(*client_tasks, sampler_task, progress_task, return_exceptions=True)
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.remove_signal_handler(sig)
    db, db_size_end = await database_view(run)
    for execution, accepted in run.accepted_at.items():
        seen = clients[0].completed_at.get(execution) if clients else None
        if seen is not None:
            run.e2e_ms.append((accepted - run.started, (seen - accepted) * 1000))
    log_errors = [line for proc in st.procs.procs for line in proc.json_lines()
                  if line.get("level") in ("error", "critical")]
    stages = stage_lines(st, run.started_wall)
    kept = None
    if run.errors or log_errors:
        kept = Path(tempfile.mkdtemp(prefix="devteam-soak-logs-"))
        shutil.copytree(st.procs.logdir, kept, dirs_exist_ok=True)
    return {"run": run, "clients": clients, "sampler": sampler, "driven_s": driven,
            "stages": stages, "kept_logs": kept,
            "interrupted": interrupted, "db": db, "log_errors": log_errors,
            "db_size_mb": (db_size_start, db_size_end), "load": (load_start, load_average())}


async def database_view(run: Soak) -> tuple[dict[str, tuple[str, int]], float]:
    """Status and last seq of every execution (to count missed frames), database size MB."""
    store = Store.from_settings(get_settings(), pool_size=2)
    try:
        async with store.transaction() as session:
            rows = (await session.execute(text(
                "SELECT id, status, last_seq FROM executions"))).all()
        size = await database_size(store)
    finally:
        await store.close()
    return {str(r[0]): (str(r[1]), int(r[2])) for r in rows}, size


async def database_size(store: Store | None = None) -> float:
    own = store is None
    store = store or Store.from_settings(get_settings(), pool_size=1)
    try:
        async with store.transaction() as session:
            size = (await session.execute(text(
                "SELECT pg_database_size(current_database())"))).scalar_one()
    finally:
        if own:
            await store.close()
    return float(size) / MB


def stage_lines(st: Stack, started_wall: float) -> list[tuple[float, float, float]]:
    """``(seconds into the run, duration_ms, commit_ms)`` of every stage the workers ran."""
    out = []
    for proc in st.procs.named("worker"):
        for line in proc.json_lines():
            if line.get("msg") == "stage.end" and "commit_ms" in line:
                with contextlib.suppress(KeyError, ValueError, TypeError):
                    at = datetime.fromisoformat(str(line["timestamp"])).timestamp()
                    out.append((at - started_wall, float(line["duration_ms"]),
                                float(line["commit_ms"])))
    return out


# ---------------------------------------------------------------------------- report
def per_minute(run: Soak, sampler: Sampler, stages: list[tuple[float, float, float]],
               minutes: float) -> list[tuple[Any, ...]]:
    rows = []
    buckets = max(1, int(minutes + 0.999))
    for m in range(buckets):
        lo, hi = m * 60, (m + 1) * 60
        posts = [v for t, v in run.post_ms if lo <= t < hi]
        e2e = [v for t, v in run.e2e_ms if lo <= t < hi]
        durations = [d for t, d, _ in stages if lo <= t < hi]
        commits = [c for t, _, c in stages if lo <= t < hi]
        load = [v for t, v in sampler.load if lo <= t < hi]
        mem: list[Any] = []
        for name in ("gateway", "relay", "worker", "postgres backends (this db) RSS",
                     "postgres backends (this db) USS"):
            values = [v for key, series in sampler.series.items() if key.startswith(name)
                      for t, v in series if lo <= t < hi]
            keys = {key for key in sampler.series if key.startswith(name)}
            mem.append(sum(values) / len(values) * len(keys) if values else float("nan"))
        rows.append((f"{m}-{m + 1}", sum(load) / len(load) if load else float("nan"),
                     len(posts), stats(posts)["p95"], len(e2e), stats(e2e)["p95"],
                     stats(durations)["p95"], stats(commits)["p95"], *mem))
    return rows


def report(measured: dict[str, Any], args: argparse.Namespace) -> None:
    run: Soak = measured["run"]
    clients: list[Client] = measured["clients"]
    sampler: Sampler = measured["sampler"]
    db: dict[str, tuple[str, int]] = measured["db"]
    driven = measured["driven_s"]
    posts = [v for _, v in run.post_ms]
    e2e = [v for _, v in run.e2e_ms]
    accepted = run.statuses.get(202, 0)
    ours = set(run.accepted_at)
    ended = {e: s for e, (s, _) in db.items() if e in ours}
    completed = sum(1 for s in ended.values() if s == "completed")
    failed = sum(1 for s in ended.values() if s == "error")
    unfinished = sum(1 for s in ended.values() if s not in ("completed", "error", "stopped"))
    lost = dups = 0
    for c in clients:
        dups += c.duplicates
        for execution, (_status, last_seq) in db.items():
            got = c.last_seq.get(execution, 0)
            lost += max(0, last_seq - got)
        lost += c.gaps
    frames = sum(c.frames for c in clients)
    log_errors = len(measured["log_errors"])
    client_errors = [e for c in clients for e in c.errors]
    memory = {name: growth(series) for name, series in sorted(sampler.series.items())}
    judged = {name for name in memory if name != "postgres backends (this db) RSS"}
    growing = [name for name, g in memory.items() if name in judged and grows(g)]

    s_post, s_e2e = stats(posts), stats(e2e)
    print_table(
        f"Soak: {driven / 60:.1f} min, {args.rate}/s target, {args.projects} projects, "
        f"{args.clients} WebSocket clients",
        ["measure", "value"],
        [
            ("events scheduled / accepted (202)", f"{run.scheduled} / {accepted}"),
            ("accepted per second", accepted / driven if driven else float("nan")),
            ("skipped (every project busy)", run.skipped_busy),
            ("409 (project still active)", run.statuses.get(409, 0)),
            ("executions completed / error / unfinished", f"{completed} / {failed} / {unfinished}"),
            ("completions per minute", completed / driven * 60 if driven else float("nan")),
            ("frames delivered (all clients)", frames),
            ("frames per second (all clients)", frames / driven if driven else float("nan")),
            ("frames lost / duplicated", f"{lost} / {dups}"),
            ("client reconnects / resyncs", (f"{sum(c.reconnects for c in clients)} / "
                                            f"{sum(c.resyncs for c in clients)}")),
            ("request errors (non-202/409, exceptions)", len(run.errors)),
            ("error-level log lines (all processes)", log_errors),
            ("database size MB, start → end (append-only history)",
             f"{measured['db_size_mb'][0]:.1f} → {measured['db_size_mb'][1]:.1f}"),
            ("1-minute load average, start → end (2 cores, shared)",
             f"{measured['load'][0]} → {measured['load'][1]}"),
            ("postgres backends of this db, first → last sample",
             (f"{sampler.backends[0][1] if sampler.backends else '-'} → "
             f"{sampler.backends[-1][1] if sampler.backends else '-'}")),
        ],
    )
    print_table(
        "Latency (ms)",
        ["measure", "n", "p50", "p95", "p99", "max"],
        [("POST /events answered", s_post["n"], s_post["p50"], s_post["p95"], s_post["p99"],
          s_post["max"]),
         ("accepted → completion frame (client 0)", s_e2e["n"], s_e2e["p50"], s_e2e["p95"],
          s_e2e["p99"], s_e2e["max"])],
    )
    print_table(
        "Per minute (memory: mean RSS MB of the kind, summed over processes)",
        ["minute", "load", "posts", "post p95", "done", "e2e p95", "stage p95",
         "commit p95", "gateway", "relay", "workers", "pg RSS", "pg USS"],
        per_minute(run, sampler, measured["stages"], driven / 60),
        footnotes=[("load = 1-minute load average (2 cores, shared); stage p95 / commit p95 "
                   "= the workers' stage.end duration_ms / commit_ms in that minute.")],
    )
    print_table(
        f"Memory (RSS MB, sampled every {args.sample_seconds:g} s)",
        ["process", "first quarter", "last quarter", "change", "change %", "slope MB/min",
         "max", "grows?"],
        [(name, g["first"], g["last"], g["delta"], g["pct"], g["slope"], g["max"],
          "YES" if name in growing else "no" if name in judged else "(see USS)")
         for name, g in memory.items()],
        footnotes=[
            ("grows? = last-quarter mean more than 10 % and 16 MB above the first-quarter "
            "mean. Workers include their child processes. Postgres: backends connected "
            "to this run's database; their RSS counts the shared buffers each one has "
            "touched, so it rises as they warm up and is not judged; USS (private pages) "
            "is. Redis is shared with other users of the local stack."),
            ("Every project's task list is already done: each event runs INIT → SELECT → "
            "FINALIZE (git clone from the per-customer cache, task-list read, container "
            "cleanup), no Aider. An event goes to a project with no active execution; "
            "when all are busy the tick is skipped (counted)."),
        ],
    )
    for line in (run.errors + client_errors)[:10]:
        note(f"error: {line}")
    for entry in measured["log_errors"][:5]:
        note(f"error log line: {json.dumps(entry)[:300]}")
    if measured["kept_logs"]:
        note(f"process logs kept in {measured['kept_logs']}")
    if args.json:
        emit_json({
            "minutes": rnd(driven / 60),
            "interrupted": measured["interrupted"],
            "rate_target": args.rate,
            "clients": args.clients,
            "projects": args.projects,
            "events_accepted": accepted,
            "accepted_per_s": rnd(accepted / driven if driven else float("nan"), 3),
            "executions_completed": completed,
            "executions_error": failed,
            "executions_unfinished": unfinished,
            "post_p50_ms": rnd(s_post["p50"]), "post_p95_ms": rnd(s_post["p95"]),
            "post_p99_ms": rnd(s_post["p99"]),
            "e2e_p50_ms": rnd(s_e2e["p50"]), "e2e_p95_ms": rnd(s_e2e["p95"]),
            "e2e_p99_ms": rnd(s_e2e["p99"]),
            "frames": frames, "frames_lost": lost, "frames_duplicated": dups,
            "reconnects": sum(c.reconnects for c in clients),
            "errors": len(run.errors) + len(client_errors), "error_log_lines": log_errors,
            "skipped_busy": run.skipped_busy, "conflicts_409": run.statuses.get(409, 0),
            "rss_mb_last": {name: rnd(g["last"], 1) for name, g in memory.items()},
            "rss_growth_pct": {name: rnd(g["pct"], 1) for name, g in memory.items()},
            "growing": growing,
            "db_size_mb_start": rnd(measured["db_size_mb"][0], 1),
            "db_size_mb_end": rnd(measured["db_size_mb"][1], 1),
            "load_avg_1m": list(measured["load"]),
            "kept_logs": str(measured["kept_logs"]) if measured["kept_logs"] else None,
        })


# ---------------------------------------------------------------------------- main
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--rate", type=float, default=2.0, help="Events per second.")
    parser.add_argument("--projects", type=int, default=40)
    parser.add_argument("--customers", type=int, default=4)
    parser.add_argument("--clients", type=int, default=20, help="WebSocket clients.")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--sample-seconds", type=float, default=5.0)
    parser.add_argument("--redis-db", type=int, default=14,
                        help="Redis database to use (must be empty; flushed after).")
    parser.add_argument("--json", action="store_true", help="End with one JSON line.")
    args = parser.parse_args()

    with interrupts_raise(), stack(redis_db=args.redis_db, prefix="bench_soak") as st:
        sample = create_sample(st.root / "sample", name="done",
                               files={**INITIAL, "tasks_list.md": all_done(TASK_LIST)}, script="")
        note("starting gateway, relay and workers")
        # every client is the one soak user: the per-user stream limit must not apply
        gateway = st.procs.gateway(DEVTEAM_GATEWAY_STREAMS_PER_USER="100000",
                                   DEVTEAM_GATEWAY_STREAMS_PER_CUSTOMER="100000")
        st.procs.relay()
        workers = [st.procs.worker(threads=args.threads) for _ in range(args.workers)]
        for proc in workers:
            wait_for_log(proc, "worker.started")
        measured = asyncio.run(soak(st, gateway, args, sample.url))
    report(measured, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
