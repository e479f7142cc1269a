"""Hostile repositories against GitWorkspace: what a checkout may write is measured first,
content libgit2 refuses is ``config``, and the service never writes through a link."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pygit2
import pytest
from tests.support.hostile_repos import (
    Deep,
    Gitlink,
    Link,
    bare_repository,
    compressible,
    refs,
)

from runner.errors import Classification, ConfigError, RunnerError
from runner.git import GitWorkspace
from runner.git.paths import workspace_paths
from runner.settings import PROJECT_ROOT

CUSTOMER = "customer-123"
PROJECT = "customer-123/project-abc"
SIG = pygit2.Signature("Someone Else", "else@example.com")
HOSTILE_GITMODULES = (
    '[submodule "evil"]\n\tpath = evil\n\turl = https://example.invalid/x.git\n'
    "\tupdate = !touch {marker}\n"
)


def url(path: Path) -> str:
    return f"file://{path}"


def no_host_path(workspace: GitWorkspace, error: RunnerError) -> None:
    text = f"{error.message} {error.details}"
    for host in (str(workspace.root), str(PROJECT_ROOT)):
        assert host not in text, text


def copies_of(workspace: GitWorkspace) -> list[Path]:
    """Working copies (and half-made ones) in the project's work directory."""
    return sorted((workspace.root / CUSTOMER / "work").glob("*/*"))


def push(path: Path, files: dict[str, bytes], branch: str = "main", message: str = "more"
         ) -> None:
    """Someone else commits ``files`` onto ``branch`` of the bare repository at ``path``."""
    repo = pygit2.Repository(str(path))
    parent = repo.references["refs/heads/main"].peel(pygit2.Commit)
    index = pygit2.Index()
    index.read_tree(parent.tree)
    for name, data in files.items():
        index.add(pygit2.IndexEntry(name, repo.create_blob(data), pygit2.enums.FileMode.BLOB))
    tree = index.write_tree(repo)
    repo.create_commit(f"refs/heads/{branch}", SIG, SIG, message, tree, [parent.id])


@pytest.mark.slow  # writes hundreds of megabytes: seconds on a shared disk
def test_given_a_small_repository_that_expands_to_200_mb_then_checkout_refuses_it(
    workspace: GitWorkspace, remotes_dir: Path
):
    bomb = bare_repository(remotes_dir / "bomb.git", {"README.md": "hi\n",
                                                      **compressible(10, 20 * 1024 * 1024)})
    packed = sum(f.stat().st_size for f in bomb.rglob("*") if f.is_file())
    assert packed < 2 * 1024 * 1024  # what the remote holds: a few hundred kilobytes

    with pytest.raises(ConfigError) as refused:
        workspace.checkout(CUSTOMER, PROJECT, str(uuid.uuid4()), url(bomb))

    error = refused.value
    assert error.classification is Classification.CONFIG
    assert "more than 134,217,728 bytes in its files" in error.message
    assert "DEVTEAM_LIMITS_REPO_BYTES=134217728" in error.message
    assert error.details["limit"] == "DEVTEAM_LIMITS_REPO_BYTES"
    assert copies_of(workspace) == []  # nothing was checked out
    no_host_path(workspace, error)


def test_given_a_1200_deep_tree_then_checkout_refuses_it_naming_the_depth_limit(
    workspace: GitWorkspace, remotes_dir: Path
):
    deep = bare_repository(remotes_dir / "deep.git", {"README.md": "hi\n", "deep": Deep(1200)})

    with pytest.raises(ConfigError) as refused:
        workspace.checkout(CUSTOMER, PROJECT, str(uuid.uuid4()), url(deep))

    assert "nested more than 64 levels deep (deep/d/d/" in refused.value.message
    assert "DEVTEAM_LIMITS_REPO_DEPTH=64" in refused.value.message
    assert copies_of(workspace) == []


