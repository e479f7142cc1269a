"""The served OpenAPI document against a real gateway process, fuzzed with schemathesis.

Every operation gets its documented examples, the schema's coverage cases (valid and
invalid values at each boundary) and 20 generated cases, sent with an admin token to a
real gateway on this test's database. Checks: no 5xx (``not_a_server_error``) and every
response as documented (``response_schema_conformance``: status, content type, body).
The sample project is registered under the examples' project id, so the examples run
real success paths (clone, task list, branch, task edit, injection).

schemathesis' own pytest plugin (``from_fixture``) does not work with pytest 9 (it sets
``Node._nodeid``), so the run uses its CLI, the documented entry point; its report is
shown when the test fails.

Not fuzzed, on purpose: ``POST /implement`` and ``POST /verify`` (each case would run real
Aider or a real container, ~10 s; ``test_core.py`` covers them) and the live stream
(``/ws/devteam``, ``/api/devteam/stream``: endless responses, not in the schema).
The stateful phase is off to keep the run short; the examples phase covers the links.
One worker: schemathesis' coverage phase builds Hypothesis strategies whose descriptions
call ``ast.parse``, which on CPython 3.11.7 fails now and then with "AST constructor
recursion depth mismatch" when two threads parse at once (CPython gh-106905).
About 1,000 cases; 30-70 s on the shared machine.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.integration.gateway.conftest import add_project

ROOT = Path(__file__).resolve().parents[3]
SCHEMATHESIS = ROOT / ".venv" / "bin" / "schemathesis"
EXAMPLE_PROJECT = "customer-123/project-abc"


async def test_every_operation_answers_without_5xx_and_as_documented(
    store, sample, procs, token_for
) -> None:
    # Given a gateway whose example project is the sample repository
    await add_project(store, EXAMPLE_PROJECT, sample.url)
    gateway = procs.gateway()
    token = token_for("fuzzer", [], role="admin")
    # When schemathesis runs every operation's examples, coverage and fuzzing cases
    result = subprocess.run(
        [
            str(SCHEMATHESIS), "run", f"{gateway.url}/schema/openapi.json",
            "--checks", "not_a_server_error,response_schema_conformance",
            "--phases", "examples,coverage,fuzzing",
            "--max-examples", "20",
            "--workers", "1",
            "--exclude-path-regex", "^/(implement|verify)$",
            "--header", f"Authorization: Bearer {token}",
            "--request-timeout", "30",
        ],
        env={**os.environ, "SCHEMATHESIS_HOOKS": "tests.integration.gateway.fuzz_hooks",
             "DEVTEAM_FUZZ_REPOSITORY": sample.url, "PYTHONPATH": str(ROOT)},
        cwd=ROOT, capture_output=True, text=True, timeout=170, check=False,
    )
    # Then nothing failed
    report = result.stdout[-12000:] + result.stderr[-4000:]
    assert result.returncode == 0, f"{report}\n--- gateway log ---\n{gateway.output()[-4000:]}"
    assert " generated" in result.stdout and " passed" in result.stdout, report
