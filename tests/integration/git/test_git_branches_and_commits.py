"""Task branches and the task's single (squashed) commit."""

from __future__ import annotations

import uuid
from pathlib import Path

import pygit2
import pytest
from tests.integration.git.git_remotes import is_clean, open_repo

from runner.errors import ConfigError
from runner.git import GitWorkspace
from runner.git.results import BranchResult, Checkout

CUSTOMER = "customer-123"
PROJECT = "customer-123/project-abc"
TRAILERS = {"Task-Id": "1.1", "Execution-Id": "exec-42"}


@pytest.fixture
def checkout(workspace: GitWorkspace, remote):
    return workspace.checkout(CUSTOMER, PROJECT, str(uuid.uuid4()), remote.url)


def commits_ahead(repo: pygit2.Repository, branch: str, base: str) -> int:
    walker = repo.walk(repo.references[f"refs/heads/{branch}"].target)
    walker.hide(base)
    return sum(1 for _ in walker)


def test_given_a_task_when_its_branch_is_created_then_it_is_named_and_checked_out(
    workspace: GitWorkspace, checkout, remote
):
    result = workspace.create_task_branch(checkout, "1.1", "Set up the API Client")

    repo = open_repo(checkout)
    assert result.branch == "task/1-1-set-up-the-api-client"
    assert result.created is True
    assert result.base_commit == str(remote.tip().id)
    assert repo.head.name == "refs/heads/task/1-1-set-up-the-api-client"


def test_given_an_existing_branch_of_the_task_then_it_is_reused_not_duplicated(
    workspace: GitWorkspace, checkout
):
    first = workspace.create_task_branch(checkout, "1.1", "Set up the API client")
    (Path(checkout.path) / "api.py").write_text("client = 1\n")
    sha = workspace.commit_task(checkout, first.branch, first.base_commit, "API client", TRAILERS)

    again = workspace.create_task_branch(checkout, "1.1", "Set up the API client")

    repo = open_repo(checkout)
    assert again.created is False
    assert again.branch == first.branch
    assert again.base_commit == first.base_commit
    assert again.head == sha
    assert [b for b in repo.branches.local if b.startswith("task/")] == [first.branch]
    assert (Path(checkout.path) / "api.py").read_text() == "client = 1\n"


def test_given_the_branch_exists_only_on_the_remote_then_a_new_working_copy_reuses_it(
    workspace: GitWorkspace, checkout, remote
):
    branch = workspace.create_task_branch(checkout, "2.3", "Pushed before")
    (Path(checkout.path) / "pushed.txt").write_text("from the first run\n")
    sha = workspace.commit_task(checkout, branch.branch, branch.base_commit, "first", TRAILERS)
    workspace.push(checkout, [branch.branch])

    other = workspace.checkout(CUSTOMER, PROJECT, str(uuid.uuid4()), remote.url)
    reused = workspace.create_task_branch(other, "2.3", "Pushed before")

    assert reused.created is False
    assert reused.head == sha
    assert reused.base_commit == branch.base_commit
    assert (Path(other.path) / "pushed.txt").read_text() == "from the first run\n"


def test_given_changes_when_committed_then_one_commit_with_trailers_and_configured_author(
    workspace: GitWorkspace, checkout
):
    branch = workspace.create_task_branch(checkout, "1.1", "Add module")
    (Path(checkout.path) / "src" / "module.py").write_text("VALUE = 1\n")
    (Path(checkout.path) / "src" / "app.py").unlink()

    sha = workspace.commit_task(checkout, branch.branch, branch.base_commit, "Add module", TRAILERS)

    repo = open_repo(checkout)
    commit = repo[sha].peel(pygit2.Commit)
    assert commit.message == "Add module\n\nTask-Id: 1.1\nExecution-Id: exec-42\n"
    assert (commit.author.name, commit.author.email) == ("Runner Bot", "bot@devteam.test")
    assert commit.committer.email == "bot@devteam.test"
    assert [str(p) for p in commit.parent_ids] == [branch.base_commit]
    assert "src/module.py" in commit.tree
    assert "src/app.py" not in commit.tree
    assert is_clean(repo)


