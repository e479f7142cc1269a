"""Write the gateway's contract documents into a folder: ``openapi.json`` (what it serves at
/schema/openapi.json) and ``asyncapi.json`` (the live stream's, /schema/asyncapi.json).

Both are built in-process from the code the gateway runs (``create_app()``'s OpenAPI
schema, ``gateway.asyncapi.document()``): no database, no server. Keys are sorted so the
files are stable. The OpenAPI copy leaves out ``examples`` (the ones written beside the
handlers and in the models; Litestar makes up none, see ``gateway.http.docs``): types need
none, and without them the copy changes only when the contract does.

    .venv/bin/python clients/typescript/scripts/export_documents.py clients/typescript
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def openapi() -> dict[str, object]:
    from litestar.serialization import encode_json

    from gateway.app import create_app
    from runner.settings import get_settings

    app = create_app(get_settings())
    served = json.loads(encode_json(app.openapi_schema.to_schema()))
    doc: dict[str, object] = without_examples(served)
    return doc


def without_examples(node: Any) -> Any:
    """``node`` without ``example``/``examples`` members (a schema's ``properties`` keeps
    every field, whatever its name)."""
    if isinstance(node, list):
        return [without_examples(item) for item in node]
    if not isinstance(node, dict):
        return node
    return {key: ({name: without_examples(schema) for name, schema in value.items()}
                  if key == "properties" and isinstance(value, dict) else without_examples(value))
            for key, value in node.items() if key not in ("example", "examples")}


def asyncapi() -> dict[str, object]:
    from gateway.asyncapi import document

    doc: dict[str, object] = json.loads(json.dumps(document()))
    return doc


def render(doc: dict[str, object]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write(folder: Path) -> None:
    (folder / "openapi.json").write_text(render(openapi()), encoding="utf-8")
    (folder / "asyncapi.json").write_text(render(asyncapi()), encoding="utf-8")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: export_documents.py FOLDER")
    write(Path(sys.argv[1]))
