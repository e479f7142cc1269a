"""How many live streams one user, and one customer, may hold open at once.

One user may hold ``gateway.streams_per_user`` streams, and the streams following one
customer (all its users together) ``gateway.streams_per_customer``. A stream counts for
the customers it follows: those of its ``projectId`` values, else those of its token's
grants; an admin's counts for its user only (an operator's stream must not use up a
customer's places, nor be refused because the customer's own users took them). One more
is refused with ``TooManyStreams`` (the route answers 429 or closes 1013), and every place
is given back exactly once, whichever way the stream ended. Each gateway process counts
on its own.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable
from typing import Protocol

from gateway.auth import Principal
from runner.settings import GatewaySettings

STREAMS_RETRY_AFTER = 10
"""Seconds a client refused for too many streams is told to wait (``Retry-After``)."""


class TooManyStreams(Exception):
    """A stream refused: its user, or a customer it follows, has as many open as allowed.

    ``detail`` names the limit; the client should retry after ``retry_after`` seconds
    (a place frees when one of the others closes)."""

    def __init__(self, detail: str, retry_after: int = STREAMS_RETRY_AFTER) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after


class Stream(Hashable, Protocol):
    """What the quota needs of a stream (the hub's ``Subscriber``)."""

    @property
    def principal(self) -> Principal: ...

    @property
    def projects(self) -> frozenset[str]: ...


def customers_of(stream: Stream) -> frozenset[str]:
    """The customers whose places ``stream`` takes (none for an admin's)."""
    if stream.principal.is_admin:
        return frozenset()
    if stream.projects:
        projects: list[str] = list(stream.projects)
        customers: list[str] = []
    else:
        exact, whole = stream.principal.scope()
        projects, customers = exact or [], whole or []
    return frozenset(p.split("/", 1)[0] for p in projects) | frozenset(customers)


class StreamQuota:
    """The open streams by user and by customer, against the gateway's limits."""

    def __init__(self, limits: GatewaySettings) -> None:
        self.limits = limits
        self.per_user: Counter[str] = Counter()
        """Open streams by user id."""
        self.per_customer: Counter[str] = Counter()
        """Open streams by customer followed."""
        self._taken: dict[Stream, tuple[str, frozenset[str]]] = {}
        """What each stream was counted against, so ``give_back`` returns exactly that."""

    def check(self, stream: Stream) -> None:
        """Raise ``TooManyStreams`` if ``stream`` would be one too many for its user or for
        a customer it follows."""
        per_user, per_customer = self.limits.streams_per_user, self.limits.streams_per_customer
        if self.per_user[stream.principal.user_id] >= per_user:
            raise TooManyStreams(f"try again later: this user has {per_user}"
                                 " live streams open, the most allowed")
        for customer in sorted(customers_of(stream)):
            if self.per_customer[customer] >= per_customer:
                raise TooManyStreams(
                    f"try again later: customer {customer} has "
                    f"{per_customer} live streams open, the most allowed")

    def take(self, stream: Stream) -> None:
        """Count ``stream`` against its user and customers (nothing counted when refused)."""
        self.check(stream)
        user, customers = stream.principal.user_id, customers_of(stream)
        self.per_user[user] += 1
        self.per_customer.update(customers)
        self._taken[stream] = (user, customers)

    def give_back(self, stream: Stream) -> None:
        """Return ``stream``'s places (idempotent)."""
        taken = self._taken.pop(stream, None)
        if taken is None:
            return
        user, customers = taken
        self.per_user[user] -= 1
        if self.per_user[user] <= 0:
            del self.per_user[user]
        for customer in customers:
            self.per_customer[customer] -= 1
            if self.per_customer[customer] <= 0:
                del self.per_customer[customer]