def test_given_a_retry_round_when_committed_again_then_it_replaces_the_previous_commit(
    workspace: GitWorkspace, checkout
):
    branch = workspace.create_task_branch(checkout, "1.1", "Retry me")
    work = Path(checkout.path) / "feature.py"
    work.write_text("round = 1\n")
    first = workspace.commit_task(checkout, branch.branch, branch.base_commit, "Retry", TRAILERS)
    work.write_text("round = 2\n")

    second = workspace.commit_task(checkout, branch.branch, branch.base_commit, "Retry", TRAILERS)

    repo = open_repo(checkout)
    assert second != first
    assert commits_ahead(repo, branch.branch, branch.base_commit) == 1
    tip = repo.references[f"refs/heads/{branch.branch}"].peel(pygit2.Commit)
    assert str(tip.id) == second
    assert tip.tree["feature.py"].data == b"round = 2\n"


def test_given_the_same_tree_and_message_when_committed_again_then_no_new_commit(
    workspace: GitWorkspace, checkout
):
    branch = workspace.create_task_branch(checkout, "1.1", "Idempotent")
    (Path(checkout.path) / "a.txt").write_text("a\n")
    first = workspace.commit_task(checkout, branch.branch, branch.base_commit, "A", TRAILERS)

    again = workspace.commit_task(checkout, branch.branch, branch.base_commit, "A", TRAILERS)

    assert again == first


def test_given_no_change_when_committed_then_none_and_branch_at_base(
    workspace: GitWorkspace, checkout
):
    branch = workspace.create_task_branch(checkout, "1.1", "Nothing")
    path = Path(checkout.path) / "tmp.txt"
    path.write_text("x")
    workspace.commit_task(checkout, branch.branch, branch.base_commit, "x", TRAILERS)
    path.unlink()

    result = workspace.commit_task(checkout, branch.branch, branch.base_commit, "x", TRAILERS)

    repo = open_repo(checkout)
    assert result is None
    assert str(repo.references[f"refs/heads/{branch.branch}"].target) == branch.base_commit


def test_given_aider_history_files_then_they_are_not_committed(workspace: GitWorkspace, checkout):
    branch = workspace.create_task_branch(checkout, "1.1", "Aider leftovers")
    (Path(checkout.path) / ".aider.chat.history.md").write_text("chat")
    (Path(checkout.path) / ".aider.tags.cache.v4").mkdir()
    (Path(checkout.path) / ".aider.tags.cache.v4" / "cache.db").write_text("db")
    (Path(checkout.path) / "real.py").write_text("x = 1\n")

    sha = workspace.commit_task(checkout, branch.branch, branch.base_commit, "real", TRAILERS)

    tree = open_repo(checkout)[sha].peel(pygit2.Commit).tree
    assert "real.py" in tree
    assert ".aider.chat.history.md" not in tree
    assert ".aider.tags.cache.v4" not in tree


def test_given_a_refreshed_default_branch_then_a_new_task_branch_starts_from_it(
    workspace: GitWorkspace, checkout, remote
):
    new_tip = remote.commit({"upstream.txt": "new\n"}, "upstream work")

    refreshed = workspace.refresh(checkout)
    branch = workspace.create_task_branch(refreshed, "3.1", "After upstream")

    assert branch.base_commit == new_tip
    assert (Path(checkout.path) / "upstream.txt").exists()


def test_given_a_commit_range_then_diff_paths_and_text_describe_the_change(
    workspace: GitWorkspace, checkout
):
    branch = workspace.create_task_branch(checkout, "1.1", "Docs")
    (Path(checkout.path) / "docs").mkdir()
    (Path(checkout.path) / "docs" / "api.md").write_text("# API\n")
    (Path(checkout.path) / "README.md").write_text("# App\nmore\n")
    sha = workspace.commit_task(checkout, branch.branch, branch.base_commit, "docs", TRAILERS)

    paths = workspace.diff_paths(checkout, branch.base_commit, sha)
    text = workspace.diff_text(checkout, branch.base_commit, branch.branch)

    assert paths == ["README.md", "docs/api.md"]
    assert "+# API" in text
    assert "+more" in text