@pytest.mark.slow  # writes hundreds of megabytes: seconds on a shared disk
def test_given_a_later_push_that_expands_then_refresh_refuses_it_and_keeps_the_copy(
    workspace: GitWorkspace, remotes_dir: Path
):
    path = bare_repository(remotes_dir / "grows.git", {"README.md": "hi\n"})
    co = workspace.checkout(CUSTOMER, PROJECT, str(uuid.uuid4()), url(path))
    push(path, compressible(8, 20 * 1024 * 1024))

    with pytest.raises(ConfigError) as refused:
        workspace.refresh(co)

    assert "DEVTEAM_LIMITS_REPO_BYTES" in refused.value.message
    repo = pygit2.Repository(str(co.path))
    assert str(repo.head.target) == co.head
    assert not (Path(co.path) / "assets").exists()


@pytest.mark.slow  # writes hundreds of megabytes: seconds on a shared disk
def test_given_a_task_branch_pushed_by_someone_else_that_is_too_large_then_it_is_refused(
    workspace: GitWorkspace, remotes_dir: Path
):
    path = bare_repository(remotes_dir / "branch.git", {"README.md": "hi\n"})
    co = workspace.checkout(CUSTOMER, PROJECT, str(uuid.uuid4()), url(path))
    branch = "task/1-1-add-things"
    push(path, compressible(8, 20 * 1024 * 1024), branch=branch)
    co = workspace.refresh(co)

    with pytest.raises(ConfigError) as refused:
        workspace.create_task_branch(co, "1.1", "Add things")

    assert refused.value.message.startswith(f"branch {branch} is too large to check out")
    assert not (Path(co.path) / "assets").exists()


def test_given_a_gitmodules_with_a_command_update_then_checkout_is_config_and_runs_nothing(
    workspace: GitWorkspace, remotes_dir: Path, tmp_path: Path
):
    marker = tmp_path / "pwned"
    path = bare_repository(remotes_dir / "submodule.git", {
        "README.md": "hi\n",
        ".gitmodules": HOSTILE_GITMODULES.format(marker=marker),
        "evil": Gitlink(),
    })

    with pytest.raises(RunnerError) as refused:
        workspace.checkout(CUSTOMER, PROJECT, str(uuid.uuid4()), url(path))

    # it used to be infrastructure (retried five times); the repository is what is wrong
    error = refused.value
    assert error.classification is Classification.CONFIG, error.to_dict()
    assert "invalid value for submodule 'update' property" in error.message
    assert not marker.exists()
    assert copies_of(workspace) == []  # the half-made clone is gone too
    no_host_path(workspace, error)


@pytest.mark.parametrize("link", [".git/config", "../../../../../../etc/hostname"])
def test_given_task_outcomes_as_a_link_then_the_service_refuses_to_write_through_it(
    workspace: GitWorkspace, remotes_dir: Path, link: str
):
    path = bare_repository(remotes_dir / "link.git", {
        "tasks_list.md": "- [ ] 1.1 Do it (Dependencies: [])\n",
        "task_outcomes.md": Link(link),
    })
    before = refs(path)
    co = workspace.checkout(CUSTOMER, PROJECT, str(uuid.uuid4()), url(path))
    config = (Path(co.path) / ".git" / "config").read_bytes()

    with pytest.raises(ConfigError) as checked:
        workspace.check_writable(co, ["tasks_list.md", "task_outcomes.md"])
    with pytest.raises(ConfigError) as written:
        workspace.commit_files(co, {"tasks_list.md": "- [x] 1.1 Do it\n",
                                    "task_outcomes.md": "# Task outcomes\n"}, "Mark task 1.1")

    for error in (checked.value, written.value):
        assert error.message.startswith(
            "refusing to write task_outcomes.md: task_outcomes.md is a symbolic link"), error
        no_host_path(workspace, error)
    assert (Path(co.path) / ".git" / "config").read_bytes() == config
    # nothing was written or committed, not even the task list beside it
    repo = pygit2.Repository(str(co.path))
    assert str(repo.head.target) == co.head
    assert (Path(co.path) / "tasks_list.md").read_text().startswith("- [ ]")
    assert refs(path) == before


