"""check_tree: a commit is measured from object headers before it is checked out, and one
past a limit is a config error naming the setting."""

from __future__ import annotations

import pygit2
import pytest
from tests.support.hostile_repos import Deep, Gitlink, Link, bare_repository, compressible

from runner.errors import Classification, ConfigError
from runner.git.limits import TreeLimits, check_tree
from runner.settings import load_settings

ROOMY = TreeLimits(bytes=10**12, entries=10**6, depth=10_000)


def tip(path) -> tuple[pygit2.Repository, pygit2.Oid]:
    repo = pygit2.Repository(str(path))
    return repo, repo.references["refs/heads/main"].resolve().target


def test_given_a_small_packed_repository_that_expands_then_its_checked_out_size_is_counted(
    tmp_path,
):
    # 200 MB of files that pack to a few kilobytes, measured from object headers
    path = bare_repository(tmp_path / "bomb.git", {"README.md": "hi\n",
                                                   **compressible(10, 20 * 1024 * 1024)})
    repo, commit = tip(path)

    size = check_tree(repo, commit, ROOMY, what="branch main")

    assert size.bytes == 10 * 20 * 1024 * 1024 + 10 + 3  # ten digits, and "hi\n"
    assert size.entries == 12  # README.md, assets/, ten blobs
    with pytest.raises(ConfigError) as refused:
        check_tree(repo, commit, TreeLimits(bytes=128 * 1024 * 1024, entries=10**6,
                                            depth=64), what="branch main of acme/web")
    error = refused.value
    assert error.classification is Classification.CONFIG
    assert error.message == (
        "branch main of acme/web is too large to check out: more than 134,217,728 bytes in "
        "its files (limit DEVTEAM_LIMITS_REPO_BYTES=134217728)")
    assert error.details == {"limit": "DEVTEAM_LIMITS_REPO_BYTES", "value": 134217728}


def test_given_too_many_files_then_the_error_names_the_file_limit(tmp_path):
    path = bare_repository(tmp_path / "many.git",
                           {f"f/{i:03d}.txt": "x" for i in range(300)})
    repo, commit = tip(path)

    assert check_tree(repo, commit, TreeLimits(10**9, 301, 64), what="x").entries == 301
    with pytest.raises(ConfigError) as refused:
        check_tree(repo, commit, TreeLimits(10**9, 300, 64), what="branch main")
    assert "more than 300 files and directories" in refused.value.message
    assert refused.value.details["limit"] == "DEVTEAM_LIMITS_REPO_FILES"


def test_given_a_1200_deep_tree_then_the_error_names_the_depth_limit_and_the_path(tmp_path):
    path = bare_repository(tmp_path / "deep.git", {"README.md": "hi\n", "deep": Deep(1200)})
    repo, commit = tip(path)

    assert check_tree(repo, commit, ROOMY, what="x").depth == 1200
    with pytest.raises(ConfigError) as refused:
        check_tree(repo, commit, TreeLimits(10**9, 10**6, 64), what="branch main")
    message = refused.value.message
    assert "directories nested more than 64 levels deep (deep/d/d/" in message
    assert "(limit DEVTEAM_LIMITS_REPO_DEPTH=64)" in message


def test_given_a_tree_bomb_then_the_walk_stops_at_the_entry_limit(tmp_path):
    # ten references to the same subtree, nested ten levels: 10**10 files if checked out
    repo = pygit2.init_repository(str(tmp_path / "treebomb.git"), bare=True)
    builder = repo.TreeBuilder()
    builder.insert("f", repo.create_blob(b"x"), pygit2.GIT_FILEMODE_BLOB)
    tree = builder.write()
    for _ in range(10):
        builder = repo.TreeBuilder()
        for i in range(10):
            builder.insert(f"d{i}", tree, pygit2.GIT_FILEMODE_TREE)
        tree = builder.write()

    with pytest.raises(ConfigError) as refused:
        check_tree(repo, tree, TreeLimits(10**12, 50_000, 64), what="branch main")
    assert refused.value.details["limit"] == "DEVTEAM_LIMITS_REPO_FILES"


def test_given_links_and_submodules_then_links_count_and_submodules_write_nothing(tmp_path):
    path = bare_repository(tmp_path / "odd.git", {
        "link": Link("/etc/passwd"), "vendor/lib": Gitlink(), "a.txt": "abc"})
    repo, commit = tip(path)

    size = check_tree(repo, commit, ROOMY, what="x")

    assert (size.bytes, size.entries, size.depth) == (len("/etc/passwd") + 3, 4, 1)


def test_the_defaults_and_their_settings():
    limits = TreeLimits.from_settings(load_settings({}))
    assert limits == TreeLimits(bytes=128 * 1024 * 1024, entries=50_000, depth=64)
    custom = load_settings({"DEVTEAM_LIMITS_REPO_BYTES": "1000", "DEVTEAM_LIMITS_REPO_FILES":
                            "10", "DEVTEAM_LIMITS_REPO_DEPTH": "3"})
    assert TreeLimits.from_settings(custom) == TreeLimits(bytes=1000, entries=10, depth=3)
