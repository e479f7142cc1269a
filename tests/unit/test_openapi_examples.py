"""The OpenAPI document's examples are the ones the code writes, never values made up.

Litestar fills a response model's schema with examples of its own (polyfactory, from one
seeded random sequence) unless told not to: the served document said a command ran for
``-12447749.3`` seconds with exit code ``9397``. A frontend developer reading the document
takes an example for a real answer; only the examples written beside the handlers
(``gateway.http.docs``) and the models' own (``msgspec.Meta(examples=...)``) belong there.
"""

from __future__ import annotations

import json
from typing import Any

from litestar._openapi.schema_generation.examples import ExampleFactory
from litestar.serialization import encode_json

from gateway.app import create_app
from runner.settings import get_settings


def served_document() -> dict[str, Any]:
    """The document ``/schema/openapi.json`` serves (built in-process, no server)."""
    app = create_app(get_settings())
    document: dict[str, Any] = json.loads(encode_json(app.openapi_schema.to_schema()))
    return document


def test_the_document_is_the_same_whatever_seed_an_example_generator_is_given() -> None:
    # Given the document built with the example generator's own seed and with another one
    ExampleFactory.seed_random(10)
    first = served_document()
    ExampleFactory.seed_random(20_261_205)
    try:
        second = served_document()
    finally:
        ExampleFactory.seed_random(10)
    # Then they are the same: nothing in it was drawn at random
    assert first == second


def test_a_field_the_code_gives_no_example_has_none_and_written_ones_stay() -> None:
    document = served_document()
    schemas = document["components"]["schemas"]
    # A command's result has no example in the code: the document invents none for it
    for name, field in schemas["CommandResult"]["properties"].items():
        assert "examples" not in field and "example" not in field, name
    # while the examples written in the code are there: a model's own ...
    assert schemas["EventData"]["properties"]["projectId"]["examples"] == [
        "customer-123/project-abc"]
    # ... and the ones given beside a handler
    status = document["paths"]["/api/devteam/automation/status/{project}"]["get"]
    example = status["responses"]["200"]["content"]["application/json"]["examples"]
    assert [value["value"]["currentStage"] for value in example.values()] == ["VERIFY"]