def test_given_a_directory_link_on_the_way_then_the_write_is_refused(
    workspace: GitWorkspace, remotes_dir: Path, tmp_path: Path
):
    outside = tmp_path / "outside"
    outside.mkdir()
    path = bare_repository(remotes_dir / "dirlink.git", {"README.md": "hi\n",
                                                         "docs": Link(str(outside))})
    co = workspace.checkout(CUSTOMER, PROJECT, str(uuid.uuid4()), url(path))

    with pytest.raises(ConfigError) as refused:
        workspace.commit_files(co, {"docs/task_outcomes.md": "x"}, "outcomes")

    assert "docs is a symbolic link" in refused.value.message
    assert list(outside.iterdir()) == []


def test_given_regular_files_then_writing_them_still_works(
    workspace: GitWorkspace, remotes_dir: Path
):
    path = bare_repository(remotes_dir / "plain.git", {"tasks_list.md": "- [ ] 1.1 x\n"})
    co = workspace.checkout(CUSTOMER, PROJECT, str(uuid.uuid4()), url(path))

    workspace.check_writable(co, ["tasks_list.md", "task_outcomes.md", "docs/new.md"])
    commit = workspace.commit_files(co, {"tasks_list.md": "- [x] 1.1 x\n",
                                         "docs/task_outcomes.md": "# done\n"}, "done")

    assert commit is not None
    tree = pygit2.Repository(str(co.path))[commit].peel(pygit2.Commit).tree
    assert tree["docs/task_outcomes.md"].data == b"# done\n"


def test_given_a_working_copy_with_a_deep_tree_then_remove_deletes_it(
    workspace: GitWorkspace, remotes_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    from runner.settings import get_settings, reset_settings_cache

    monkeypatch.setenv("DEVTEAM_LIMITS_REPO_DEPTH", "2000")  # the operator allows it
    reset_settings_cache()
    deep = GitWorkspace(get_settings(), workspace._credentials)
    path = bare_repository(remotes_dir / "deep-ok.git", {"README.md": "hi\n",
                                                         "deep": Deep(1200)})
    execution = str(uuid.uuid4())
    co = deep.checkout(CUSTOMER, PROJECT, execution, url(path))
    assert (Path(co.path) / "deep" / "d").is_dir()

    assert deep.remove(co) == []
    assert not workspace_paths(deep.root, CUSTOMER, PROJECT, execution).worktree.exists()


READ_OVER_LIMIT = """
import sys
from pathlib import Path
from runner.errors import ConfigError
from runner.git import GitWorkspace
from runner.git.results import Checkout

def peak_kib():  # this process's own peak (ru_maxrss starts from the parent's at fork)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

checkout = Checkout(path=Path(sys.argv[1]), customer_id="c", project_id="c/p",
                    execution_id="e", repo_url="file:///none", default_branch="main", head="")
workspace = GitWorkspace()
before = peak_kib()
try:
    workspace.read_file(checkout, "outcomes.md", limit=1024 * 1024)
except ConfigError as exc:
    print("refused:", exc.message)
print("grew_kib", peak_kib() - before)
"""


def test_given_a_file_over_the_read_limit_then_it_is_refused_without_being_inflated(
    tmp_path: Path,
) -> None:
    """A 32 MB file of zeros is 32 KB in git: looking its blob up inflated all of it
    into the worker's memory just to learn its size (RSS grew by 32 MB). Its header says
    the size without inflating it."""
    repo = pygit2.init_repository(str(tmp_path / "copy"), initial_head="main")
    blob = repo.create_blob(bytes(32 * 1024 * 1024))
    index = pygit2.Index()
    index.add(pygit2.IndexEntry("outcomes.md", blob, pygit2.enums.FileMode.BLOB))
    repo.create_commit("refs/heads/main", SIG, SIG, "big", index.write_tree(repo), [])

    done = subprocess.run([sys.executable, "-c", READ_OVER_LIMIT, str(tmp_path / "copy")],
                          capture_output=True, text=True, timeout=120, check=True)

    assert "refused: outcomes.md is larger than 1048576 bytes" in done.stdout, done.stdout
    grew_kib = int(done.stdout.rsplit("grew_kib", 1)[1])
    assert grew_kib < 8 * 1024, done.stdout
