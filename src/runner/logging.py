"""Structured logs: one JSON object per line, correlation ids bound, secrets redacted.

Every process calls ``configure_logging`` once. Context (correlation, customer, project,
execution, task ids) is bound with ``structlog.contextvars`` or ``log.bind``; the last
processor before rendering passes every value through the redactor, so no secret reaches
a log line whatever a caller put in it. The standard library's loggers (uvicorn, dramatiq)
are routed through the same pipeline.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from runner.redact import Redactor, default_redactor
from runner.settings import Settings

_configured: str | None = None
_redactor: Redactor | None = None


def _redact(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    global _redactor
    if _redactor is None:
        _redactor = default_redactor()
    redacted: dict[str, Any] = _redactor.redact_obj(event)
    return redacted


def configure_logging(settings: Settings, *, process: str) -> None:
    """Set up structlog and stdlib logging for this process (idempotent)."""
    global _configured
    if _configured == process:
        return
    _configured = process
    level = getattr(logging, settings.log.level.upper(), logging.INFO)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        _redact,
    ]
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=False)
        if settings.log.format == "console"
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[*shared, structlog.processors.EventRenamer("msg"), renderer]
        if settings.log.format != "console"
        else [*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processor=renderer,
            foreign_pre_chain=[
                structlog.stdlib.add_logger_name,
                *shared,
                *(
                    [structlog.processors.EventRenamer("msg")]
                    if settings.log.format != "console"
                    else []
                ),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(max(level, logging.INFO))
    for noisy in ("httpx", "httpcore", "asyncio", "docker", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    structlog.contextvars.bind_contextvars(process=process)
