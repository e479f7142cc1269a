"""The per-customer cache and the per-execution working copies, against bare remotes."""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pygit2
import pytest
from tests.integration.git.git_remotes import is_clean, open_repo

from runner.errors import ConfigError
from runner.git import GitWorkspace
from runner.git.paths import workspace_paths
from runner.settings import get_settings, reset_settings_cache

CUSTOMER = "customer-123"
PROJECT = "customer-123/project-abc"


def new_execution() -> str:
    return str(uuid.uuid4())


def test_given_a_new_remote_when_synced_twice_then_it_is_cloned_once_and_fetched_after(
    workspace: GitWorkspace, remote
):
    first = workspace.sync_cache(CUSTOMER, remote.url)
    new_tip = remote.commit({"CHANGELOG.md": "v2\n"}, "second")
    second = workspace.sync_cache(CUSTOMER, remote.url)

    assert first.cloned is True
    assert second.cloned is False
    assert second.path == first.path
    mirror = pygit2.Repository(str(second.path))
    assert mirror.is_bare
    assert str(mirror.references["refs/heads/main"].target) == new_tip
    assert second.default_branch == "main"


def test_given_a_branch_deleted_on_the_remote_when_fetched_then_the_cache_prunes_it(
    workspace: GitWorkspace, remote
):
    remote.commit({"x": "1"}, "on feature", branch="feature")
    cache = workspace.sync_cache(CUSTOMER, remote.url)
    assert "refs/heads/feature" in pygit2.Repository(str(cache.path)).references
    remote.repo.references.delete("refs/heads/feature")

    workspace.sync_cache(CUSTOMER, remote.url)

    assert "refs/heads/feature" not in pygit2.Repository(str(cache.path)).references


