"""Cancelling a running stage: first ask, then, after a grace, cancel its task outright.

A stop (or a lost lease) sets the run's ``threading.Event``: tools that run a process
(Aider, a container's command) poll it and kill their process, and the handler returns
``cancelled``. A handler that does not return within the grace has its asyncio task
cancelled. Pure: the caller passes the time in (``time.monotonic()``).
"""

from __future__ import annotations

import threading

from pipeline.lifecycle import TERMINAL, Stage, Status

CANCEL_GRACE_SECONDS = 5.0


def should_cancel(execution_status: str | None, *, lost: bool, stage: str = "") -> bool:
    """Whether a running stage must stop: its lease is lost (another worker owns the run
    now) or its execution is stopping or already ended. FINALIZE is what carries a stop
    out: only a lost lease stops it."""
    if lost:
        return True
    if stage == Stage.FINALIZE:
        return False
    return execution_status in (Status.STOPPING, *TERMINAL)


class Cancellation:
    """The stop request of one stage run."""

    def __init__(
        self, event: threading.Event | None = None, *, grace: float = CANCEL_GRACE_SECONDS
    ) -> None:
        self.event = event if event is not None else threading.Event()
        self.grace = grace
        self.deadline: float | None = None

    def request(self, now: float) -> bool:
        """Ask the running step to stop; True if this call asked (the first request)."""
        if self.event.is_set():
            return False
        self.event.set()
        self.deadline = now + self.grace
        return True

    def overdue(self, now: float) -> bool:
        """Whether the grace after the request is over (cancel the task outright)."""
        return self.deadline is not None and now >= self.deadline


__all__ = ["CANCEL_GRACE_SECONDS", "Cancellation", "should_cancel"]
