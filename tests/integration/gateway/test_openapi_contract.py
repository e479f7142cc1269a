"""The served OpenAPI document says what the validator does.

- List items, mapping keys and values keep their constraints (Litestar dropped them:
  ``files: [""]`` was schema-valid and a 400), and a body the document calls invalid is
  a 400 naming the field, one it calls valid gets past validation.
- Cross-field rules of a body (``__post_init__``) are in the document too.
- Every pattern compiles in ECMA 262 (Node's ``RegExp``, with and without the ``u`` flag:
  ``\\Z`` or ``(?P<`` do not) and matches exactly the strings Python's ``re.search``
  matches, on a corpus built around the characters where the dialects differ (line
  terminators, Python's and ECMA 262's ``\\s``, Unicode digits, astral characters).
- ``/health`` and ``/health/live`` need no token and say so (``security: []``); every
  other operation keeps the bearer requirement.
- ``Allow`` names every method of a path, on ``OPTIONS`` as on a 405.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from typing import Any

import pytest
from tests.integration.gateway.conftest import PROJECT

from gateway import schemas

NODE = shutil.which("node")
EVENT = "DEVTEAM_AUTOMATION"
SPECIAL = ["", "\n", "\r", "\r\n", "\t", "\x0b", "\x0c", "\x1c", "\x1f", "\x85", "\xa0",
           "\u2028", "\u2029", "\ufeff", "\u200b", "\u3000", "\x00", "\x7f", "\x9b", " ",
           "²", "٣", "😀", "é", "/", "\\", "..", "/..", "../", "%2F", "@", ":", "-", "_", "."]
BASES = ["acme/web", "customer-123/project-abc", "1.1.1", "task/1-1-add", "src/auth.py",
         "a/../b", "a/..", "..", "/etc/passwd", "https://github.com/acme/web.git",
         "git@github.com:acme/web.git", "file:///srv/x.git", "key-1", "ci-bot@acme:1",
         "x", "A0"]


def corpus() -> list[str]:
    """Each base as is, and with each special character before, inside and after it."""
    out = set(BASES) | set(SPECIAL)
    for base in BASES:
        for char in SPECIAL:
            middle = len(base) // 2
            out |= {char + base, base + char, base[:middle] + char + base[middle:]}
    return sorted(out)


def patterns(document: Any) -> set[str]:
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "pattern" and isinstance(value, str):
                    found.add(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(document)
    return found


ECMA = r"""
const {patterns, strings} = JSON.parse(require("fs").readFileSync(0, "utf8"));
const out = {};
for (const p of patterns) {
  try {
    const plain = new RegExp(p), unicode = new RegExp(p, "u");
    out[p] = strings.map((s) => [plain.test(s), unicode.test(s)]);
  } catch (e) { out[p] = String(e); }
}
process.stdout.write(JSON.stringify(out));
"""


@pytest.fixture
async def document(client) -> dict[str, Any]:
    return (await client.get("/schema/openapi.json")).json()


def component(document: dict[str, Any], name: str) -> dict[str, Any]:
    schema: dict[str, Any] = document["components"]["schemas"][name]
    return schema


async def test_list_items_and_mapping_entries_keep_their_constraints(document) -> None:
    task = component(document, "EventTask")["properties"]
    relpath = {"type": "string", "minLength": 1, "maxLength": 500,
               "pattern": r"^(?!/)(?!.*(^|/)\.\.(/|$))[^\x00-\x1f\x7f\\\u2028\u2029]+$(?!\n)"}
    assert {k: task["files"]["items"].get(k) for k in relpath} == relpath
    assert task["files"]["maxItems"] == 100
    assert task["dependencies"]["items"]["pattern"] == task["id"]["pattern"]
    assert task["criteria"]["maxProperties"] == 50
    assert task["criteria"]["propertyNames"] == {"maxLength": 100, "pattern": "^[^\\x00]*$"}
    assert task["criteria"]["additionalProperties"]["maxLength"] == 2000
    assert task["notes"]["items"]["maxLength"] == 20_000
    spec = component(document, "InjectTaskSpec")["properties"]
    assert spec["files"]["items"]["minLength"] == 1
    # and the request bodies forbid unknown fields, as the validator does
    for name in ("EventCreate", "EventData", "EventTask", "InjectRequest", "TaskUpdate"):
        assert component(document, name)["additionalProperties"] is False, name


async def test_what_the_document_calls_invalid_is_a_400_naming_the_field(
    client, alice, document
) -> None:
    def event(**task: Any) -> dict[str, Any]:
        return {"workflow_type": EVENT, "data": {"projectId": PROJECT, "task": {
            "id": "9.9", "title": "t", **task}}}

    cases = [
        (event(files=[""]), "data.task.files[0]"),
        (event(files=["a/..\n"]), "data.task.files[0]"),
        (event(dependencies=["1.1\n"]), "data.task.dependencies[0]"),
        (event(criteria={"k" * 101: "v"}), "data.task.criteria"),
    ]
    for body, field in cases:
        r = await client.post("/events", json=body, headers=alice)
        assert r.status_code == 400, (body, r.text)
        assert field in {e["field"] for e in r.json()["errors"]}, (field, r.text)
    # the boundary values the document allows are past validation (404: no such project)
    valid = event(files=["a"], dependencies=["1.1"], criteria={"k" * 100: "v"})
    r = await client.post("/events", json=valid, headers=alice)
    assert r.status_code == 404, r.text


async def test_cross_field_rules_are_documented(client, alice, document) -> None:
    update = component(document, "TaskUpdate")
    assert sorted(alt["required"][0] for alt in update["anyOf"]) == [
        "description", "status", "title"]
    inject = component(document, "InjectRequest")
    rules = {alt["properties"]["injectionType"]["const"]: alt for alt in inject["anyOf"]}
    assert rules["positional"]["anyOf"][0]["required"] == ["position"]
    assert rules["replace"]["anyOf"][0]["required"] == ["replaceTaskId"]
    # ...which the validator enforces: no field, or only nulls, is a 400
    for body in ({}, {"status": None}):
        r = await client.put(f"/api/devteam/repository/tasks/{PROJECT}/1.1", json=body,
                             headers=alice)
        assert r.status_code == 400, r.text


@pytest.mark.skipif(NODE is None, reason="node is not installed")
async def test_every_pattern_means_the_same_in_python_and_ecma_262(document) -> None:
    found = patterns(document)
    assert schemas.PROJECT_PATTERN in found and len(found) >= 8
    strings = corpus()
    assert NODE is not None
    run = subprocess.run([NODE, "-e", ECMA], input=json.dumps(
        {"patterns": sorted(found), "strings": strings}), capture_output=True, text=True,
        timeout=60, check=True)
    verdicts = json.loads(run.stdout)
    wrong = []
    for pattern in sorted(found):
        assert r"\Z" not in pattern and "(?<" not in pattern and "(?P" not in pattern, pattern
        result = verdicts[pattern]
        if isinstance(result, str):
            wrong.append(f"{pattern!r} does not compile in ECMA 262: {result}")
            continue
        python = re.compile(pattern)
        for text, (plain, unicode) in zip(strings, result, strict=True):
            expected = python.search(text) is not None
            if not expected == plain == unicode:
                wrong.append(f"{pattern!r} on {text!r}: Python {expected}, ECMA 262 {plain}"
                             f" (u: {unicode})")
    assert wrong == [], "\n".join(wrong[:40])


async def test_health_needs_no_token_in_the_document_and_everything_else_does(
    client, document
) -> None:
    assert document["security"] == [{"bearer": []}]
    public = {path for path, item in document["paths"].items()
              for op in item.values() if op.get("security") == []}
    assert public == {"/health", "/health/live"}
    for path in public:
        assert (await client.get(path)).status_code in (200, 503)
    assert (await client.get("/tasks/next?projectId=acme/web")).status_code == 401


async def test_allow_names_every_method_of_the_path(client, alice, document) -> None:
    documented = {m.upper() for m in document["paths"][
        "/api/devteam/repository/tasks/{rest}"]}
    assert documented == {"GET", "PUT"}
    for path in ("/api/devteam/repository/tasks/acme/web",
                 "/api/devteam/repository/tasks/acme/web/1.1"):
        options = await client.options(path, headers=alice)
        wrong = await client.delete(path, headers=alice)
        assert options.status_code == 204 and wrong.status_code == 405
        for answer in (options, wrong):
            allowed = {m.strip() for m in answer.headers["allow"].split(",")}
            assert allowed == documented | {"OPTIONS"}, (path, answer.headers["allow"])
