"""Bounds on what a repository can make the service store or send: pure functions.

A repository's commands print what they like, as fast and as long as they like, and the
service keeps some of it: log lines in the stream, command output in stage results and
``task_context``. Each of those goes through one of these functions on its way in, so its
size is bounded by a setting (``DEVTEAM_LIMITS_*``), and whatever was left out is said in a
marker a person reads where the text was, never silently:

- :func:`cut_line`: one log line, its head kept (``… 1,234 bytes cut …`` at its end);
- :func:`keep_tail`: a command's output, its end kept (what failed is usually last);
- :func:`bound_json`: a stage result or a context, its longest texts cut in the middle
  until the whole fits, then its longest lists;
- :class:`LogBudget`: lines and bytes per stage run; past it, lines are dropped and
  counted (:func:`limit_reached` once, :func:`lines_dropped` at the end).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

MIN_TEXT = 256
""":func:`bound_json` never cuts a text shorter than this (ids, hashes, branch names,
paths, short messages): a result stays usable by the stages that read it back."""


def count(n: int) -> str:
    """``12,345``."""
    return f"{n:,}"


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8", errors="replace"))


def head_bytes(text: str, limit: int) -> str:
    """The longest start of ``text`` that is at most ``limit`` UTF-8 bytes."""
    return text.encode("utf-8", errors="replace")[:limit].decode("utf-8", errors="ignore")


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, an ellipsis marking the cut (for a value
    quoted in a message)."""
    return text if len(text) <= limit else text[:limit] + "…"


def cut_line(text: str, limit: int) -> str:
    """``text`` if it is at most ``limit`` UTF-8 bytes; else its start and a marker."""
    size = utf8_len(text)
    if size <= limit:
        return text
    head = head_bytes(text, limit)
    return f"{head} … {count(size - utf8_len(head))} bytes cut (limit {count(limit)} per line)"


def keep_tail(text: str, limit: int, *, what: str = "command") -> str:
    """``text`` if it is at most ``limit`` UTF-8 bytes; else a marker line and its end
    (from a line start when one is near, so the first kept line is whole)."""
    raw = text.encode("utf-8", errors="replace")
    if len(raw) <= limit:
        return text
    tail = raw[len(raw) - limit:]
    newline = tail.find(b"\n")
    if 0 <= newline < len(tail) // 2:
        tail = tail[newline + 1:]
    kept = tail.decode("utf-8", errors="ignore")
    dropped = len(raw) - utf8_len(kept)
    return (f"… {count(dropped)} bytes of output dropped (limit {count(limit)} bytes kept "
            f"per {what}) …\n{kept}")


def cut_middle(text: str, keep: int, *, what: str) -> str:
    """``text`` if it has at most ``keep`` characters; else its start and end around a
    marker that says how much was left out and why."""
    if len(text) <= keep:
        return text
    head = keep // 2
    tail = keep - head
    dropped = len(text) - keep
    return (f"{text[:head]}\n… {count(dropped)} characters dropped (limit {what}) …\n"
            f"{text[len(text) - tail:]}")


def json_size(value: Any) -> int:
    """Bytes of ``value`` as JSON (what Postgres and a client get)."""
    return len(msgspec.json.encode(value))


def _longest(value: Any) -> tuple[int, int]:
    """The longest text and the longest list anywhere in ``value``."""
    if isinstance(value, str):
        return len(value), 0
    if isinstance(value, Mapping):
        parts = [_longest(v) for v in value.values()]
    elif isinstance(value, list | tuple):
        parts = [_longest(v) for v in value]
        parts.append((0, len(value)))
    else:
        return 0, 0
    return (max((p[0] for p in parts), default=0), max((p[1] for p in parts), default=0))


def _shrink(value: Any, text_cap: int, item_cap: int | None, what: str) -> Any:
    if isinstance(value, str):
        return cut_middle(value, text_cap, what=what)
    if isinstance(value, Mapping):
        return {k: _shrink(v, text_cap, item_cap, what) for k, v in value.items()}
    if isinstance(value, list | tuple):
        items = [_shrink(v, text_cap, item_cap, what) for v in value[:item_cap]]
        if item_cap is not None and len(value) > item_cap:
            items.append(f"… {count(len(value) - item_cap)} items dropped (limit {what}) …")
        return items
    return value


