"""Real projects through the whole pipeline: dependencies installed for real, cached, used.

Two small public projects (``tests/fixtures_projects``, see its README for where they come
from) run a two-task list each with the scripted model and the real relay, worker, Aider,
Docker and egress proxy: ``is-number`` needs ``mocha`` from the npm registry (``npm ci``),
``python-slugify`` needs ``text-unidecode`` from PyPI (``pip install -e .``). The first
task's SETUP installs through the allowlisting proxy; the second task's is a cache hit; each
task's VERIFY runs the project's own tests offline with the cached environment mounted.

Then two ways the environment, not the code, is at fault, each ending in a pause for a
person, classified ``environment``, with no model call spent on it: a requirements file
whose index is not on the allowlist (setup blocked, reported with host and command), and a
project whose tests import a package it never declares (verification fails once; no second
round, no error-resolution task).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from tests.e2e.checks import containers_of, frames, remote_task_list, stage_runs
from tests.e2e.conftest import start, wait_status
from tests.support.settings import use_settings

from devtools.demo.sample import create_sample
from devtools.scripted_model import ScriptedModelServer, parse_script

pytestmark = [pytest.mark.docker, pytest.mark.slow]

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures_projects"
END = {"paused", "completed", "error", "stopped"}


def project_files(name: str, **extra: str) -> dict[str, str]:
    root = FIXTURES / name
    files = {p.relative_to(root).as_posix(): p.read_text()
             for p in sorted(root.rglob("*")) if p.is_file()}
    return {**files, **extra}


def toml_string(value: str) -> str:
    return '"""' + value.replace("\\", "\\\\").replace('"""', '\\"""') + '"""'


def model_script(tasks: dict[str, dict[str, str]]) -> str:
    """Scripted answers: for each task id, whole-file edits."""
    parts = []
    for task_id, edits in tasks.items():
        parts.append(f'[tasks."{task_id}"]\nedit_format = "whole"\n'
                     f'reply = "Implementing task {task_id}."\n')
        for path, content in edits.items():
            parts.append(f'[[tasks."{task_id}".edits]]\npath = "{path}"\n'
                         f"content = {toml_string(content)}\n")
    return "\n".join(parts)


def task_list(title: str, first: tuple[str, str], second: tuple[str, str]) -> str:
    return (f"# {title}\n\nPhase 1: Helpers (Dependencies: [])\n\n"
            f"- 1.1 {first[0]} (Dependencies: [])\n  • files: {first[1]}\n"
            f"- 1.2 {second[0]} (Dependencies: [1.1])\n  • files: {second[1]}\n")


# ------------------------------------------------------------------------------ is-number
IS_NUMBER_TEST = (FIXTURES / "is-number" / "test.js").read_text()
INTEGER = ("'use strict';\n\nvar isNumber = require('./');\n\n"
           "module.exports = function isInteger(num) {\n"
           "  return isNumber(num) && Number.isInteger(Number(num));\n};\n")
INTEGER_TEST = ("\ndescribe('isInteger', function() {\n"
                "  var isInteger = require('./integer');\n"
                "  it('accepts whole numbers and rejects the rest', function() {\n"
                "    assert(isInteger(3));\n    assert(isInteger('42'));\n"
                "    assert(!isInteger(3.5));\n    assert(!isInteger('x'));\n  });\n});\n")
POSITIVE = ("'use strict';\n\nvar isNumber = require('./');\n\n"
            "module.exports = function isPositive(num) {\n"
            "  return isNumber(num) && Number(num) > 0;\n};\n")
POSITIVE_TEST = ("\ndescribe('isPositive', function() {\n"
                 "  var isPositive = require('./positive');\n"
                 "  it('accepts numbers above zero only', function() {\n"
                 "    assert(isPositive(1));\n    assert(!isPositive(0));\n"
                 "    assert(!isPositive('-2'));\n  });\n});\n")

# ------------------------------------------------------------------------- python-slugify
SLUGIFY_TEST = (FIXTURES / "python-slugify" / "test.py").read_text()
MAIN_GUARD = "\n\nif __name__ == '__main__':"
FILENAME = ('"""Slugs for file names: the extension survives."""\n\n'
            "from .slugify import slugify\n\n\n"
            "def slugify_filename(name: str) -> str:\n"
            '    stem, dot, ext = name.rpartition(".")\n'
            "    if not dot or not stem:\n        return slugify(name)\n"
            '    return f"{slugify(stem)}.{slugify(ext)}"\n')
FILENAME_TEST = ("\n\nclass TestSlugifyFilename(unittest.TestCase):\n\n"
                 "    def test_the_extension_survives(self):\n"
                 "        from slugify.filename import slugify_filename\n"
                 "        self.assertEqual(slugify_filename('Ünïcode Report.PDF'), "
                 "'unicode-report.pdf')\n")
TITLE = ('"""Titles made of slugs."""\n\n'
         "from .slugify import slugify\n\n\n"
         "def title_of(slug: str) -> str:\n"
         '    return " ".join(w.capitalize() for w in slugify(slug).split("-"))\n')
TITLE_TEST = ("\n\nclass TestTitleOf(unittest.TestCase):\n\n"
              "    def test_words_are_capitalised(self):\n"
              "        from slugify.title import title_of\n"
              "        self.assertEqual(title_of('Ça va, le monde'), 'Ca Va Le Monde')\n")


def with_tests(original: str, *blocks: str) -> str:
    head, guard, tail = original.partition(MAIN_GUARD)
    return head.rstrip("\n") + "".join(blocks) + guard + tail


PROJECTS: dict[str, dict[str, Any]] = {
    "is-number": {
        "tasks": task_list("is-number helpers", ("Add isInteger", "integer.js, test.js"),
                           ("Add isPositive", "positive.js, test.js")),
        "script": {
            "1.1": {"integer.js": INTEGER, "test.js": IS_NUMBER_TEST + INTEGER_TEST},
            "1.2": {"positive.js": POSITIVE,
                    "test.js": IS_NUMBER_TEST + INTEGER_TEST + POSITIVE_TEST},
        },
        "tool": "npm",
        "cached": "node_modules",
        "passing": "passing",
    },
    "python-slugify": {
        "tasks": task_list("slugify helpers",
                           ("Add slugify_filename", "slugify/filename.py, test.py"),
                           ("Add title_of", "slugify/title.py, test.py")),
        "script": {
            "1.1": {"slugify/filename.py": FILENAME,
                    "test.py": with_tests(SLUGIFY_TEST, FILENAME_TEST)},
            "1.2": {"slugify/title.py": TITLE,
                    "test.py": with_tests(SLUGIFY_TEST, FILENAME_TEST, TITLE_TEST)},
        },
        "tool": "pip",
        "cached": ".venv",
        "passing": "passed",
    },
}


@pytest.fixture
def run_env(env: dict[str, str], monkeypatch) -> Any:
    def apply(model_url: str, **extra: str) -> None:
        values = {
            "DEVTEAM_MODEL_API_BASE": model_url,
            "DEVTEAM_PIPELINE_STAGE_LEASE_SECONDS": "10",
            "DEVTEAM_PIPELINE_DISPATCH_GRACE_SECONDS": "15",
            "DEVTEAM_PIPELINE_RELAY_POLL_SECONDS": "0.5",
            **extra,
        }
        use_settings(env, monkeypatch, values)

    return apply


async def errors_of(store, execution_id: uuid.UUID) -> list[dict[str, Any]]:
    async with store.transaction() as session:
        rows = await session.execute(text(
            "SELECT stage, classification, message, details FROM errors WHERE execution_id = :e"
        ), {"e": execution_id})
        return [dict(r) for r in rows.mappings()]


def logged(got: list[dict[str, Any]]) -> str:
    return "\n".join(line for f in got if f["type"] == "execution-log"
                     for line in f["payload"]["lines"])


@pytest.mark.parametrize("name", list(PROJECTS))
async def test_given_a_real_project_when_two_tasks_run_then_setup_installs_once_and_the_second_reuses_the_cache(  # noqa: E501
    store, tmp_path, run_env, procs, token_for, name
):
    spec = PROJECTS[name]
    project = create_sample(
        tmp_path / name, name=name,
        files=project_files(name, **{"tasks_list.md": spec["tasks"]}),
        script=model_script(spec["script"]),
    )
    project_id = f"real-{uuid.uuid4().hex[:6]}/{name}"
    with ScriptedModelServer(parse_script(model_script(spec["script"]))) as model:
        run_env(model.url)
        procs.relay()
        procs.worker(threads=2)
        execution = await start(store, project_id, project.url)
        row = await wait_status(store, execution, END, timeout=900)

    assert row["status"] == "completed", (row, await errors_of(store, execution))
    assert remote_task_list(project).progress() == (2, 2)
    runs = await stage_runs(store, execution)
    setups = [r for r in runs if r["stage"] == "SETUP"]
    assert [(r["task_id"], r["status"]) for r in setups] == [("1.1", "succeeded"),
                                                            ("1.2", "succeeded")]
    first, second = setups[0]["result"], setups[1]["result"]
    assert (first["tool"], first["cached"]) == (spec["tool"], False)
    assert (second["tool"], second["cached"]) == (spec["tool"], True)
    assert first["key"] == second["key"]
    assert list(first["volumes"]) == [spec["cached"]]
    assert first["volumes"] == second["volumes"]
    assert first["bytes"] > 0
    assert first["commands"] and all(c["exitCode"] == 0 for c in first["commands"])
    assert second["commands"] == []  # nothing ran: the environment came from the cache
    verify = [r for r in runs if r["stage"] == "VERIFY"]
    assert [r["status"] for r in verify] == ["succeeded", "succeeded"]
    got = await frames(store, execution)
    text_logged = logged(got)
    assert f"setup: installed with {spec['tool']}" in text_logged
    assert f"setup: cache hit ({spec['tool']}" in text_logged
    assert spec["passing"] in text_logged  # the project's own test runner ran
    assert "blocked:" not in text_logged
    assert {r.task_id for r in model.requests} == {"1.1", "1.2"}
    assert containers_of(execution) == []
    # the status API shows the last setup: a cache hit, how long it took
    gateway = procs.gateway()
    token = token_for("dev", [project_id], role="developer")
    answer = httpx.get(f"{gateway.url}/api/devteam/automation/status/{project_id}",
                       headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert answer.status_code == 200, answer.text
    shown = answer.json()["setup"]
    assert (shown["taskId"], shown["status"], shown["tool"], shown["cached"]) == (
        "1.2", "succeeded", spec["tool"], True)
    assert shown["seconds"] < first["seconds"]


async def test_given_requirements_from_an_index_off_the_allowlist_then_setup_is_blocked_reported_and_no_model_call_is_made(  # noqa: E501
    store, tmp_path, run_env, procs
):
    requirements = "--index-url https://example.org/simple\ntext-unidecode==1.3\n"
    files = project_files("python-slugify", **{
        "tasks_list.md": PROJECTS["python-slugify"]["tasks"],
        "requirements.txt": requirements,
    })
    script = model_script(PROJECTS["python-slugify"]["script"])
    project = create_sample(tmp_path / "blocked", name="blocked", files=files, script=script)
    with ScriptedModelServer(parse_script(script)) as model:
        run_env(model.url)
        procs.relay()
        procs.worker(threads=2)
        execution = await start(store, f"blk-{uuid.uuid4().hex[:6]}/slugify", project.url)
        row = await wait_status(store, execution, END, timeout=600)
        requests = len(model.requests)

    assert (row["status"], row["pause_reason"]) == ("paused", "human_review")
    assert requests == 0
    [error] = await errors_of(store, execution)
    assert (error["stage"], error["classification"]) == ("SETUP", "environment")
    assert "blocked by the egress allowlist: example.org:443" in error["message"]
    assert "DEVTEAM_SETUP_ALLOW_EXTRA" in error["message"]
    [blocked] = error["details"]["blocked"]
    assert (blocked["host"], blocked["port"]) == ("example.org", 443)
    assert "-r requirements.txt" in blocked["command"]
    got = await frames(store, execution)
    assert "blocked: example.org:443 by `" in logged(got)
    assert [f["payload"]["classification"] for f in got if f["type"] == "error"] == [
        "environment"]
    runs = await stage_runs(store, execution)
    assert not [r for r in runs if r["stage"] == "IMPLEMENT"]
    assert row["pending_command"]["stage"] == "SETUP"  # resuming tries setup again
    assert remote_task_list(project).progress() == (0, 2)
    assert containers_of(execution) == []


async def test_given_tests_that_import_an_undeclared_package_then_the_baseline_pauses_as_environment_before_any_model_call(  # noqa: E501
    store, tmp_path, run_env, procs
):
    files = project_files("python-slugify", **{"tasks_list.md": PROJECTS["python-slugify"]["tasks"]})
    del files["setup.py"]  # nothing declares text-unidecode any more
    files["pyproject.toml"] = "[tool.pytest.ini_options]\ntestpaths = [\"test.py\"]\n"
    script = model_script(PROJECTS["python-slugify"]["script"])
    project = create_sample(tmp_path / "undeclared", name="undeclared", files=files,
                            script=script)
    with ScriptedModelServer(parse_script(script)) as model:
        run_env(model.url)  # the default rounds (3) and resolution tasks (3) apply
        procs.relay()
        procs.worker(threads=2)
        execution = await start(store, f"und-{uuid.uuid4().hex[:6]}/slugify", project.url)
        row = await wait_status(store, execution, END, timeout=600)
        requests = {(r.task_id, r.attempt) for r in model.requests}

    assert (row["status"], row["pause_reason"]) == ("paused", "human_review")
    runs = await stage_runs(store, execution)
    assert [r["result"]["tool"] for r in runs if r["stage"] == "SETUP"] == ["none"]
    # the base itself cannot pass: no round, no model call, no resolution task
    assert not [r for r in runs if r["stage"] in ("IMPLEMENT", "VERIFY")]
    assert requests == set()
    [error] = await errors_of(store, execution)
    assert (error["stage"], error["classification"]) == ("SETUP", "environment")
    assert "does not pass its own checks before any change" in error["message"]
    assert "text_unidecode" in error["message"]
    assert "requirements" in error["message"]
    async with store.transaction() as session:
        injected = (await session.execute(text(
            "SELECT count(*) FROM injected_tasks WHERE project_id = :p"),
            {"p": row["project_id"]})).scalar_one()
    assert injected == 0
    assert containers_of(execution) == []
