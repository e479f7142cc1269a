"""Repository validation, the task list (read and edit) and task injection, on the
sample project's real bare remote."""

from __future__ import annotations

import pygit2
from tests.integration.gateway.conftest import PROJECT, add_project, audit, rows

from devtools.demo.sample import TASK_LIST, create_sample

TASKS = "/api/devteam/repository/tasks"
INJECT = "/api/devteam/tasks/inject"


def remote_file(sample, path: str = "tasks_list.md") -> tuple[str, pygit2.Commit]:
    repo = pygit2.Repository(str(sample.remote))
    tip = repo.references["refs/heads/main"].peel(pygit2.Commit)
    return repo[tip.tree[path].id].data.decode(), tip


# ---------------------------------------------------------------------------- validate
async def test_validate_reports_a_good_repository(client, sample, alice) -> None:
    r = await client.post("/api/devteam/repository/validate",
                          json={"repositoryUrl": sample.url}, headers=alice)
    assert r.status_code == 200, r.text
    assert r.json() == {"valid": True, "defaultBranch": "main", "hasTaskList": True,
                        "taskListPath": "tasks_list.md", "taskCount": 6, "problems": []}


async def test_validate_reports_problems_as_results(client, sample, alice, tmp_path) -> None:
    outside = await client.post("/api/devteam/repository/validate", headers=alice,
                                json={"repositoryUrl": "file:///srv/elsewhere/repo.git"})
    missing = await client.post("/api/devteam/repository/validate", headers=alice,
                                json={"repositoryUrl": f"file://{tmp_path}/absent.git"})
    no_list = create_sample(tmp_path / "bare", files={"README.md": "# hi\n"})
    empty = await client.post("/api/devteam/repository/validate", headers=alice,
                              json={"repositoryUrl": no_list.url})
    branch = await client.post("/api/devteam/repository/validate", headers=alice,
                               json={"repositoryUrl": sample.url, "branch": "nope"})
    for r in (outside, missing, empty, branch):
        assert r.status_code == 200, r.text
        assert r.json()["valid"] is False and r.json()["problems"], r.json()
    assert "allowed file roots" in outside.json()["problems"][0]
    assert empty.json()["hasTaskList"] is False and empty.json()["defaultBranch"] == "main"
    assert "nope" in branch.json()["problems"][0]


async def test_validate_reports_a_broken_task_list_with_line_numbers(
    client, alice, tmp_path
) -> None:
    broken = create_sample(tmp_path / "broken", files={
        "tasks_list.md": "- [ ] 1.1 One (Dependencies: [])\n- [ ] 1.2 Two (Dependencies: [7.7])\n"})
    r = await client.post("/api/devteam/repository/validate", headers=alice,
                          json={"repositoryUrl": broken.url})
    assert r.status_code == 200
    assert r.json()["valid"] is False and r.json()["hasTaskList"] is True
    assert r.json()["problems"][0].startswith("tasks_list.md:2:")


async def test_validate_names_every_bad_field(client, alice) -> None:
    r = await client.post("/api/devteam/repository/validate", headers=alice,
                          json={"repositoryUrl": "ftp://x", "taskListPath": "../etc/passwd",
                                "branch": ""})
    assert r.status_code == 400
    assert {e["field"] for e in r.json()["errors"]} == {"repositoryUrl", "taskListPath",
                                                        "branch"}


# ------------------------------------------------------------------------- task list
async def test_tasks_are_listed_in_file_order_with_slash_or_encoded_slash(
    client, project, alice
) -> None:
    plain = await client.get(f"{TASKS}/{PROJECT}", headers=alice)
    encoded = await client.get(f"{TASKS}/acme%2Fweb", headers=alice)
    assert plain.status_code == encoded.status_code == 200, plain.text
    assert plain.json() == encoded.json()
    tasks = plain.json()["tasks"]
    assert [t["id"] for t in tasks] == ["1", "1.1", "1.2", "2", "2.1", "2.2", "2.3", "2.4"]
    first = tasks[1]
    assert first == {"id": "1.1", "title": "Add and subtract", "description": "",
                     "type": "atomic", "dependencies": [],
                     "files": ["src/calc/basic.py", "tests/test_basic.py"],
                     "criteria": {"test.coverage": "≥80%"}, "notes": [], "status": "pending",
                     "parent": "1"}