def test_given_uncommitted_work_then_diff_against_the_working_tree_includes_new_files(
    workspace: GitWorkspace, checkout
):
    branch = workspace.create_task_branch(checkout, "1.1", "Wip")
    (Path(checkout.path) / "new.py").write_text("n = 1\n")

    assert workspace.diff_paths(checkout, branch.base_commit) == ["new.py"]


def test_given_the_default_branch_when_a_file_is_committed_then_only_that_file_changes(
    workspace: GitWorkspace, checkout
):
    (Path(checkout.path) / "scratch.txt").write_text("not part of it")

    sha = workspace.commit_files(
        checkout, {"tasks_list.md": "- [x] 1.1 Done\n"}, "Mark 1.1 done", {"Task-Id": "1.1"}
    )
    unchanged = workspace.commit_files(checkout, {"tasks_list.md": "- [x] 1.1 Done\n"}, "again")

    repo = open_repo(checkout)
    commit = repo.references["refs/heads/main"].peel(pygit2.Commit)
    assert str(commit.id) == sha
    assert commit.tree["tasks_list.md"].data == b"- [x] 1.1 Done\n"
    assert "scratch.txt" not in commit.tree
    assert unchanged is None


@pytest.mark.parametrize("path", ["../escape.md", "/etc/passwd", ".git/config", ""])
def test_given_a_path_outside_the_repository_then_commit_files_refuses(
    workspace: GitWorkspace, checkout, path
):
    with pytest.raises(ConfigError):
        workspace.commit_files(checkout, {path: "x"}, "nope")


# ---------------------------------------------------------------- ignored files
IGNORED = {".gitignore": "build/\n*.egg-info/\n", "app.py": "def f():\n    return 1\n"}
INJECTING = "x;echo 999 passed in 0.01s;exit 0;#.egg-info"
"""A directory name the project's .gitignore hides that would inject into a shell command."""


def files_on_disk(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")
            if ".git" not in p.relative_to(root).parts and not p.is_dir()}


def files_in(repo: pygit2.Repository, rev: str) -> set[str]:
    tree = repo.revparse_single(rev).peel(pygit2.Tree)
    out: set[str] = set()

    def walk(tree: pygit2.Tree, prefix: str) -> None:
        for entry in tree:
            if isinstance(entry, pygit2.Tree):
                walk(entry, f"{prefix}{entry.name}/")
            else:
                out.add(f"{prefix}{entry.name}")

    walk(tree, "")
    return out


def write_ignored_change(root: Path) -> None:
    """The model's edit: app.py imports a helper it put where .gitignore hides it, and an
    ignored directory with a shell-injecting name."""
    (root / "app.py").write_text("from build.helper import two\n\ndef f():\n    return two()\n")
    (root / "build").mkdir()
    (root / "build" / "helper.py").write_text("def two():\n    return 2\n")
    (root / INJECTING).mkdir()
    (root / INJECTING / "__init__.py").write_text("")


def commit_ignored_change(workspace: GitWorkspace, make_remote) -> tuple[Checkout, BranchResult, str | None]:
    """A checkout of the ignores project, task 1.1's branch, and its commit of
    ``write_ignored_change`` (checkout, branch, head)."""
    remote = make_remote("ignores", IGNORED)
    co = workspace.checkout(CUSTOMER, PROJECT, str(uuid.uuid4()), remote.url)
    branch = workspace.create_task_branch(co, "1.1", "Return two")
    write_ignored_change(Path(co.path))
    head = workspace.commit_task(co, branch.branch, branch.base_commit, "two", TRAILERS)
    return co, branch, head


def test_given_ignored_files_written_by_a_task_when_reset_to_its_commit_then_only_the_commit_remains(
    workspace: GitWorkspace, make_remote
):
    co, branch, head = commit_ignored_change(workspace, make_remote)
    root = Path(co.path)
    assert head is not None

    # what VERIFY does before copying the working copy into the container
    workspace.reset_branch(co, branch.branch, branch.base_commit)
    workspace.reset_branch(co, branch.branch, head)

    repo = open_repo(co)
    assert "build/helper.py" not in files_in(repo, head)
    assert files_on_disk(root) == files_in(repo, head)
    assert not (root / "build").exists()
    assert not (root / INJECTING).exists()


