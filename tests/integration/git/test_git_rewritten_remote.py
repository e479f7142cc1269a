"""A remote whose history the customer rewrote (force-pushed) is never merged back into."""

from __future__ import annotations

import uuid
from pathlib import Path

import pygit2
import pytest
from tests.integration.git.git_remotes import SIG, Remote, open_repo

from runner.errors import Classification, ConflictError
from runner.git import GitWorkspace

CUSTOMER = "customer-123"
PROJECT = "customer-123/project-abc"
SECRET = {"secrets.env": "TOKEN=ghp_leaked_secret\n"}


def leaked_then_purged(remote: Remote) -> tuple[str, str, str]:
    """Main gets ``leak`` (adds secrets.env) on ``start``; ``rewrite`` is the customer's
    purged history (``start`` plus another change), ready to be force-pushed."""
    start = str(remote.tip().id)
    leak = remote.commit(SECRET, "oops")
    rewrite = remote.commit({"README.md": "# App, configured from the environment\n"},
                            "config from env", branch="purge", parent=start)
    remote.repo.references.delete("refs/heads/purge")
    return start, leak, rewrite


def finished_task(workspace: GitWorkspace, checkout, task_id: str = "1.1") -> str:
    branch = workspace.create_task_branch(checkout, task_id, f"Task {task_id}")
    (Path(checkout.path) / f"task_{task_id}.py").write_text("t = 1\n")
    workspace.commit_task(checkout, branch.branch, branch.base_commit, "work", {})
    workspace.merge(checkout, branch.branch)
    return branch.branch


def tracking(checkout) -> str:
    return str(open_repo(checkout).references["refs/remotes/origin/main"].target)


def test_given_a_force_push_and_nothing_unpushed_then_refresh_takes_the_rewrite_and_never_restores_it(
    workspace: GitWorkspace, remote
):
    _, leak, rewrite = leaked_then_purged(remote)
    co = workspace.checkout(CUSTOMER, PROJECT, str(uuid.uuid4()), remote.url)
    assert (Path(co.path) / "secrets.env").exists()
    remote.force_push(rewrite)

    refreshed = workspace.refresh(co)

    assert refreshed.head == rewrite
    assert not (Path(co.path) / "secrets.env").exists()
    branch = finished_task(workspace, refreshed)
    workspace.push(refreshed, ["main", branch])
    assert remote.reaches(rewrite)
    assert not remote.reaches(leak)
    assert "secrets.env" not in remote.tip().tree


def test_given_a_force_push_back_to_an_older_commit_then_the_dropped_commit_is_not_pushed_again(
    workspace: GitWorkspace, remote
):
    start, leak, _ = leaked_then_purged(remote)
    co = workspace.checkout(CUSTOMER, PROJECT, str(uuid.uuid4()), remote.url)
    remote.force_push(start)  # the local copy now holds more than the remote: the leak

    refreshed = workspace.refresh(co)

    assert refreshed.head == start
    branch = finished_task(workspace, refreshed)
    workspace.push(refreshed, ["main", branch])
    assert not remote.reaches(leak)


def test_given_a_force_push_while_a_merge_is_unpushed_then_refresh_stops_every_time(
    workspace: GitWorkspace, remote
):
    _, leak, rewrite = leaked_then_purged(remote)
    co = workspace.checkout(CUSTOMER, PROJECT, str(uuid.uuid4()), remote.url)
    finished_task(workspace, co)
    local = str(open_repo(co).references["refs/heads/main"].target)
    remote.force_push(rewrite)

    for _ in range(2):  # the refused fetch is not taken for the remote we are level with
        with pytest.raises(ConflictError) as stopped:
            workspace.refresh(co)

        assert stopped.value.classification is Classification.CONFLICT
        assert "rewritten (force-pushed)" in stopped.value.message
        assert str(open_repo(co).references["refs/heads/main"].target) == local
        assert tracking(co) == leak
    assert str(remote.tip().id) == rewrite


def test_given_a_force_push_after_the_merge_when_pushed_then_the_push_stops_and_the_remote_keeps_the_rewrite(
    workspace: GitWorkspace, remote
):
    _, leak, rewrite = leaked_then_purged(remote)
    co = workspace.checkout(CUSTOMER, PROJECT, str(uuid.uuid4()), remote.url)
    branch = finished_task(workspace, co)
    remote.force_push(rewrite)

    with pytest.raises(ConflictError) as stopped:
        workspace.push(co, ["main", branch])

    assert "rewritten (force-pushed)" in stopped.value.message
    assert str(remote.tip().id) == rewrite
    assert not remote.reaches(leak)


def test_given_a_remote_that_moved_on_while_a_merge_is_unpushed_then_refresh_still_merges(
    workspace: GitWorkspace, remote
):
    co = workspace.checkout(CUSTOMER, PROJECT, str(uuid.uuid4()), remote.url)
    finished_task(workspace, co)
    ours = str(open_repo(co).references["refs/heads/main"].target)
    theirs = remote.commit({"theirs.py": "t = 1\n"}, "someone else")

    refreshed = workspace.refresh(co)

    merge = open_repo(co)[refreshed.head].peel(pygit2.Commit)
    assert [str(p) for p in merge.parent_ids] == [ours, theirs]


def test_given_a_branch_with_no_common_history_when_merged_then_it_is_refused(
    workspace: GitWorkspace, remote
):
    co = workspace.checkout(CUSTOMER, PROJECT, str(uuid.uuid4()), remote.url)
    repo = open_repo(co)
    before = repo.references["refs/heads/main"].target
    index = pygit2.Index()
    index.add(pygit2.IndexEntry("other.txt", repo.create_blob(b"x\n"),
                                pygit2.enums.FileMode.BLOB))
    orphan = repo.create_commit(None, SIG, SIG, "unrelated", index.write_tree(repo), [])
    repo.references.create("refs/heads/task/9-9-orphan", orphan)

    with pytest.raises(ConflictError) as refused:
        workspace.merge(co, "task/9-9-orphan")

    assert "share no commit" in refused.value.message
    assert open_repo(co).references["refs/heads/main"].target == before
