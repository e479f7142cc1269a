"""API benchmark: POST /events and GET status latency at 32 concurrent loopback clients.

    .venv/bin/python bench/api.py [--json] [--requests 2000] [--clients 32] [--rounds 4]
                                  [--metrics-both | --compare-src DIR]

One ``devteam serve`` subprocess on a throwaway database (copied from the migrated
template, dropped at the end; no relay or worker runs, so nothing but the gateway and
Postgres does work). ``--clients`` keep-alive HTTP/1.1 connections, each driven by one
coroutine of a minimal client (a bare asyncio protocol on uvloop, about 0.03 ms of CPU a
request, reported: it shares the machine's two cores with the gateway and the database),
send requests back to back; the client collects no garbage while measuring. Measured:

- ``events_post``: ``POST /events`` with an admin token, each for its own project
  (``bench/p0`` … ``bench/pN``: only one execution may be active per project), answered
  202 after the event, the execution, the outbox command, the audit row and the first
  notification are committed in one transaction;
- ``status_get``: ``GET /api/devteam/automation/status/{projectId}`` of those projects;
- ``baseline``: ``GET /health/live`` in the same app (routing, middleware, correlation id,
  JSON response; no token, no database): the floor of any request on this machine.

The three run in ``--rounds`` interleaved rounds (baseline, events, status, repeated), so
they see the same machine load (the machine is shared: the table shows the load average).
``--metrics-both`` runs two gateways on the same database, one with Prometheus metrics
(``DEVTEAM_METRICS_ENABLED=true``, the default) and one without, alternating them in every
round, and reports both and the overhead of metrics.
``--compare-src DIR`` is an A/B of code the same way: the second gateway runs another
source tree's ``src`` (``DIR``, e.g. ``git archive HEAD~3 src | tar -x -C /tmp/base`` then
``--compare-src /tmp/base/src``; first on ``PYTHONPATH``, so it shadows this tree's
editable install); the JSON adds ``compared`` and ``compare_delta`` (this minus other).

Each phase also reports CPU per request (from ``/proc``): the gateway's (its process
group, so every worker), the database's (the Postgres backends connected to the
throwaway database) and the client's own (``client_cpu_ms`` keys). On a shared machine
these move much less with the load than the latencies do, so they are the figures to
compare across runs.
Latency is from writing the request to reading the whole response; ``events_post_rps`` is
the events sent divided by the wall time of the events phases. Each phase of each round
starts with every connection sending at the same moment, a burst the closed loop never
repeats; its requests are about 6 % of a default run's and hold most of its slowest. So
the report adds ``*_sustained_p50_ms``/``*_sustained_p99_ms``: only the requests sent
after every connection had its first answer of the phase (the sustained load of
``--clients`` clients). The other figures, and the issues' targets, take every request.
Prints a table and, last, one JSON line (with ``--json``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
if sys.path and Path(sys.path[0] or ".").resolve() == _HERE:
    sys.path.pop(0)  # bench/pipeline.py must not shadow the ``pipeline`` package
sys.path.append(str(_HERE))

import asyncpg  # noqa: E402
import msgspec  # noqa: E402
import uvloop  # noqa: E402

from common import (  # noqa: E402
    Processes,
    emit_json,
    gateway_variants,
    interrupts_raise,
    load_average,
    note,
    print_table,
    rnd,
    stats,
    throwaway_database,
)

CUSTOMER = "bench"
WARMUP = 100


# ---------------------------------------------------------------------------- the client
class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; responses must carry Content-Length.

    A bare protocol (no stream reader): its cost per request is a small part of the
    server's (about a tenth of a status read's gateway CPU), which matters because it
    runs on the same two cores as the gateway and the database."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.transport: Any = None  # uvloop's transports are not asyncio.Transport
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.lost: Exception | None = None

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        _, conn = await asyncio.get_running_loop().create_connection(
            lambda: cls(f"{host}:{port}"), host, port)
        return conn

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc or ConnectionError("the server closed the connection")
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(self.lost)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.waiter is None:
            return
        head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        length = next(int(v) for k, _, v in (ln.partition(":") for ln in head[1:])
                      if k.lower() == "content-length")
        if len(self.buffer) < end + 4 + length:
            return
        body = bytes(self.buffer[end + 4:end + 4 + length])
        del self.buffer[:end + 4 + length]
        waiter, self.waiter = self.waiter, None
        waiter.set_result((int(head[0].split(" ", 2)[1]), body))

    async def request(self, method: str, path: str, token: str | None = None,
                      body: bytes | None = None) -> tuple[int, bytes]:
        if self.lost is not None:
            raise self.lost
        assert self.transport is not None
        assert self.waiter is None
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}"]
        if token:
            head.append(f"Authorization: Bearer {token}")
        if body is not None:
            head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(("\r\n".join(head) + "\r\n\r\n").encode() + (body or b""))
        return await self.waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


@dataclass
class Phase:
    name: str
    expected: int
    latencies: list[float] = field(default_factory=list)
    sustained: list[float] = field(default_factory=list)
    """The latencies of requests sent once every connection had its phase's first answer
    (``latencies`` has them too)."""
    wall: float = 0.0
    errors: list[str] = field(default_factory=list)
    gateway_cpu: float = 0.0
    db_cpu: float = 0.0
    client_cpu: float = 0.0


Job = tuple[str, str, bytes | None]


async def run_phase(conns: list[Connection], token: str, jobs: list[Job], phase: Phase,
                    *, record: bool = True) -> None:
    """Send ``jobs`` over all connections at once; each connection takes the next job.

    Every connection sends its first request at the same moment, a burst that the closed
    loop never repeats (answers come back spread out, and so do the next requests). The
    requests sent after every connection has had its first answer are also kept apart
    (``phase.sustained``): the sustained load of ``len(conns)`` clients."""
    queue = iter(jobs)
    timed: list[tuple[float, float]] = []  # (sent, latency s) of the answered requests
    first_answers: list[float] = []

    async def worker(conn: Connection) -> None:
        first = True
        for method, path, body in queue:
            started = time.perf_counter()
            status, payload = await conn.request(method, path, token, body)
            ended = time.perf_counter()
            if first:
                first_answers.append(ended)
                first = False
            if status != phase.expected:
                phase.errors.append(f"{method} {path}: {status} {payload[:200]!r}")
            elif record:
                timed.append((started, ended - started))

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker(c) for c in conns))
    if record:
        phase.wall += time.perf_counter() - started
        phase.client_cpu += time.process_time() - cpu
        drained = max(first_answers, default=started)
        phase.latencies += [latency * 1000 for _, latency in timed]
        phase.sustained += [latency * 1000 for sent, latency in timed if sent >= drained]


# ---------------------------------------------------------------------------- CPU
_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_of(stat: str) -> float:
    """utime + stime of a ``/proc/<pid>/stat`` line, in seconds."""
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def group_cpu(pgid: int) -> float:
    """CPU seconds used so far by the processes of group ``pgid`` (a gateway's workers)."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2:].split()[2]) == pgid:
                total += _cpu_of(stat)
    return total


def pids_cpu(pids: list[int]) -> dict[int, float]:
    cpu = {}
    for pid in pids:
        try:
            cpu[pid] = _cpu_of(Path(f"/proc/{pid}/stat").read_text())
        except OSError:
            continue
    return cpu


async def backends(conn: asyncpg.Connection) -> list[int]:
    """The Postgres backends connected to the benchmark's database (but ``conn``'s)."""
    return [r[0] for r in await conn.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid()")]


class CpuMeter:
    """CPU seconds of one gateway and of the database's backends around a phase."""

    def __init__(self, conn: asyncpg.Connection, pgid: int) -> None:
        self.conn, self.pgid = conn, pgid
        self.gateway = 0.0
        self.db: dict[int, float] = {}

    async def start(self) -> None:
        self.db = pids_cpu(await backends(self.conn))
        self.gateway = group_cpu(self.pgid)

    async def stop(self, phase: Phase) -> None:
        phase.gateway_cpu += group_cpu(self.pgid) - self.gateway
        now = pids_cpu(await backends(self.conn))
        phase.db_cpu += sum(cpu - self.db.get(pid, 0.0) for pid, cpu in now.items())


# ---------------------------------------------------------------------------- the run
def event(project: str) -> bytes:
    return msgspec.json.encode({"workflow_type": "DEVTEAM_AUTOMATION",
                                "data": {"projectId": project}})


def status_path(project: str) -> str:
    return f"/api/devteam/automation/status/{project}"


async def seed(db_url: str, count: int, prefix: str = "p") -> None:
    conn = await asyncpg.connect(db_url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        await conn.execute(
            "INSERT INTO projects (project_id, customer_id, repository_url) "
            "SELECT $1 || '/' || $3 || g, $1, 'file:///srv/bench/none.git' "
            "FROM generate_series(0, $2 - 1) g", CUSTOMER, count, prefix)
    finally:
        await conn.close()


async def measure(args: argparse.Namespace, db_url: str, ports: dict[str, int], token: str,
                  pids: dict[str, int]) -> dict[str, dict[str, Phase]]:
    """Phases per gateway (``ports``: label → port, ``pids``: label → its process group);
    the gateways take turns in every round, in alternating order, so they see the same
    machine load."""
    per_round = args.requests // args.rounds
    labels = list(ports)
    prefix = {label: "p" if len(ports) == 1 else f"{label}-" for label in labels}
    runs: dict[str, dict[str, Phase]] = {}
    for label in labels:
        await seed(db_url, WARMUP + per_round * args.rounds, prefix[label])
        runs[label] = {"baseline": Phase("baseline", 200),
                       "events_post": Phase("events_post", 202),
                       "status_get": Phase("status_get", 200)}

    async def one(label: str, first: int, count: int, record: bool = True) -> None:
        # fresh connections for each turn: an idle keep-alive connection is closed by the
        # gateway's header deadline while the other gateway has its turn
        phases = runs[label]
        cs = [await Connection.open("127.0.0.1", ports[label]) for _ in range(args.clients)]
        projects = [f"{CUSTOMER}/{prefix[label]}{i}" for i in range(first, first + count)]
        jobs: dict[str, list[Job]] = {
            "baseline": [("GET", "/health/live", None)] * count,
            "events_post": [("POST", "/events", event(p)) for p in projects],
            "status_get": [("GET", status_path(p), None) for p in projects],
        }
        meter = CpuMeter(observer, pids[label])
        try:
            for name, phase_jobs in jobs.items():
                await meter.start()
                await run_phase(cs, token, phase_jobs, phases[name], record=record)
                if record:
                    await meter.stop(phases[name])
        finally:
            for conn in cs:
                conn.close()

    # one connection reads the database's backends for every phase (a connection made
    # for each would start and end a backend at every phase's edges)
    observer = await asyncpg.connect(db_url.replace("postgresql+asyncpg://", "postgresql://", 1))
    # The client's own garbage collections would stall every request in flight (a full
    # one took 34 ms in one run: 57 status reads over 10 ms at once): none while measuring.
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        for label in labels:
            await one(label, 0, WARMUP, record=False)
        for r in range(args.rounds):
            for label in labels if r % 2 == 0 else reversed(labels):
                await one(label, WARMUP + r * per_round, per_round)
            note(f"round {r + 1}/{args.rounds} done")
    finally:
        gc.enable()
        await observer.close()
    return runs


def report(runs: dict[str, dict[str, Phase]], args: argparse.Namespace,
           load: tuple[float, float], as_json: bool) -> None:
    results = {label: report_one(phases, args, load, label) for label, phases in runs.items()}
    if len(results) == 1:
        result = next(iter(results.values()))
    elif "compared" in results:
        this, other = results["this_tree"], results["compared"]
        result = {**this, "compared": other, "compare_delta": {
            key: rnd(this[key] - other[key]) for key in this
            if key.endswith(("_ms", "_rps")) and this[key] is not None
            and other[key] is not None}}
        print_table("A/B: this tree minus --compare-src", ["measure", "difference"],
                    [[k, v] for k, v in result["compare_delta"].items()],
                    ["negative ms = this tree faster; positive rps = this tree serves more"])
    else:
        on, off = results["metrics_on"], results["metrics_off"]
        result = {**results, "overhead_pct": {
            key: rnd((on[key] - off[key]) / off[key] * 100, 1)
            for key in on if key.endswith(("_ms", "_rps")) and off[key]}}
        print_table("Metrics overhead (on vs off, %)", ["measure", "overhead %"],
                    [[k, v] for k, v in result["overhead_pct"].items()],
                    ["positive ms = slower with metrics; negative rps = fewer requests/s"])
    if as_json:
        emit_json(result)


def report_one(phases: dict[str, Phase], args: argparse.Namespace,
               load: tuple[float, float], label: str) -> dict[str, Any]:
    rows = []
    for phase in phases.values():
        s = stats(phase.latencies)
        rps = len(phase.latencies) / phase.wall if phase.wall else float("nan")
        n = len(phase.latencies) or 1
        rows.append([phase.name, s["n"], s["p50"], s["p95"], s["p99"], s["max"],
                     stats(phase.sustained)["p99"], rps,
                     1000 * phase.gateway_cpu / n, 1000 * phase.db_cpu / n,
                     1000 * phase.client_cpu / n, len(phase.errors)])
    print_table(
        f"API at {args.clients} concurrent loopback clients"
        + (f" ({label})" if label != "gateway" else ""),
        ["measure", "n", "p50 ms", "p95 ms", "p99 ms", "max ms", "sustained p99 ms",
         "req/s", "gateway CPU", "db CPU", "client CPU", "errors"], rows,
        [f"load average before/after: {load[0]} / {load[1]} (2 shared cores)",
         "CPU: ms per request, of the gateway, the database's backends and this client",
         "baseline = GET /health/live in the same app (no token, no database)",
         ("sustained: only requests sent after every connection had its first answer of the "
          "phase (p50..max: all requests, the connections' simultaneous first ones too)")],
    )
    events, status, base = phases["events_post"], phases["status_get"], phases["baseline"]
    result = {
        "clients": args.clients,
        "events_post_p50_ms": rnd(stats(events.latencies)["p50"]),
        "events_post_p99_ms": rnd(stats(events.latencies)["p99"]),
        "events_post_rps": rnd(len(events.latencies) / events.wall if events.wall else
                               float("nan"), 1),
        "status_get_p50_ms": rnd(stats(status.latencies)["p50"]),
        "status_get_p99_ms": rnd(stats(status.latencies)["p99"]),
        "baseline_p50_ms": rnd(stats(base.latencies)["p50"]),
        "baseline_p99_ms": rnd(stats(base.latencies)["p99"]),
        **{f"{name}_sustained_{q}_ms": rnd(stats(phase.sustained)[q])
           for name, phase in phases.items() for q in ("p50", "p99")},
        **{f"{name}_{part}_cpu_ms": rnd(1000 * cpu / (len(phase.latencies) or 1), 3)
           for name, phase in phases.items()
           for part, cpu in (("gateway", phase.gateway_cpu), ("db", phase.db_cpu),
                             ("client", phase.client_cpu))},
        "errors": sum(len(p.errors) for p in phases.values()),
        "load_average": load[1],
    }
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="End with one JSON line.")
    parser.add_argument("--requests", type=int, default=2000,
                        help="Measured requests of each kind (after a warm-up).")
    parser.add_argument("--clients", type=int, default=32, help="Concurrent connections.")
    parser.add_argument("--rounds", type=int, default=4, help="Interleaved rounds.")
    parser.add_argument("--metrics-both", action="store_true",
                        help="Compare a gateway with metrics and one without in one run.")
    parser.add_argument("--compare-src", default="",
                        help="A/B of code: a second gateway runs this src directory's code.")
    args = parser.parse_args()
    if args.metrics_both and args.compare_src:
        parser.error("--metrics-both and --compare-src are separate runs")
    if args.compare_src and not (Path(args.compare_src) / "gateway").is_dir():
        parser.error(f"--compare-src {args.compare_src}: no gateway package there")
    from gateway.auth import mint
    from runner.settings import get_settings, reset_settings_cache

    saved = dict(os.environ)
    load_before = load_average()
    with interrupts_raise(), throwaway_database("bench_api") as db_url, \
            tempfile.TemporaryDirectory(prefix="devteam-api-") as tmp:
        os.environ.update({"DEVTEAM_DATABASE_URL": db_url, "DEVTEAM_LOG_FORMAT": "json",
                           "DEVTEAM_LOG_LEVEL": "warning",
                           "DEVTEAM_WORKSPACE_ROOT": str(Path(tmp) / "workspaces")})
        reset_settings_cache()
        token = mint(get_settings(), sub="bench", projects=[], role="admin", ttl=3600)
        procs = Processes(env=dict(os.environ), logdir=Path(tmp) / "logs")
        try:
            ports: dict[str, int] = {}
            pids: dict[str, int] = {}
            variants = gateway_variants(args.metrics_both, args.compare_src, "gateway")
            for label, extra in variants.items():
                gateway = procs.gateway(**extra)
                assert gateway.port is not None
                ports[label], pids[label] = gateway.port, gateway.pid
                note(f"{label} on {gateway.url}; {args.requests} requests of each kind, "
                     f"{args.clients} clients")
            phases = uvloop.run(measure(args, db_url, ports, token, pids))
        finally:
            procs.close()
            os.environ.clear()
            os.environ.update(saved)
            reset_settings_cache()
    for run in phases.values():
        for phase in run.values():
            for error in phase.errors[:3]:
                note(f"[red]{phase.name}[/red]: {error}")
    report(phases, args, (load_before, load_average()), args.json)
    return 1 if any(p.errors for run in phases.values() for p in run.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