def test_given_ignored_files_left_by_a_merged_task_then_the_next_task_branch_starts_without_them(
    workspace: GitWorkspace, make_remote
):
    co, first, _ = commit_ignored_change(workspace, make_remote)
    root = Path(co.path)
    workspace.merge(co, first.branch)

    second = workspace.create_task_branch(co, "1.2", "Next")

    assert not (root / "build").exists()
    assert not (root / INJECTING).exists()
    assert files_on_disk(root) == files_in(open_repo(co), second.base_commit)


# ---------------------------------------------------------------- someone else's task branch
PROTECTED_CONFIG = ('[commands]\ntest = "pytest -q"\n[criteria]\n"test.coverage" = ">=90%"\n'
                    '[protect]\npaths = ["src/auth.py"]\n')


def test_given_a_task_branch_pushed_from_an_older_commit_then_it_is_replaced_at_the_default_tip(
    workspace: GitWorkspace, remote
):
    old = str(remote.tip().id)
    tip = remote.commit({".devteam.toml": PROTECTED_CONFIG}, "protect auth")
    name = "task/1-1-add-things"  # follows from the public task list
    forged = remote.commit({"src/auth.py": "def ok(u, p):\n    return True\n"}, "wip",
                           branch=name, parent=old)
    co = workspace.checkout(CUSTOMER, PROJECT, str(uuid.uuid4()), remote.url)

    branch = workspace.create_task_branch(workspace.refresh(co), "1.1", "Add things")

    assert branch.branch == name
    assert branch.base_commit == tip  # the configuration read at the base protects src/auth.py
    assert branch.head == tip
    assert branch.created is True
    assert workspace.read_file(co, ".devteam.toml", branch.base_commit) == PROTECTED_CONFIG.encode()
    assert (Path(co.path) / "src" / "app.py").exists()
    assert not (Path(co.path) / "src" / "auth.py").exists()

    # the task's own commit replaces the forged branch on the remote; main is untouched
    (Path(co.path) / "things.py").write_text("things = 1\n")
    sha = workspace.commit_task(co, branch.branch, branch.base_commit, "things", TRAILERS)
    result = workspace.push(co, [branch.branch])

    assert result.pushed == [branch.branch]
    assert str(remote.tip(name).id) == sha
    assert [str(p) for p in remote.tip(name).parent_ids] == [tip]
    assert not remote.reaches(forged, name)
    assert str(remote.tip().id) == tip


def test_given_a_task_branch_with_a_history_of_its_own_on_the_tip_then_it_is_not_adopted(
    workspace: GitWorkspace, remote
):
    tip = str(remote.tip().id)
    name = "task/1-1-add-things"
    remote.commit({"one.py": "1\n"}, "one", branch=name, parent=tip)
    remote.commit({"two.py": "2\n"}, "two", branch=name)
    co = workspace.checkout(CUSTOMER, PROJECT, str(uuid.uuid4()), remote.url)

    branch = workspace.create_task_branch(co, "1.1", "Add things")

    assert (branch.base_commit, branch.head, branch.created) == (tip, tip, True)
    assert not (Path(co.path) / "one.py").exists()


def test_given_a_local_task_branch_when_the_default_branch_moved_on_then_it_restarts_at_the_tip(
    workspace: GitWorkspace, checkout, remote
):
    first = workspace.create_task_branch(checkout, "1.1", "Moved")
    (Path(checkout.path) / "mine.py").write_text("m = 1\n")
    workspace.commit_task(checkout, first.branch, first.base_commit, "mine", TRAILERS)
    new_tip = remote.commit({".devteam.toml": PROTECTED_CONFIG}, "protect auth")

    again = workspace.create_task_branch(workspace.refresh(checkout), "1.1", "Moved")

    assert (again.base_commit, again.head, again.created) == (new_tip, new_tip, True)
    assert (Path(checkout.path) / ".devteam.toml").exists()
    assert not (Path(checkout.path) / "mine.py").exists()