async def test_tasks_of_an_unknown_project_is_404_and_a_bad_id_400(client, alice) -> None:
    assert (await client.get(f"{TASKS}/acme/nope", headers=alice)).status_code == 404
    bad = await client.get(f"{TASKS}/acme/web/extra", headers=alice)
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["field"] == "rest"


async def test_updating_a_task_commits_only_its_status_token(
    client, project, sample, alice, store
) -> None:
    before, old_tip = remote_file(sample)
    r = await client.put(f"{TASKS}/acme%2Fweb/1.1", json={"status": "done"}, headers=alice)
    assert r.status_code == 200, r.text
    assert r.json()["id"] == "1.1" and r.json()["status"] == "done"
    after, tip = remote_file(sample)
    assert tip.parents[0].id == old_tip.id
    assert "Task-Id: 1.1" in tip.message and "Updated-By: alice" in tip.message
    changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines(), strict=True)
               if a != b]
    assert len(changed) == 1 and "1.1 Add and subtract" in changed[0][1]
    entry = (await audit(store, "task.update"))[0]
    assert (entry["user_id"], entry["project_id"]) == ("alice", PROJECT)
    assert entry["details"]["committed"] is True
    # The same change again commits nothing
    await client.put(f"{TASKS}/{PROJECT}/1.1", json={"status": "done"}, headers=alice)
    assert remote_file(sample)[1].id == tip.id


async def test_updating_title_and_description(client, project, sample, alice) -> None:
    r = await client.put(f"{TASKS}/{PROJECT}/2.1", headers=alice,
                         json={"title": "Power, roots and logs"})
    assert r.status_code == 200, r.text
    assert r.json()["title"] == "Power, roots and logs"
    assert "2.1 Power, roots and logs (Dependencies: [])" in remote_file(sample)[0]


async def test_update_errors(client, project, alice) -> None:
    unknown = await client.put(f"{TASKS}/{PROJECT}/9.9", json={"status": "done"}, headers=alice)
    assert unknown.status_code == 404
    nothing = await client.put(f"{TASKS}/{PROJECT}/1.1", json={}, headers=alice)
    assert nothing.status_code == 400
    assert "at least one" in nothing.json()["detail"]
    bad = await client.put(f"{TASKS}/{PROJECT}/1.1", json={"status": "finished", "x": 1},
                           headers=alice)
    assert {e["field"] for e in bad.json()["errors"]} == {"status", "x"}
    no_task = await client.put(f"{TASKS}/{PROJECT}", json={"status": "done"}, headers=alice)
    assert no_task.status_code == 400
    unknown_project = await client.put(f"{TASKS}/acme/nope/1.1", json={"status": "done"},
                                       headers=alice)
    assert unknown_project.status_code == 404


async def test_a_title_that_would_make_the_item_a_phase_is_422_naming_the_field(
    client, store, alice, tmp_path
) -> None:
    plain = create_sample(tmp_path / "plain", files={"tasks_list.md": "- [ ] Add CI\n"})
    await add_project(store, "acme/plain", plain.url)
    _, tip = remote_file(plain)

    r = await client.put(f"{TASKS}/acme/plain/1", json={"title": "Phase 2: z"}, headers=alice)

    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith("title: cannot change task 1")
    assert [e["field"] for e in r.json()["errors"]] == ["title"]
    assert r.json()["classification"] == "config"
    assert remote_file(plain) == ("- [ ] Add CI\n", tip)


def commit_remote_file(sample, text: str, path: str = "tasks_list.md") -> None:
    """The customer's own commit on ``main`` replacing ``path``."""
    repo = pygit2.Repository(str(sample.remote))
    tip = repo.references["refs/heads/main"].peel(pygit2.Commit)
    builder = repo.TreeBuilder(tip.tree)
    builder.insert(path, repo.create_blob(text.encode()), pygit2.GIT_FILEMODE_BLOB)
    repo.create_commit("refs/heads/main", tip.author, tip.author, "Edit the list",
                       builder.write(), [tip.id])


