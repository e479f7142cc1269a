"""The OpenAPI document served at ``/schema``, as close to the real validation as it gets.

Litestar documents a msgspec Struct's fields and their constraints but not that unknown
fields are rejected; ``StrictStructSchemaPlugin`` adds ``additionalProperties: false`` to
every Struct declared with ``forbid_unknown_fields``, so generated clients and fuzzers see
the same contract the gateway enforces.
"""

from __future__ import annotations

import msgspec
from litestar._openapi.schema_generation import SchemaCreator
from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, Schema, SecurityScheme
from litestar.typing import FieldDefinition


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
