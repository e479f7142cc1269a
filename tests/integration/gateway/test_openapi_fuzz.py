"""The served OpenAPI document against a real gateway process, fuzzed with schemathesis.

Every operation gets its documented examples, the schema's coverage cases (valid and
invalid values at each boundary) and 50 generated cases, sent with an admin token to a
real gateway on this test's database, under every check schemathesis has
(``--checks all``): no 5xx, status codes, content types, headers and bodies as documented,
schema-valid data accepted and schema-invalid data rejected, a missing ``Authorization``
refused where the document asks for it, unsupported methods answered 405 with an
``Allow`` listing every method of the path, and so on. The sample project is registered
under the examples' project id, so the examples run real success paths (clone, task list,
branch, task edit, injection).

One setting, not an exclusion: ``positive_data_acceptance`` (ST202, "schema-valid data
rejected") also accepts 422 on the operations whose document lists a 422. In this API a
400 is the body against its schema (that must agree with the document, and does: the
check still fails on a 400), while a 422 is a refusal no schema can state because it
depends on the server's state or its operator's configuration: a ``repositoryUrl`` the
operator's per-customer policy refuses (``https://@host/`` carries user information), a
``replaceTaskId`` that is not an atomic task of the repository's ``tasks_list.md``, an
``Idempotency-Key`` reused with another body, query parameters each well-formed but
contradicting each other (the usage report's ``from`` after ``to``). The check's other
statuses are its defaults.

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
A second project holds an execution the fuzzer started; its project id, execution id, event
id and the fuzzer's user id are each drawn for half the cases of the operations that take
them (a schemathesis dictionary), so status, pause, resume, stop, the execution's detail,
its event and the user's lists answer for real, not only with 404s.
About 1,900 cases; one to three minutes on the shared machine.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest
from tests.integration.gateway.conftest import add_project, rows

from pipeline import commands
from pipeline.audit import Principal

ROOT = Path(__file__).resolve().parents[3]
SCHEMATHESIS = ROOT / ".venv" / "bin" / "schemathesis"
EXAMPLE_PROJECT = "customer-123/project-abc"
LIVE_PROJECT = "customer-123/project-live"
POSITIVE_STATUSES = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]
"""schemathesis' defaults for ``positive_data_acceptance`` (4.x)."""


def config_file(url: str, path: Path, known: dict[str, str]) -> Path:
    """A ``schemathesis.toml``: 422 is also an acceptable answer to schema-valid data on
    each operation that documents a 422 (see the module docstring); each path parameter
    of ``known`` takes that existing resource's value in half the cases, so the run
    reaches the operations' real answers, not only their 404s."""
    document = httpx.get(f"{url}/schema/openapi.json", timeout=30).json()
    lines = []
    for name, value in known.items():
        lines += [f"[dictionaries.{name}]", f'values = ["{value}"]', ""]
    lines += ["[parameters]"] + [
        f'"path.{name}" = {{ dictionary = "{name}", probability = 0.5 }}' for name in known
    ] + [""]
    for route, item in document["paths"].items():
        for method, operation in item.items():
            if "422" in operation.get("responses", {}):
                lines += ["[[operations]]", f'include-name = "{method.upper()} {route}"',
                          "checks.positive_data_acceptance.expected-statuses = "
                          + str([*POSITIVE_STATUSES, "422"]).replace("'", '"'), ""]
    assert lines, "no operation documents a 422"
    path.write_text("\n".join(lines))
    return path


@pytest.mark.slow
async def test_every_operation_passes_every_schemathesis_check(
    store, sample, procs, token_for, tmp_path
) -> None:
    # Given a gateway whose example project is the sample repository, and a project with
    # an execution started by the fuzzer (status, pause, resume, stop, the execution's
    # detail, its event and the fuzzer's lists have something real to answer)
    await add_project(store, EXAMPLE_PROJECT, sample.url)
    await add_project(store, LIVE_PROJECT, sample.url)
    started = await commands.start_execution(
        store, principal=Principal(user_id="fuzzer", correlation_id="fuzz"),
        project_id=LIVE_PROJECT)
    known = {"project": LIVE_PROJECT, "execution_id": str(started.execution_id),
             "event_id": str(started.event_id), "user_id": "fuzzer"}
    gateway = procs.gateway()
    token = token_for("fuzzer", [], role="admin")
    # When schemathesis runs every operation's examples, coverage and fuzzing cases
    result = subprocess.run(
        [
            str(SCHEMATHESIS), "--config-file", str(config_file(gateway.url,
                                                                tmp_path / "st.toml", known)),
            "run", f"{gateway.url}/schema/openapi.json",
            "--checks", "all",
            "--phases", "examples,coverage,fuzzing",
            "--max-examples", "50",
            "--workers", "1",
            "--exclude-path-regex", "^/(implement|verify)$",
            "--header", f"Authorization: Bearer {token}",
            "--request-timeout", "30",
        ],
        env={**os.environ, "SCHEMATHESIS_HOOKS": "tests.integration.gateway.fuzz_hooks",
             "DEVTEAM_FUZZ_REPOSITORY": sample.url, "PYTHONPATH": str(ROOT)},
        cwd=ROOT, capture_output=True, text=True, timeout=400, check=False,
    )
    # Then nothing failed
    report = result.stdout[-12000:] + result.stderr[-4000:]
    assert result.returncode == 0, f"{report}\n--- gateway log ---\n{gateway.output()[-4000:]}"
    assert " generated" in result.stdout and " passed" in result.stdout, report
    # and the cases reached the live execution's control actions, not only 404s
    actions = await rows(store, "SELECT DISTINCT action FROM audit_log WHERE project_id = :p",
                         p=LIVE_PROJECT)
    assert {"action": "execution.stop"} in actions, actions
