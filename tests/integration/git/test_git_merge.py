"""Merging a task branch into the default branch."""

from __future__ import annotations

import uuid
from pathlib import Path

import pygit2
import pytest
from tests.integration.git.git_remotes import is_clean, open_repo

from runner.errors import Classification, ConflictError
from runner.git import GitWorkspace

CUSTOMER = "customer-123"
PROJECT = "customer-123/project-abc"
TRAILERS = {"Task-Id": "1.1"}


@pytest.fixture
def checkout(workspace: GitWorkspace, remote):
    return workspace.checkout(CUSTOMER, PROJECT, str(uuid.uuid4()), remote.url)


def task_commit(workspace, checkout, task_id, files):
    branch = workspace.create_task_branch(checkout, task_id, f"Task {task_id}")
    for name, text in files.items():
        (Path(checkout.path) / name).write_text(text)
    sha = workspace.commit_task(checkout, branch.branch, branch.base_commit, "work", TRAILERS)
    return branch, sha


def test_given_an_unchanged_default_branch_when_merged_then_it_fast_forwards(
    workspace: GitWorkspace, checkout
):
    branch, sha = task_commit(workspace, checkout, "1.1", {"feature.py": "f = 1\n"})

    result = workspace.merge(checkout, branch.branch)

    repo = open_repo(checkout)
    assert result.fast_forward is True
    assert result.already_merged is False
    assert result.commit == sha
    assert str(repo.references["refs/heads/main"].target) == sha
    assert repo.head.name == "refs/heads/main"
    assert (Path(checkout.path) / "feature.py").read_text() == "f = 1\n"


def test_given_the_default_branch_moved_when_merged_then_a_merge_commit_is_made(
    workspace: GitWorkspace, checkout, remote
):
    branch, sha = task_commit(workspace, checkout, "1.1", {"feature.py": "f = 1\n"})
    upstream = remote.commit({"other.py": "o = 1\n"}, "someone else")
    workspace.refresh(checkout)

    result = workspace.merge(checkout, branch.branch)

    repo = open_repo(checkout)
    merge = repo[result.commit].peel(pygit2.Commit)
    assert result.fast_forward is False
    assert [str(p) for p in merge.parent_ids] == [upstream, sha]
    assert merge.author.email == "bot@devteam.test"
    assert {"feature.py", "other.py"} <= {e.name for e in merge.tree}
    assert is_clean(repo)


def test_given_an_already_merged_branch_when_merged_again_then_no_new_commit(
    workspace: GitWorkspace, checkout
):
    branch, _ = task_commit(workspace, checkout, "1.1", {"feature.py": "f = 1\n"})
    first = workspace.merge(checkout, branch.branch)

    again = workspace.merge(checkout, branch.branch)

    assert again.already_merged is True
    assert again.commit == first.commit
    assert str(open_repo(checkout).references["refs/heads/main"].target) == first.commit


def test_given_conflicting_changes_when_merged_then_conflict_error_names_paths_and_tree_clean(
    workspace: GitWorkspace, checkout, remote
):
    branch, sha = task_commit(workspace, checkout, "1.1", {"README.md": "# Ours\n"})
    remote.commit({"README.md": "# Theirs\n"}, "conflicting upstream edit")
    workspace.refresh(checkout)
    repo = open_repo(checkout)
    main_before = repo.references["refs/heads/main"].target

    with pytest.raises(ConflictError) as caught:
        workspace.merge(checkout, branch.branch)

    assert caught.value.classification is Classification.CONFLICT
    assert caught.value.details["paths"] == ["README.md"]
    assert "README.md" in caught.value.message
    repo = open_repo(checkout)
    assert is_clean(repo)
    assert repo.head.name == f"refs/heads/{branch.branch}"
    assert str(repo.head.target) == sha
    assert repo.references["refs/heads/main"].target == main_before
    assert (Path(checkout.path) / "README.md").read_text() == "# Ours\n"
