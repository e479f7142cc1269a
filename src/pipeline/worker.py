"""``devteam worker``: a Dramatiq worker running the stage actors, plus the reaper."""

from __future__ import annotations

import signal
import threading

import dramatiq
import structlog

from pipeline import actors, metrics
from pipeline.broker import get_broker
from pipeline.reaping import start_reaper
from runner.logging import configure_logging
from runner.settings import Settings

log = structlog.get_logger("devteam.worker")

THREAD_WAKE_MS = 100
"""How often an idle worker thread wakes to see whether it should stop. A fetched message
reaches a thread through an in-process queue at once, so this costs no start latency (the
consumers keep their own timeouts: ``PipelineBroker``). At ``worker_poll_ms`` (20, which
Dramatiq would use for both) four idle threads woke 200 times a second; at 100 a stopping
worker waits at most 0.1 s for them."""


def run_worker(settings: Settings, *, threads: int | None = None) -> None:
    """Consume stage commands until SIGINT/SIGTERM, then finish running stages (10 s)."""
    configure_logging(settings, process="worker")
    if settings.metrics.enabled:
        metrics.serve_port(settings.metrics.host, settings.metrics.worker_port, role="worker")
    broker = get_broker(settings)
    actors.declare(broker, settings)
    count = threads or settings.pipeline.worker_concurrency
    worker = dramatiq.Worker(
        broker, worker_threads=count,
        worker_timeout=max(THREAD_WAKE_MS, settings.pipeline.worker_poll_ms),
    )
    worker.queue_prefetch = count
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    worker.start()
    start_reaper(settings, stop)
    log.info("worker.started", threads=count)
    try:
        stop.wait()
    finally:
        log.info("worker.stopping")
        worker.stop(timeout=10_000)
        broker.close()
