"""Every validation problem of a JSON body, field by field.

msgspec stops at the first error; clients are owed all of them. ``collect_errors`` walks
the target Struct: unknown fields, missing required fields, and each present field
converted on its own (recursing into nested Structs), so one 400 names every bad field
with its JSON path.
"""

from __future__ import annotations

import types
import typing
from typing import Any, Union

import msgspec

_DECODER = msgspec.json.Decoder()


def collect_errors(target: Any, raw: bytes) -> list[dict[str, str]]:
    try:
        value = _DECODER.decode(raw)
    except msgspec.DecodeError:
        return [{"field": "", "message": "malformed JSON body"}]
    return _check(target, value, "")


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


def _check(annotation: Any, value: Any, path: str) -> list[dict[str, str]]:
    struct = _struct_of(annotation)
    if struct is None or not isinstance(value, dict):
        return _convert(annotation, value, path)
    info = msgspec.inspect.type_info(struct)
    assert isinstance(info, msgspec.inspect.StructType)
    known = {f.encode_name: f for f in info.fields}
    hints = typing.get_type_hints(struct, include_extras=True)
    errors = [
        {"field": _join(path, key), "message": "unknown field"}
        for key in value
        if key not in known and info.forbid_unknown_fields
    ]
    for name, field in known.items():
        where = _join(path, name)
        if name not in value:
            if field.required:
                errors.append({"field": where, "message": "required field is missing"})
            continue
        errors.extend(_check(hints[field.name], value[name], where))
    if not errors:
        errors = _convert(struct, value, path)  # cross-field rules in __post_init__
    return errors


def _convert(annotation: Any, value: Any, path: str) -> list[dict[str, str]]:
    try:
        msgspec.convert(value, annotation)
    except msgspec.ValidationError as exc:
        message, _, at = str(exc).partition(" - at `")
        at = at.rstrip("`")
        if at.startswith("key` in `"):  # a mapping's key: name the mapping
            at = at.removeprefix("key` in `")
            message = f"invalid key: {message}"
        field = (path + at.removeprefix("$")).lstrip(".")
        return [{"field": field, "message": message}]
    return []


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
