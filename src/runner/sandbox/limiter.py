"""``FairLimiter``: at most N task containers at once, at most M per customer, fairly.

Waiters queue per customer; whenever a slot frees, it goes to the waiting customer served
least recently (round-robin), so a customer with fifty waiting tasks gets one slot, then
the next customer gets one, and so on. Within a customer, waiters are served first come,
first served. In-process only: each
worker process bounds its own containers (the global bound is per worker).

A waiter hears of its wait (``on_wait``) when it starts waiting, every
``WAIT_REPORT_SECONDS`` after, and when it gets its slot.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from runner.errors import TransientError
from runner.ports import SlotWait

WAIT_REPORT_SECONDS = 60.0
"""How often a waiter hears again that it is still waiting (after the first report)."""


@dataclass(eq=False)
class _Ticket:
    customer: str
    holder: str
    granted: bool = False


class FairLimiter:
    """The ``SlotLimiter`` port (see ``runner.ports``), thread-safe."""

    def __init__(self, global_limit: int, per_customer_limit: int) -> None:
        if global_limit < 1 or per_customer_limit < 1:
            raise ValueError("limits must be at least 1")
        self.global_limit = global_limit
        self.per_customer_limit = per_customer_limit
        self._cond = threading.Condition()
        self._holders: dict[str, str] = {}
        """holder → customer of every granted slot."""
        self._running: dict[str, int] = {}
        self._queues: dict[str, deque[_Ticket]] = {}
        self._turn: list[str] = []
        """Customers with waiters, in the order they started waiting."""
        self._served: dict[str, int] = {}
        """Customer → sequence number of its latest grant (lower: served longer ago)."""
        self._grants = 0

    def acquire(
        self,
        customer_id: str,
        holder: str,
        timeout: float | None = None,
        *,
        execution_id: str | None = None,
        on_wait: Callable[[SlotWait], None] | None = None,
    ) -> None:
        """Take a slot for ``holder`` (a container name), waiting for one at most ``timeout``.

        Acquiring again for a holder that has a slot returns at once. Raises
        ``TransientError`` when the wait times out. ``on_wait`` hears of the wait (see
        ``WAIT_REPORT_SECONDS``); ``execution_id`` is not needed in-process.
        """
        del execution_id
        with self._cond:
            if holder in self._holders:
                return
            ticket = _Ticket(customer_id, holder)
            self._queues.setdefault(customer_id, deque()).append(ticket)
            if customer_id not in self._turn:
                self._turn.append(customer_id)
            self._dispatch()
            started = time.monotonic()
            deadline = None if timeout is None else started + timeout
            report_at = started
            last: SlotWait | None = None
            while not ticket.granted:
                now = time.monotonic()
                remaining = None if deadline is None else deadline - now
                if remaining is not None and remaining <= 0:
                    self._withdraw(ticket)
                    raise TransientError(
                        f"no sandbox slot for customer {customer_id} within {timeout:.0f}s",
                        details={"customer": customer_id, "running": self.running(customer_id)},
                    )
                if on_wait is not None and now >= report_at:
                    last = self._wait(ticket, now - started)
                    on_wait(last)
                    report_at = now + WAIT_REPORT_SECONDS
                until_report = None if on_wait is None else max(0.0, report_at - now)
                self._cond.wait(_least(remaining, until_report))
            if on_wait is not None and last is not None:
                on_wait(msgspec.structs.replace(
                    last, granted=True, seconds=time.monotonic() - started))

    def placed(self, holder: str) -> None:
        """Nothing to do: in-process slots go only with ``release``."""

    def release(self, holder: str) -> None:
        """Give back ``holder``'s slot; nothing happens when it holds none."""
        with self._cond:
            customer = self._holders.pop(holder, None)
            if customer is None:
                return
            self._running[customer] -= 1
            if not self._running[customer]:
                del self._running[customer]
            self._dispatch()

    def running(self, customer_id: str | None = None) -> int:
        """Slots held, by one customer or in total."""
        with self._cond:
            if customer_id is None:
                return len(self._holders)
            return self._running.get(customer_id, 0)

    def waiting(self) -> int:
        """Waiters queued across all customers."""
        with self._cond:
            return sum(len(q) for q in self._queues.values())

    # -- under the lock ---------------------------------------------------------
    def _dispatch(self) -> None:
        granted = False
        while len(self._holders) < self.global_limit:
            customer = self._next_customer()
            if customer is None:
                break
            ticket = self._queues[customer].popleft()
            ticket.granted = True
            self._holders[ticket.holder] = customer
            self._running[customer] = self._running.get(customer, 0) + 1
            self._grants += 1
            self._served[customer] = self._grants
            if not self._queues[customer]:
                del self._queues[customer]
                self._turn.remove(customer)
            granted = True
        if granted:
            self._cond.notify_all()

    def _next_customer(self) -> str | None:
        eligible = [c for c in self._turn if self._running.get(c, 0) < self.per_customer_limit]
        # min() keeps the first of equals: ties go to whoever started waiting first.
        return min(eligible, key=lambda c: self._served.get(c, 0), default=None)

    def _wait(self, ticket: _Ticket, seconds: float) -> SlotWait:
        queue = self._queues.get(ticket.customer) or deque()
        return SlotWait(
            customer_id=ticket.customer,
            holder=ticket.holder,
            seconds=seconds,
            position=queue.index(ticket) + 1 if ticket in queue else 1,
            waiting=sum(len(q) for q in self._queues.values()),
            customer_running=self._running.get(ticket.customer, 0),
            customer_limit=self.per_customer_limit,
            running=len(self._holders),
            limit=self.global_limit,
        )

    def _withdraw(self, ticket: _Ticket) -> None:
        queue = self._queues.get(ticket.customer)
        if queue is None or ticket not in queue:
            return
        queue.remove(ticket)
        if not queue:
            del self._queues[ticket.customer]
            self._turn.remove(ticket.customer)


def _least(*values: float | None) -> float | None:
    """The smallest of the given bounds (None: no bound)."""
    bounds = [v for v in values if v is not None]
    return min(bounds) if bounds else None
