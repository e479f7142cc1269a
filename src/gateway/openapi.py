"""The OpenAPI document served at ``/schema``, as close to the real validation as it gets.

Litestar documents a msgspec Struct's fields and their constraints but not that unknown
fields are rejected; ``StrictStructSchemaPlugin`` adds ``additionalProperties: false`` to
every Struct declared with ``forbid_unknown_fields``, so generated clients and fuzzers see
the same contract the gateway enforces.

Litestar also drops the constraints of list items, mapping keys and values (``files``
items ``minLength: 1``, ``dependencies`` items' pattern, ``criteria``'s sizes), so
``finish_document`` replaces every request body's schema with msgspec's own JSON Schema of
the Struct the gateway decodes it with (the validator's rules, by construction), plus the
cross-field rules a Struct's ``__post_init__`` enforces (its ``openapi_extra``). Routes
that need no token (no ``http.NEEDS_TOKEN`` in their ``opt``: ``/health``,
``/health/live``) are documented with ``security: []``. Patterns are Python's and must
read the same in ECMA 262, the dialect of the document (no ``\\Z``, no lookbehind, no
``\\s``/``\\d``/``\\w``, no line terminator where ``.`` or ``$`` could meet one); a test
compares both dialects on the served document.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Litestar
from litestar._openapi.plugin import OpenAPIPlugin
from litestar._openapi.schema_generation import SchemaCreator
from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, OpenAPI, Operation, Schema, SecurityScheme
from litestar.routes import HTTPRoute
from litestar.typing import FieldDefinition

REF = "#/components/schemas/{name}"


class StrictStructSchemaPlugin(StructSchemaPlugin):
    """Litestar's Struct schema plus ``additionalProperties: false`` where it holds."""

    def to_openapi_schema(
        self, field_definition: FieldDefinition, schema_creator: SchemaCreator
    ) -> Schema:
        schema = super().to_openapi_schema(field_definition, schema_creator)
        info = msgspec.inspect.type_info(field_definition.type_)
        if isinstance(info, msgspec.inspect.StructType) and info.forbid_unknown_fields:
            schema.additional_properties = False
        return schema


def openapi_config() -> OpenAPIConfig:
    """``/schema`` (JSON at ``/schema/openapi.json``), bearer JWT on every operation."""
    return OpenAPIConfig(
        title="DevTeam Runner",
        version="1.0.0",
        description="Runs a repository's task list autonomously and streams every step.",
        path="/schema",
        components=Components(
            security_schemes={
                "bearer": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT")
            }
        ),
        security=[{"bearer": []}],
    )


def finish_document(app: Litestar, needs_token: str) -> OpenAPI:
    """Bring ``app``'s OpenAPI document in line with the validator (see the module
    docstring) before it is first served or exported; ``needs_token`` is the ``opt`` key
    that makes a route need a token. Changes the document object itself, so what
    ``/schema/openapi.json`` serves and what ``app.openapi_schema.to_schema()`` exports
    are the same."""
    document = app.plugins.get(OpenAPIPlugin).provide_openapi()
    bodies: list[type[msgspec.Struct]] = []
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            if handler.include_in_schema is False:
                continue
            data = handler.parsed_fn_signature.parameters.get("data")
            if data is not None and isinstance(data.type_, type) and issubclass(
                    data.type_, msgspec.Struct):
                bodies.append(data.type_)
            if handler.opt.get(needs_token):
                continue
            item = (document.paths or {}).get(route.path_format)
            for method in handler.http_methods:
                operation = getattr(item, method.lower(), None)
                if isinstance(operation, Operation):
                    operation.security = []
    _, components = msgspec.json.schema_components(bodies, ref_template=REF)
    structs = {info.cls.__name__: info.cls for info in _structs(bodies)}
    schemas: dict[str, Any] = {} if document.components.schemas is None else dict(
        document.components.schemas)
    for name, schema in components.items():
        extra = getattr(structs.get(name), "openapi_extra", None)
        schemas[name] = {**schema, **(extra or {})}
    document.components.schemas = schemas
    return document


def _structs(types: list[type[msgspec.Struct]]) -> list[msgspec.inspect.StructType]:
    """Every Struct reachable from ``types`` (nested bodies, list items, optional fields)."""
    found: dict[type[Any], msgspec.inspect.StructType] = {}

    def walk(info: msgspec.inspect.Type) -> None:
        if isinstance(info, msgspec.inspect.StructType):
            if info.cls in found:
                return
            found[info.cls] = info
            for f in info.fields:
                walk(f.type)
        elif isinstance(info, msgspec.inspect.UnionType):
            for t in info.types:
                walk(t)
        elif isinstance(info, (msgspec.inspect.ListType, msgspec.inspect.SetType,
                               msgspec.inspect.FrozenSetType, msgspec.inspect.VarTupleType)):
            walk(info.item_type)
        elif isinstance(info, msgspec.inspect.DictType):
            walk(info.value_type)

    for info in msgspec.inspect.multi_type_info(types):
        walk(info)
    return list(found.values())