def _largest_fitting(low: int, high: int, fits: Any) -> int | None:
    """The largest ``n`` in ``[low, high]`` with ``fits(n)`` (monotonic), or None."""
    if not fits(low):
        return None
    while low < high:
        mid = (low + high + 1) // 2
        if fits(mid):
            low = mid
        else:
            high = mid - 1
    return low


def bound_json(value: Any, limit: int, *, what: str) -> Any:
    """``value`` (JSON-like: dicts, lists, texts, numbers) at most ``limit`` bytes as JSON.

    Unchanged when it fits. Otherwise every text longer than one cap is cut in the middle
    (the largest cap that makes it fit, never below ``MIN_TEXT``); if that is not enough,
    every list is also cut to its first items; if even that is not enough, a mapping keeps
    its first short scalar fields that fit and says it was truncated. Each cut carries a
    marker naming ``what`` (e.g. ``"524,288 bytes per stage result"``).
    """
    size = json_size(value)
    if size <= limit:
        return value
    longest_text, longest_list = _longest(value)

    def with_texts(cap: int) -> bool:
        return json_size(_shrink(value, cap, None, what)) <= limit

    cap = _largest_fitting(MIN_TEXT, max(MIN_TEXT, longest_text), with_texts)
    if cap is not None:
        return _shrink(value, cap, None, what)

    def with_items(items: int) -> bool:
        return json_size(_shrink(value, MIN_TEXT, items, what)) <= limit

    items = _largest_fitting(0, max(0, longest_list), with_items)
    if items is not None:
        return _shrink(value, MIN_TEXT, items, what)
    note = f"… {count(size)} bytes truncated (limit {what}) …"
    if isinstance(value, Mapping):
        fallback: dict[str, Any] = {"truncated": note}
        room = limit - json_size(fallback)
        for key, item in value.items():  # its short scalars, first ones first, while they fit
            short = isinstance(item, bool | int | float | None) or (
                isinstance(item, str) and len(item) <= MIN_TEXT)
            cost = json_size(key) + json_size(item) + 2  # "key":value,
            if short and cost <= room and key not in fallback:
                fallback[key] = item
                room -= cost
        return fallback
    return note


# --------------------------------------------------------------------------- log budget
@dataclass(frozen=True)
class LogLimits:
    """What one stage run may add to the stream (``DEVTEAM_LIMITS_LOG_*``)."""

    lines: int = 5000
    bytes: int = 2 * 1024 * 1024
    line_bytes: int = 2000


class LogBudget:
    """Counts a stage run's output lines against :class:`LogLimits`.

    ``admit`` says whether a line (already cut to ``line_bytes``) still fits; once one
    does not, every later line is dropped too (the stream must not show an output with
    holes in it) and counted in ``dropped``.
    """

    def __init__(self, limits: LogLimits) -> None:
        self.limits = limits
        self.lines = 0
        self.bytes = 0
        self.dropped = 0
        self.reason: str | None = None
        """Which limit stopped the output (``5,000 lines per stage``), once one has."""

    def admit(self, size: int) -> bool:
        """Whether a line of ``size`` UTF-8 bytes is kept (False: dropped and counted)."""
        if self.reason is None:
            if self.lines + 1 > self.limits.lines:
                self.reason = f"{count(self.limits.lines)} lines per stage"
            elif self.bytes + size > self.limits.bytes:
                self.reason = f"{count(self.limits.bytes)} bytes of output per stage"
        if self.reason is not None:
            self.dropped += 1
            return False
        self.lines += 1
        self.bytes += size
        return True


def limit_reached(reason: str) -> str:
    """The line the stream shows once, where the output stops."""
    return f"… output limit reached (limit {reason}): further lines are dropped and counted …"


def lines_dropped(dropped: int, reason: str) -> str:
    """The line the stream shows at the stage's end."""
    noun = "line" if dropped == 1 else "lines"
    return f"… {count(dropped)} {noun} dropped (limit {reason}) …"
