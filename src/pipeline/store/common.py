"""What every noun module shares: the connection type, JSON in and out, text, timestamps.

Postgres refuses NUL in ``text`` (``chr(0)``) and in ``jsonb`` (the escape ``\\u0000``
"cannot be converted to text"), and much of what the store writes is attacker-controlled
(the model's reply, the files it writes, as diffs and output). A NUL there would fail the
statement: a stage run's result never recorded, a log batch lost. So no NUL reaches
Postgres: :func:`dumps` writes U+FFFD for it in JSON, :func:`safe_text` in a text column.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import msgspec

Conn = Any
"""An ``asyncpg.Connection`` (asyncpg ships no type information)."""

_ENCODER = msgspec.json.Encoder()

_ESCAPES = re.compile(r"(\\\\)|\\u0000")
"""In JSON text, an escaped backslash (kept) or the escape of NUL (replaced). Matched left
to right, so a literal backslash followed by ``u0000`` (``\\\\u0000``) stays as it is."""


def _replace(match: re.Match[str]) -> str:
    return match.group(1) or "\\ufffd"


def dumps(value: Any) -> str:
    """A JSON parameter: asyncpg takes ``json``/``jsonb`` as text (our codec and
    SQLAlchemy's both encode ``str``). A NUL in a string is written as U+FFFD, which
    ``jsonb`` accepts (without one, as nearly always, this costs one substring search:
    about as long as encoding)."""
    encoded = _ENCODER.encode(value).decode()
    if "\\u0000" in encoded:
        encoded = _ESCAPES.sub(_replace, encoded)
    return encoded


def safe_text(value: str) -> str:
    """A ``text`` parameter of attacker-influenced content (an error's message), its NULs
    written as U+FFFD."""
    return value.replace("\x00", "\ufffd")


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