async def test_next_task_is_422_when_a_replaced_task_was_renamed(
    client, project, sample, alice
) -> None:
    r = await client.post(INJECT, headers=alice, json={
        "projectId": PROJECT, "injectionType": "replace", "replaceTaskId": "1.2",
        "reason": "r", "task": {"title": "Multiply better"}})
    assert r.status_code == 201, r.text
    commit_remote_file(sample, TASK_LIST.replace("- 1.2 Multiply", "- 1.3 Multiply"))

    nxt = await client.get("/tasks/next", params={"projectId": PROJECT}, headers=alice)

    assert nxt.status_code == 422, nxt.text
    assert "injected tasks do not fit the task list" in nxt.json()["detail"]
    assert "1.2" in nxt.json()["detail"]


async def test_next_task_is_422_when_a_position_is_past_the_end_of_the_list(
    client, project, sample, alice
) -> None:
    r = await client.post(INJECT, headers=alice, json={
        "projectId": PROJECT, "injectionType": "positional", "position": 6,
        "reason": "r", "task": {"title": "Last"}})
    assert r.status_code == 201, r.text
    shorter = TASK_LIST.split("- 2.4 Document")[0]
    commit_remote_file(sample, shorter)

    nxt = await client.get("/tasks/next", params={"projectId": PROJECT}, headers=alice)

    assert nxt.status_code == 422, nxt.text
    assert "injected tasks do not fit the task list" in nxt.json()["detail"]


async def test_a_list_that_does_not_parse_is_422_with_line_numbers(
    client, store, alice, tmp_path
) -> None:
    broken = create_sample(tmp_path / "broken", files={
        "tasks_list.md": TASK_LIST.replace("(Dependencies: [1.1])", "(Dependencies: [4.4])")})
    await add_project(store, "acme/broken", broken.url)
    r = await client.get(f"{TASKS}/acme/broken", headers=alice)
    assert r.status_code == 422
    assert "tasks_list.md:" in r.json()["detail"] and "4.4" in r.json()["detail"]


# ---------------------------------------------------------------------------- inject
async def test_a_priority_injection_becomes_the_next_task(client, project, alice, store) -> None:
    r = await client.post(INJECT, headers=alice, json={
        "projectId": PROJECT, "injectionType": "priority", "reason": "customer escalation",
        "task": {"title": "Fix rounding", "files": ["src/calc/basic.py"],
                 "criteria": {"test.pass": "pass"}}})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["taskId"] == f"inj-{body['injectionId']}"
    stored = await rows(store, "SELECT * FROM injected_tasks")
    assert [(s["task_id"], s["created_by"], s["reason"]) for s in stored] == [
        (body["taskId"], "alice", "customer escalation")]
    assert (await audit(store, "task.inject"))[0]["details"]["taskId"] == body["taskId"]
    nxt = (await client.get("/tasks/next", params={"projectId": PROJECT}, headers=alice)).json()
    assert nxt["task"]["id"] == body["taskId"] and nxt["task"]["title"] == "Fix rounding"


async def test_replace_and_positional_injections_are_checked_against_the_list(
    client, project, alice
) -> None:
    base = {"projectId": PROJECT, "reason": "r", "task": {"title": "T"}}
    replace = await client.post(INJECT, headers=alice,
                                json={**base, "injectionType": "replace", "replaceTaskId": "1.2"})
    assert replace.status_code == 201
    not_a_leaf = await client.post(INJECT, headers=alice, json={
        **base, "injectionType": "replace", "replaceTaskId": "2"})
    assert not_a_leaf.status_code == 422
    too_far = await client.post(INJECT, headers=alice,
                                json={**base, "injectionType": "positional", "position": 99})
    assert too_far.status_code == 422 and "between 0 and 6" in too_far.json()["detail"]
    missing = await client.post(INJECT, headers=alice,
                                json={**base, "injectionType": "positional"})
    assert missing.status_code == 400 and "position" in missing.json()["detail"]


async def test_inject_errors(client, alice) -> None:
    unknown = await client.post(INJECT, headers=alice, json={
        "projectId": "acme/nope", "injectionType": "priority", "reason": "r",
        "task": {"title": "T"}})
    assert unknown.status_code == 404
    bad = await client.post(INJECT, headers=alice, json={
        "projectId": "acme/web", "injectionType": "sideways", "reason": "",
        "task": {"title": "", "type": "epic"}})
    assert bad.status_code == 400
    assert {e["field"] for e in bad.json()["errors"]} == {
        "injectionType", "reason", "task.title", "task.type"}
