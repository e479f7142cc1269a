"""The one-step runner API: POST /prep, /implement, /verify and GET /tasks/next, on the
sample project's real bare remote; /implement runs real Aider against the scripted
model, /verify a real container."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pygit2
import pytest
from litestar.testing import AsyncTestClient
from tests.integration.gateway.conftest import PROJECT, add_project, audit

from devtools.demo.sample import BASIC_1, TEST_BASIC_1, Sample, create_sample
from devtools.scripted_model import ScriptedModelServer, load_script
from gateway.app import create_app
from runner.settings import get_settings, reset_settings_cache

BRANCH = "task/1-1-add-and-subtract"


@pytest.fixture
async def model_client(
    env: dict[str, str], sample: Sample, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[AsyncTestClient[Any]]:
    """The gateway with Aider pointed at the scripted model (long timeout: real runs)."""
    with ScriptedModelServer(load_script(sample.script)) as server:
        monkeypatch.setenv("DEVTEAM_MODEL_API_BASE", server.url)
        reset_settings_cache()
        app = create_app(get_settings())
        async with AsyncTestClient(app, base_url="http://gateway.local", timeout=300) as c:
            yield c


def commit_on_branch(repo_path: str, branch: str, files: dict[str, str]) -> None:
    """Commit ``files`` on ``branch`` of the working copy (what a coding round leaves)."""
    repo = pygit2.Repository(repo_path)
    for rel, content in files.items():
        path = Path(repo_path) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        repo.index.add(rel)
    repo.index.write()
    tree = repo.index.write_tree()
    author = pygit2.Signature("Test", "test@example.com")
    parent = repo.references[f"refs/heads/{branch}"].target
    repo.create_commit(f"refs/heads/{branch}", author, author, "1.1: by hand", tree, [parent])


# ------------------------------------------------------------------------------- /prep
async def test_prep_creates_the_task_branch_and_reports_it(client, project, alice, store) -> None:
    r = await client.post("/prep", json={"projectId": PROJECT, "taskId": "1.1"}, headers=alice)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["taskId"] == "1.1" and body["branch"] == BRANCH
    assert body["artifacts"] == {"cloned": True, "branchCreated": True}
    repo = pygit2.Repository(body["repoPath"])
    assert repo.head.name == f"refs/heads/{BRANCH}"
    # A second prep reuses the branch
    again = await client.post("/prep", json={"projectId": PROJECT, "taskId": "1.1"},
                              headers=alice)
    assert again.json()["artifacts"] == {"cloned": False, "branchCreated": False}
    rows = await audit(store, "task.prep")
    assert [(a["user_id"], a["project_id"]) for a in rows] == [("alice", PROJECT)] * 2
    assert rows[0]["details"]["branch"] == BRANCH
    assert rows[0]["correlation_id"] == r.headers["x-correlation-id"]


async def test_prep_of_an_unknown_project_is_404(client, alice) -> None:
    r = await client.post("/prep", json={"projectId": "acme/nope", "taskId": "1.1"},
                          headers=alice)
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"


async def test_prep_of_an_unknown_task_is_404(client, project, alice) -> None:
    r = await client.post("/prep", json={"projectId": PROJECT, "taskId": "9.9"}, headers=alice)
    assert r.status_code == 404
    assert "9.9" in r.json()["detail"]


async def test_prep_names_every_bad_field(client, alice) -> None:
    r = await client.post("/prep", json={"projectId": "no-slash", "taskId": "", "x": 1},
                          headers=alice)
    assert r.status_code == 400
    fields = {e["field"] for e in r.json()["errors"]}
    assert fields == {"projectId", "taskId", "x"}


async def test_prep_of_a_repository_without_task_list_is_422(
    client, store, alice, tmp_path
) -> None:
    from tests.integration.gateway.conftest import add_project

    from devtools.demo.sample import create_sample

    bare = create_sample(tmp_path / "empty", files={"README.md": "# nothing\n"})
    await add_project(store, "acme/empty", bare.url)
    r = await client.post("/prep", json={"projectId": "acme/empty", "taskId": "1.1"},
                          headers=alice)
    assert r.status_code == 422
    assert "task list" in r.json()["detail"]
    assert r.json()["classification"] == "config"


# -------------------------------------------------------------------------- /tasks/next
async def test_next_task_is_the_first_ready_leaf(client, project, alice) -> None:
    r = await client.get("/tasks/next", params={"projectId": PROJECT}, headers=alice)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["task"]["id"] == "1.1" and body["task"]["parent"] == "1"
    assert body["dependenciesSatisfied"] is True
    assert (body["totalTasks"], body["completedTasks"], body["progress"]) == (6, 0, 0)


async def test_next_task_after_marking_done_moves_on(client, project, alice) -> None:
    done = await client.put(f"/api/devteam/repository/tasks/{PROJECT}/1.1",
                            json={"status": "done"}, headers=alice)
    assert done.status_code == 200
    body = (await client.get("/tasks/next", params={"projectId": PROJECT}, headers=alice)).json()
    assert body["task"]["id"] == "1.2"
    assert (body["completedTasks"], body["progress"]) == (1, 16)


async def test_next_task_errors(client, alice) -> None:
    missing = await client.get("/tasks/next", params={"projectId": "acme/nope"}, headers=alice)
    assert missing.status_code == 404
    bad = await client.get("/tasks/next", params={"projectId": "acme"}, headers=alice)
    assert bad.status_code == 400
    absent = await client.get("/tasks/next", headers=alice)
    assert absent.status_code == 400
    assert absent.json()["errors"][0]["field"] == "projectId"


# -------------------------------------------------------------------------- /implement
@pytest.mark.slow
async def test_implement_runs_aider_and_commits_the_change_on_the_branch(
    model_client, project, alice, store
) -> None:
    # Given the task's branch
    prep = await model_client.post("/prep", json={"projectId": PROJECT, "taskId": "1.1"},
                                   headers=alice)
    repo_path = prep.json()["repoPath"]
    # When the coding tool runs
    r = await model_client.post("/implement", headers=alice, json={
        "projectId": PROJECT, "taskId": "1.1", "branch": BRANCH, "tool": "aider"})
    # Then the artifact describes the change, and the branch has it as one commit
    assert r.status_code == 200, r.text
    artifact = r.json()
    assert artifact["operation"] == "implement" and artifact["tool"] == "aider"
    assert artifact["success"] is True, artifact
    assert set(artifact["outputs"]["filesModified"]) == {"src/calc/basic.py",
                                                         "tests/test_basic.py"}
    repo = pygit2.Repository(repo_path)
    tip = repo.references[f"refs/heads/{BRANCH}"].peel(pygit2.Commit)
    assert "Task-Id: 1.1" in tip.message
    assert repo[tip.tree["src/calc/basic.py"].id].data.decode() == BASIC_1
    assert tip.parents[0].id == repo.references["refs/heads/main"].target
    assert (await audit(store, "task.implement"))[0]["details"]["success"] is True


async def test_implement_on_a_branch_that_does_not_exist_is_422(client, project, alice) -> None:
    r = await client.post("/implement", headers=alice, json={
        "projectId": PROJECT, "taskId": "1.1", "branch": "task/none"})
    assert r.status_code == 422
    assert "task/none" in r.json()["detail"]


async def test_implement_refuses_a_task_file_with_a_nul_byte_without_running_aider(
    client, store, alice, tmp_path
) -> None:
    # Given a task whose file list holds a NUL (the task list lets it through)
    hostile = create_sample(tmp_path / "nul", files={
        "README.md": "# x\n",
        "tasks_list.md": "- [ ] 1.1 Add (Dependencies: [])\n  • files: src/a\x00b.py\n"})
    await add_project(store, "acme/nul", hostile.url)
    prep = await client.post("/prep", json={"projectId": "acme/nul", "taskId": "1.1"},
                             headers=alice)
    assert prep.status_code == 200, prep.text
    # When the coding tool is asked to run
    r = await client.post("/implement", headers=alice, json={
        "projectId": "acme/nul", "taskId": "1.1", "branch": prep.json()["branch"]})
    # Then it is refused like any other unsafe path: a failed artifact, not a 500
    assert r.status_code == 200, r.text
    artifact = r.json()
    assert artifact["success"] is False
    assert artifact["error"]["classification"] == "tool"
    assert "refused task files" in artifact["error"]["message"]


async def test_implement_rejects_another_tool(client, alice) -> None:
    r = await client.post("/implement", headers=alice, json={
        "projectId": PROJECT, "taskId": "1.1", "branch": BRANCH, "tool": "cursor"})
    assert r.status_code == 400
    assert r.json()["errors"][0]["field"] == "tool"


# ----------------------------------------------------------------------------- /verify
@pytest.mark.slow
@pytest.mark.docker
async def test_verify_runs_the_checks_in_a_container_and_reports_criteria(
    client, project, alice, store
) -> None:
    # Given the task's branch with a finished change
    prep = await client.post("/prep", json={"projectId": PROJECT, "taskId": "1.1"},
                             headers=alice)
    commit_on_branch(prep.json()["repoPath"], BRANCH,
                     {"src/calc/basic.py": BASIC_1, "tests/test_basic.py": TEST_BASIC_1})
    body = {"projectId": PROJECT, "taskId": "1.1", "branch": BRANCH}
    # When it is verified against the task's criteria, and against an impossible one
    met = await client.post("/verify", json=body, headers=alice, timeout=300)
    unmet = await client.post("/verify", headers=alice, timeout=300,
                              json={**body, "criteria": {"doc.updated": "README.md"}})
    # Then both are results: the first passes, the second is 200 with success false
    assert met.status_code == 200, met.text
    assert met.json()["success"] is True, met.json()
    assert met.json()["results"]["test.coverage"]["passed"] is True
    assert unmet.status_code == 200, unmet.text
    assert unmet.json()["success"] is False
    assert unmet.json()["results"]["doc.updated"]["passed"] is False
    assert [a["details"]["success"] for a in await audit(store, "task.verify")] == [True, False]


async def test_verify_when_docker_is_unreachable_is_503(
    env, project, alice, monkeypatch, tmp_path
) -> None:
    monkeypatch.setenv("DEVTEAM_SANDBOX_DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    reset_settings_cache()
    async with AsyncTestClient(create_app(get_settings()), base_url="http://gateway.local",
                               timeout=60) as client:
        prep = await client.post("/prep", json={"projectId": PROJECT, "taskId": "1.1"},
                                 headers=alice)
        assert prep.status_code == 200
        r = await client.post("/verify", headers=alice,
                              json={"projectId": PROJECT, "taskId": "1.1", "branch": BRANCH})
    assert r.status_code == 503, r.text
    assert r.json()["classification"] == "infrastructure"
    assert r.headers["retry-after"]