def test_given_concurrent_syncs_of_one_repository_then_exactly_one_clones(
    workspace: GitWorkspace, remote
):
    barrier = threading.Barrier(4)
    results = []

    def sync():
        barrier.wait()
        results.append(workspace.sync_cache(CUSTOMER, remote.url))

    threads = [threading.Thread(target=sync) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(r.cloned for r in results) == [False, False, False, True]
    assert len({r.path for r in results}) == 1


def test_given_two_processes_syncing_at_once_then_exactly_one_clones(settings, remote):
    code = (
        "import sys\n"
        "from runner.git import CredentialStore, GitWorkspace\n"
        "r = GitWorkspace(credentials=CredentialStore()).sync_cache(sys.argv[1], sys.argv[2])\n"
        "print(r.cloned)\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, CUSTOMER, remote.url], stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = sorted(p.communicate(timeout=60)[0].strip() for p in procs)

    assert outputs == ["False", "True"]
    assert all(p.returncode == 0 for p in procs)


def test_given_a_remote_whose_head_is_trunk_when_checked_out_then_trunk_is_the_default(
    workspace: GitWorkspace, make_remote
):
    remote = make_remote("trunky", branch="trunk")

    checkout = workspace.checkout(CUSTOMER, PROJECT, new_execution(), remote.url)

    repo = open_repo(checkout)
    assert checkout.default_branch == "trunk"
    assert repo.head.name == "refs/heads/trunk"
    assert checkout.head == str(remote.tip().id)
    assert (Path(checkout.path) / "src" / "app.py").read_text() == "print('hi')\n"


def test_given_a_checkout_then_origin_is_the_real_remote_not_the_cache(
    workspace: GitWorkspace, remote
):
    checkout = workspace.checkout(CUSTOMER, PROJECT, new_execution(), remote.url)

    repo = open_repo(checkout)
    assert repo.remotes["origin"].url == remote.url
    assert checkout.cloned is True


def test_given_an_existing_working_copy_when_checked_out_again_then_it_is_reused(
    workspace: GitWorkspace, remote
):
    execution = new_execution()
    first = workspace.checkout(CUSTOMER, PROJECT, execution, remote.url)
    (Path(first.path) / "work-in-progress.txt").write_text("keep me")

    again = workspace.checkout(CUSTOMER, PROJECT, execution, remote.url)

    assert again.cloned is False
    assert again.path == first.path
    assert again.default_branch == "main"
    assert (Path(again.path) / "work-in-progress.txt").read_text() == "keep me"


def test_given_an_explicit_default_branch_then_it_is_checked_out_and_remembered(
    workspace: GitWorkspace, remote
):
    remote.commit({"dev.txt": "dev"}, "dev work", branch="develop")
    execution = new_execution()

    checkout = workspace.checkout(CUSTOMER, PROJECT, execution, remote.url, "develop")
    reopened = workspace.checkout(CUSTOMER, PROJECT, execution, remote.url)

    assert open_repo(checkout).head.name == "refs/heads/develop"
    assert (Path(checkout.path) / "dev.txt").exists()
    assert reopened.default_branch == "develop"


def test_given_a_missing_default_branch_then_checkout_is_a_config_error(
    workspace: GitWorkspace, remote
):
    with pytest.raises(ConfigError, match="does not exist"):
        workspace.checkout(CUSTOMER, PROJECT, new_execution(), remote.url, "nope")


def test_given_the_remote_moved_when_refreshed_then_the_default_branch_fast_forwards(
    workspace: GitWorkspace, remote
):
    checkout = workspace.checkout(CUSTOMER, PROJECT, new_execution(), remote.url)
    new_tip = remote.commit({"NEWS.md": "news\n"}, "news")

    refreshed = workspace.refresh(checkout)

    assert refreshed.head == new_tip
    assert (Path(checkout.path) / "NEWS.md").read_text() == "news\n"
    assert is_clean(open_repo(checkout))


def test_given_a_file_url_outside_the_allowed_roots_then_it_is_refused(
    workspace: GitWorkspace, tmp_path: Path
):
    outside = tmp_path / "elsewhere.git"
    pygit2.init_repository(str(outside), bare=True)

    with pytest.raises(ConfigError, match="outside the allowed file roots"):
        workspace.sync_cache(CUSTOMER, f"file://{outside}")
    with pytest.raises(ConfigError, match="outside the allowed file roots"):
        workspace.checkout(CUSTOMER, PROJECT, new_execution(), str(outside))


def test_given_a_symlink_inside_the_allowed_root_pointing_out_then_it_is_refused(
    workspace: GitWorkspace, tmp_path: Path, remotes_dir: Path
):
    outside = tmp_path / "secret.git"
    pygit2.init_repository(str(outside), bare=True)
    (remotes_dir / "innocent.git").symlink_to(outside)

    with pytest.raises(ConfigError, match="outside the allowed file roots"):
        workspace.sync_cache(CUSTOMER, f"file://{remotes_dir}/innocent.git")


def test_given_no_allowed_file_roots_then_file_urls_are_refused(settings, remote, monkeypatch):
    monkeypatch.setenv("DEVTEAM_WORKSPACE_ALLOWED_FILE_ROOTS", "")
    reset_settings_cache()
    production = GitWorkspace(get_settings())

    with pytest.raises(ConfigError, match="not allowed on this server"):
        production.sync_cache(CUSTOMER, remote.url)


def test_given_two_customers_with_the_same_repository_then_their_paths_are_disjoint(
    workspace: GitWorkspace, remote
):
    execution = new_execution()
    a = workspace.checkout("acme", "acme/web", execution, remote.url)
    b = workspace.checkout("globex", "globex/web", execution, remote.url)
    cache_a = workspace.sync_cache("acme", remote.url).path
    cache_b = workspace.sync_cache("globex", remote.url).path

    assert a.path != b.path
    assert cache_a != cache_b
    acme_root = workspace_paths(workspace.root, "acme", "acme/web", execution).customer_root
    globex_root = workspace_paths(workspace.root, "globex", "globex/web", execution).customer_root
    for path in (Path(a.path), cache_a):
        assert path.is_relative_to(acme_root)
        assert not path.is_relative_to(globex_root)
    for path in (Path(b.path), cache_b):
        assert path.is_relative_to(globex_root)
        assert not path.is_relative_to(acme_root)


def test_given_a_project_of_another_customer_then_checkout_is_refused(
    workspace: GitWorkspace, remote
):
    with pytest.raises(ConfigError, match="does not belong"):
        workspace.checkout("acme", "globex/web", new_execution(), remote.url)


def test_given_a_checkout_when_removed_then_its_directory_is_gone(workspace: GitWorkspace, remote):
    checkout = workspace.checkout(CUSTOMER, PROJECT, new_execution(), remote.url)

    workspace.remove(checkout)
    workspace.remove(checkout)

    assert not Path(checkout.path).exists()
    assert workspace.sync_cache(CUSTOMER, remote.url).path.exists()


def test_given_a_missing_repository_then_checkout_is_a_config_error(
    workspace: GitWorkspace, remotes_dir: Path
):
    with pytest.raises(ConfigError, match="not found"):
        workspace.checkout(CUSTOMER, PROJECT, new_execution(), f"file://{remotes_dir}/nope.git")
