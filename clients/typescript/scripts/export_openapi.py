"""Write the gateway's OpenAPI document (what it serves at /schema/openapi.json) to a file.

Built from the application object in-process (no database, no server): the same
``create_app()`` the gateway runs, so the document is the one the gateway serves. Keys are
sorted so the file is stable.

    .venv/bin/python clients/typescript/scripts/export_openapi.py clients/typescript/openapi.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def document() -> dict[str, object]:
    from litestar.serialization import encode_json

    from gateway.app import create_app
    from runner.settings import get_settings

    app = create_app(get_settings())
    doc: dict[str, object] = json.loads(encode_json(app.openapi_schema.to_schema()))
    return doc


def render() -> str:
    return json.dumps(document(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: export_openapi.py OUTPUT.json")
    Path(sys.argv[1]).write_text(render(), encoding="utf-8")
