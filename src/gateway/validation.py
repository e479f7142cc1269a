"""Every validation problem of a JSON body, field by field, up to a limit.

msgspec stops at the first error; clients are owed all of them. ``collect_errors`` walks
the target Struct: unknown fields, missing required fields, and each present field
converted on its own (recursing into nested Structs), so one 400 names every bad field
with its JSON path.

"Every" is bounded: a 1 MB body can hold 100,000 unknown keys, and naming each would cost
a 5 MB answer. The first ``MAX_ERRORS`` are listed and the rest only counted (``listing``
adds one last entry saying how many more there were), and what a client sent is echoed
cut short (``clip``, ``echo``): a field name to ``ECHO_CHARS``, a message to
``MESSAGE_CHARS``.
"""

from __future__ import annotations

import types
import typing
from typing import Any, NamedTuple, Union

import msgspec

from runner import limits

_DECODER = msgspec.json.Decoder()

MAX_ERRORS = 20
"""Errors one problem lists at most; past it one last entry says how many more there were."""
ECHO_CHARS = 100
"""A client's value (an unknown field's name, a query parameter) is echoed cut to this."""
FIELD_CHARS = 200
"""An error's ``field`` (a JSON path) is cut to this."""
MESSAGE_CHARS = 200
"""An error's ``message`` is cut to this (msgspec's quote the bad value whole)."""


def clip(text: str, limit: int = ECHO_CHARS) -> str:
    """``text`` cut to ``limit`` characters, an ellipsis marking the cut."""
    return limits.clip(text, limit)


def echo(value: str, limit: int = ECHO_CHARS) -> str:
    """``value`` quoted as a problem names it: its ``repr`` (control characters escaped)
    of at most ``limit`` characters of it, an ellipsis after the quote when cut."""
    return repr(value[:limit]) + ("…" if len(value) > limit else "")


class FieldErrors(NamedTuple):
    """What ``collect_errors`` found: the first ones, and how many more were only counted."""

    listed: list[dict[str, str]]
    omitted: int


class _Found:
    """Errors found so far: the first ``limit`` listed (cut short), the rest counted."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.listed: list[dict[str, str]] = []
        self.omitted = 0

    @property
    def total(self) -> int:
        return len(self.listed) + self.omitted

    def add(self, field: str, message: str) -> None:
        if len(self.listed) < self.limit:
            self.listed.append({"field": clip(field, FIELD_CHARS),
                                "message": clip(message, MESSAGE_CHARS)})
        else:
            self.omitted += 1

    def unknown(self, path: str, keys: list[str]) -> None:
        """Unknown fields: only as many names built as will be listed."""
        room = max(0, self.limit - len(self.listed))
        for key in keys[:room]:
            self.add(_join(path, clip(key)), "unknown field")
        self.omitted += max(0, len(keys) - room)


def collect_errors(target: Any, raw: bytes, *, limit: int = MAX_ERRORS) -> FieldErrors:
    """Every problem of ``raw`` as a ``target``: the first ``limit`` listed, the rest counted."""
    try:
        value = _DECODER.decode(raw)
    except msgspec.DecodeError:
        return FieldErrors([{"field": "", "message": "malformed JSON body"}], 0)
    found = _Found(limit)
    _check(target, value, "", found)
    return FieldErrors(found.listed, found.omitted)


def listing(errors: list[dict[str, str]], omitted: int = 0,
            limit: int = MAX_ERRORS) -> list[dict[str, str]]:
    """A problem's ``errors``: at most ``limit`` of ``errors``, then, when some were left
    out (``omitted`` besides those past ``limit``), one entry (``field`` empty) saying how
    many. Entries keep the ``{field, message}`` shape clients type them with."""
    more = omitted + max(0, len(errors) - limit)
    if not more:
        return errors[:limit]
    return [*errors[:limit], {"field": "", "message": (
        f"{more} more error{'s' if more > 1 else ''} not listed (at most {limit} are)")}]


def _struct_of(annotation: Any) -> type[msgspec.Struct] | None:
    """The Struct inside ``annotation`` (``S``, ``S | None``), or None."""
    if isinstance(annotation, type) and issubclass(annotation, msgspec.Struct):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        structs = [a for a in typing.get_args(annotation) if _struct_of(a) is not None]
        if len(structs) == 1:
            return _struct_of(structs[0])
    if origin is typing.Annotated:
        return _struct_of(typing.get_args(annotation)[0])
    return None


def _check(annotation: Any, value: Any, path: str, found: _Found) -> None:
    struct = _struct_of(annotation)
    if struct is None or not isinstance(value, dict):
        _convert(annotation, value, path, found)
        return
    info = msgspec.inspect.type_info(struct)
    assert isinstance(info, msgspec.inspect.StructType)
    known = {f.encode_name: f for f in info.fields}
    hints = typing.get_type_hints(struct, include_extras=True)
    before = found.total
    if info.forbid_unknown_fields:
        found.unknown(path, [key for key in value if key not in known])
    for name, field in known.items():
        where = _join(path, name)
        if name not in value:
            if field.required:
                found.add(where, "required field is missing")
            continue
        _check(hints[field.name], value[name], where, found)
    if found.total == before:
        _convert(struct, value, path, found)  # cross-field rules in __post_init__


def _convert(annotation: Any, value: Any, path: str, found: _Found) -> None:
    try:
        msgspec.convert(value, annotation)
    except msgspec.ValidationError as exc:
        message, at = str(exc), ""
        if " - at `" in message:  # the last one: msgspec appends it after the bad value
            message, _, at = message.rpartition(" - at `")
            at = at.rstrip("`")
        if at.startswith("key` in `"):  # a mapping's key: name the mapping
            at = at.removeprefix("key` in `")
            message = f"invalid key: {message}"
        found.add((path + at.removeprefix("$")).lstrip("."), message)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
