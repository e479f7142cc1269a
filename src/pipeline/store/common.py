"""What every noun module shares: the connection type, JSON in and out, timestamps."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

Conn = Any
"""An ``asyncpg.Connection`` (asyncpg ships no type information)."""

_ENCODER = msgspec.json.Encoder()


def dumps(value: Any) -> str:
    """A JSON parameter: asyncpg takes ``json``/``jsonb`` as text (our codec and
    SQLAlchemy's both encode ``str``)."""
    return _ENCODER.encode(value).decode()


def loads(value: Any) -> Any:
    """A ``jsonb`` column as read: already decoded by the connection's codec, or text."""
    if isinstance(value, str | bytes):
        return msgspec.json.decode(value)
    return value


def iso(ts: datetime) -> str:
    """ISO 8601 UTC with ``Z`` and milliseconds (as read, a timestamp is in UTC already:
    ``isoformat`` is a third of ``strftime``'s cost, and every frame and view pays it)."""
    if ts.tzinfo is not UTC:
        ts = ts.astimezone(UTC)
    return ts.isoformat(timespec="milliseconds")[:-6] + "Z"
