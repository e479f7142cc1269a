"""Every Prometheus metric of the service, in one place (``prometheus-client``).

The gateway serves them on ``/metrics`` (or on ``DEVTEAM_METRICS_ADDRESS``), each relay
and worker on a port of its own (``DEVTEAM_METRICS_RELAY_PORT``/``_WORKER_PORT``). Names
start with ``devteam_``; labels are bounded: route templates (never paths), stage names,
outcomes, classifications, statuses, customers — never an execution, task or command id.

Each process records what it does (the gateway: requests and the live stream; workers:
stage runs, retries, containers, setup cache, model usage). Figures that live in Postgres
(outbox backlog, executions by status, containers per customer) are *fleet gauges*: the
relays read them every ``DEVTEAM_METRICS_REFRESH_SECONDS``, so every relay reports the
same value (aggregate them with ``max``, not ``sum``).

A gateway started with ``--workers N`` runs ``prometheus-client``'s multiprocess mode: each
process writes its values under ``DEVTEAM_METRICS_MULTIPROC_DIR`` and ``/metrics`` sums
them (gauges: the live processes' sum).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping
from typing import Any

import structlog
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client import multiprocess as _multiprocess

from runner.settings import Settings

log = structlog.get_logger("devteam.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST
UNMATCHED = "<unmatched>"
"""The route label of requests no route matched (404/405 from the router)."""

_FAST = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_STAGE = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
_WAIT = (0.1, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0)

# -- gateway: HTTP and the live stream --------------------------------------------------
HTTP_REQUESTS = Counter(
    "devteam_http_requests", "HTTP requests answered, by route template and status.",
    ["method", "route", "status"])
HTTP_DURATION = Histogram(
    "devteam_http_request_duration_seconds",
    "Time to answer an HTTP request (streams excluded), by route template.",
    ["method", "route"], buckets=_FAST)
STREAM_CLIENTS = Gauge(
    "devteam_stream_clients", "Live-stream clients (WebSocket and SSE) connected now.",
    multiprocess_mode="livesum")
STREAM_FRAMES_SENT = Counter(
    "devteam_stream_frames_sent", "Frames handed to live-stream clients.")
STREAM_FRAMES_DROPPED = Counter(
    "devteam_stream_frames_dropped",
    "Frames dropped from the queue of a client too slow to keep up (it gets a resync).")
STREAM_RESYNCS = Counter(
    "devteam_stream_resyncs", "Resync frames sent, by reason.", ["reason"])
STREAM_LAG = Histogram(
    "devteam_stream_commit_lag_seconds",
    "Time from a frame's commit to the gateway publishing it to its live clients.",
    buckets=_FAST)

# -- relay --------------------------------------------------------------------------------
RELAY_DISPATCHES = Counter(
    "devteam_relay_dispatches", "Commands the relay sent to the broker.")
RELAY_REQUEUES = Counter(
    "devteam_relay_requeues",
    "Commands re-queued because their worker died or their message vanished.")
OUTBOX_BACKLOG = Gauge(
    "devteam_outbox_backlog", "Commands committed but not yet dispatched (fleet gauge).",
    multiprocess_mode="max")
OUTBOX_OLDEST_AGE = Gauge(
    "devteam_outbox_oldest_age_seconds",
    "Age of the oldest undispatched command that is due; 0 when none (fleet gauge).",
    multiprocess_mode="max")
EXECUTIONS = Gauge(
    "devteam_executions", "Executions by status (fleet gauge).", ["status"],
    multiprocess_mode="max")
CONTAINERS_RUNNING = Gauge(
    "devteam_containers_running",
    "Sandbox container slots held, by customer (fleet gauge).", ["customer"],
    multiprocess_mode="max")
CONTAINERS_WAITING = Gauge(
    "devteam_container_slot_waiting",
    "Containers waiting for a sandbox slot, by customer (fleet gauge).", ["customer"],
    multiprocess_mode="max")

# -- workers ------------------------------------------------------------------------------
STAGE_RUNS = Counter(
    "devteam_stage_runs", "Stage runs finished, by stage and outcome.", ["stage", "outcome"])
STAGE_DURATION = Histogram(
    "devteam_stage_duration_seconds", "Duration of stage runs, by stage and outcome.",
    ["stage", "outcome"], buckets=_STAGE)
RETRIES = Counter(
    "devteam_stage_retries", "Stage runs scheduled for a retry, by stage and classification.",
    ["stage", "classification"])
STAGE_ERRORS = Counter(
    "devteam_stage_errors", "Stage runs that ended with an error, by classification.",
    ["stage", "classification"])
SLOT_WAITS = Counter(
    "devteam_container_slot_waits",
    "Containers that had to wait for a sandbox slot, by customer.", ["customer"])
SLOT_WAIT_SECONDS = Histogram(
    "devteam_container_slot_wait_seconds",
    "How long a container waited for its sandbox slot, by customer.", ["customer"],
    buckets=_WAIT)
SETUP_CACHE = Counter(
    "devteam_setup_cache", "Dependency setups served from the cache (hit) or installed (miss).",
    ["result"])
MODEL_TOKENS = Counter(
    "devteam_model_tokens",
    "Model tokens as Aider reports them, by customer and direction (sent/received).",
    ["customer", "direction"])
MODEL_COST = Counter(
    "devteam_model_cost_dollars",
    "Model cost in US dollars as Aider reports it, by customer (only models with prices).",
    ["customer"])


def _label(value: str, *, limit: int = 64) -> str:
    """A label value of bounded length and alphabet (customer ids are validated upstream;
    this is the last guard against an unbounded or odd value)."""
    return re.sub(r"[^A-Za-z0-9_.:/\-<>]", "_", value)[:limit] or "_"


# -- recording helpers (cheap; never raise) ---------------------------------------------
def stage_finished(stage: str, outcome: str, seconds: float,
                   classification: str | None = None) -> None:
    STAGE_RUNS.labels(stage, outcome).inc()
    STAGE_DURATION.labels(stage, outcome).observe(max(0.0, seconds))
    if classification is not None:
        if outcome == "retrying":
            RETRIES.labels(stage, classification).inc()
        else:
            STAGE_ERRORS.labels(stage, classification).inc()


def slot_waited(customer_id: str, seconds: float) -> None:
    customer = _label(customer_id)
    SLOT_WAITS.labels(customer).inc()
    SLOT_WAIT_SECONDS.labels(customer).observe(max(0.0, seconds))


def setup_cache(hit: bool) -> None:
    SETUP_CACHE.labels("hit" if hit else "miss").inc()


_TOKENS = re.compile(
    r"^Tokens: ([\d.]+)(k|m)? sent(?:, ([\d.]+)(k|m)? cache write)?(?:, ([\d.]+)(k|m)? cache "
    r"hit)?, ([\d.]+)(k|m)? received\.(?:\s+Cost: \$([\d.]+) message)?", re.MULTILINE)
_SCALE = {None: 1, "": 1, "k": 1_000, "m": 1_000_000}

MAX_LINE_TOKENS = 1_000_000_000
"""The most tokens one of Aider's usage lines may report sent or received: a thousand
times the largest context a model has today. The numbers come from the model's server;
an absurd one (``10^30`` sent, which Aider prints as it is) would overflow the ``bigint``
the usage sums are read as, and every status and usage read of the project and its
customer would fail from then on."""
MAX_LINE_COST = 1_000_000.0
"""The highest cost, in dollars, one usage line may report."""


def _amount(number: str, unit: str | None) -> int | None:
    """A token count as Aider prints it (``388``, ``2.1k``, ``12m``); None when it is not a
    number or is outside 0 to ``MAX_LINE_TOKENS``."""
    try:
        value = float(number) * _SCALE[unit]
    except ValueError:
        return None
    return round(value) if 0 <= value <= MAX_LINE_TOKENS else None


def _cost(number: str | None) -> float | None:
    """A line's message cost: 0 when it has none (the model has no price), None when it is
    malformed or implausible (above ``MAX_LINE_COST``, or not finite)."""
    if number is None:
        return 0.0
    try:
        value = float(number)
    except ValueError:
        return None
    return value if 0 <= value <= MAX_LINE_COST else None


def aider_usage(stdout: str) -> tuple[int, int, float | None] | None:
    """(tokens sent, tokens received, cost or None) summed over Aider's ``Tokens: …`` lines;
    None when Aider reported no usage (the model's server gave none).

    A line whose numbers are malformed or implausible (``MAX_LINE_TOKENS``,
    ``MAX_LINE_COST``) is left out, with a warning: what the model's server reports is
    not trusted to be sane."""
    sent = received = 0
    cost: float | None = None
    found = False
    for m in _TOKENS.finditer(stdout):
        line_sent = _amount(m.group(1), m.group(2))
        line_received = _amount(m.group(7), m.group(8))
        line_cost = _cost(m.group(9))
        if line_sent is None or line_received is None or line_cost is None:
            log.warning("usage.implausible", line=m.group(0)[:200])
            continue
        found = True
        sent += line_sent
        received += line_received
        if m.group(9) is not None:
            cost = (cost or 0.0) + line_cost
    return (sent, received, cost) if found else None


def model_usage(customer_id: str, usage: Mapping[str, Any] | None) -> None:
    """Count an IMPLEMENT round's recorded usage (``tokensSent``/``tokensReceived``/
    ``cost``, from Aider's own marked usage lines). A round without it counts nothing: its
    output is never read for usage, since the model writes much of what it holds (a reply
    can print ``Tokens: 9k sent``)."""
    if not isinstance(usage, Mapping) or "tokensSent" not in usage:
        return
    sent, received = int(usage.get("tokensSent") or 0), int(usage.get("tokensReceived") or 0)
    raw_cost = usage.get("cost")
    cost = float(raw_cost) if isinstance(raw_cost, int | float) else None
    customer = _label(customer_id)
    MODEL_TOKENS.labels(customer, "sent").inc(max(0, sent))
    MODEL_TOKENS.labels(customer, "received").inc(max(0, received))
    if cost is not None:
        MODEL_COST.labels(customer).inc(max(0.0, cost))


def set_fleet(*, backlog: int, oldest_age: float, executions: Mapping[str, int],
              running: Mapping[str, int], waiting: Mapping[str, int]) -> None:
    """Replace the fleet gauges with what the relay just read from Postgres."""
    OUTBOX_BACKLOG.set(backlog)
    OUTBOX_OLDEST_AGE.set(max(0.0, oldest_age))
    for gauge, values in ((EXECUTIONS, executions), (CONTAINERS_RUNNING, running),
                          (CONTAINERS_WAITING, waiting)):
        _replace(gauge, {_label(k): v for k, v in values.items()})


def _replace(gauge: Gauge, values: Mapping[str, int]) -> None:
    """Set a one-label gauge to ``values``; label values no longer present read 0 (a
    customer whose containers all ended must not keep its last count)."""
    known = _known.setdefault(id(gauge), set())
    for value in known - set(values):
        gauge.labels(value).set(0)
    for value, number in values.items():
        gauge.labels(value).set(number)
    known.update(values)


_known: dict[int, set[str]] = {}


# -- exposition ---------------------------------------------------------------------------
def multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def registry() -> CollectorRegistry:
    """What to expose: this process's registry, or every gateway process's values."""
    if not multiprocess():
        return REGISTRY
    merged = CollectorRegistry()
    _multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
    return merged


def exposition() -> bytes:
    return generate_latest(registry())


def prepare_multiprocess(settings: Settings, name: str) -> str:
    """Make (and empty) the directory the processes of a forking gateway write their values
    to, and point ``prometheus-client`` at it; call before the processes start."""
    directory = settings.path(settings.metrics.multiproc_dir) / name
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROC_ENV] = str(directory)
    return str(directory)


def process_exiting() -> None:
    """A process of a forking gateway stops: its live gauges (stream clients) no longer
    count; its counters stay in the sums."""
    if multiprocess():
        _multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


_servers: dict[tuple[str, int], Any] = {}
_lock = threading.Lock()


def serve_port(host: str, port: int, *, role: str) -> int | None:
    """Serve ``/metrics`` on ``host:port`` from a thread (relays and workers); returns the
    port, or None when metrics are off for it (port 0) or the port is taken (logged: the
    process runs on without metrics rather than not at all)."""
    if port <= 0:
        return None
    with _lock:
        if (host, port) in _servers:
            return port
        try:
            server, _thread = start_http_server(port, addr=host, registry=registry())
        except OSError as exc:
            log.warning("metrics.port_unavailable", role=role, host=host, port=port,
                        error=str(exc))
            return None
        _servers[(host, port)] = server
    log.info("metrics.serving", role=role, host=host, port=port)
    return port


def parse_address(value: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or ``:port`` → (host, port); ValueError otherwise."""
    host, sep, port = value.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"not host:port: {value!r}")
    return (host.strip("[]") or default_host), int(port)
