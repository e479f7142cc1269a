"""Checking frames against an AsyncAPI document with the ``jsonschema`` library.

``asyncapi-3.0.0.schema.json`` beside this file is the official JSON Schema of AsyncAPI
3.0.0 (``schemas/3.0.0-without-$id.json`` of the npm package ``@asyncapi/specs`` 6.11.1,
Apache-2.0), kept here so the document's structure is checked offline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema

SPEC = Path(__file__).with_name("asyncapi-3.0.0.schema.json")


def spec_errors(document: dict[str, Any]) -> list[str]:
    """Where ``document`` breaks the official AsyncAPI 3.0.0 schema (empty when valid)."""
    schema = json.loads(SPEC.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}"
            for e in validator.iter_errors(document)]


def message_types(document: dict[str, Any], channel: str) -> dict[str, str]:
    """``{message id: frame type}`` of a channel's messages (the ``type`` its payload
    schema allows)."""
    out: dict[str, str] = {}
    for message in document["channels"][channel]["messages"]:
        payload = document["components"]["messages"][message]["payload"]["$ref"]
        schema = document["components"]["schemas"][payload.rsplit("/", 1)[-1]]
        (kind,) = schema["properties"]["type"]["enum"]
        out[message] = kind
    return out


def _validator(document: dict[str, Any], message: str) -> jsonschema.protocols.Validator:
    ref = document["components"]["messages"][message]["payload"]["$ref"]
    schema = {"$ref": ref, "components": document["components"]}
    cls = jsonschema.Draft7Validator  # AsyncAPI 3.0.0's schema object is draft 07's superset
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def check_frame(document: dict[str, Any], channel: str, frame: dict[str, Any]) -> str:
    """The id of the one message of ``channel`` that ``frame`` is; fails with every
    schema error when it is none of them (or more than one)."""
    candidates = [m for m, kind in message_types(document, channel).items()
                  if kind == frame.get("type")]
    assert candidates, f"no message of {channel} has type {frame.get('type')!r}: {frame}"
    matching, errors = [], []
    for message in candidates:
        found = [f"{message} {'/'.join(map(str, e.absolute_path))}: {e.message[:200]}"
                 for e in _validator(document, message).iter_errors(frame)]
        if found:
            errors += found
        else:
            matching.append(message)
    assert len(matching) == 1, (matching, errors, frame)
    return matching[0]
