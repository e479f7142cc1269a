"""Pushing to real remotes: bare repositories over file:// and over smart HTTP on loopback."""

from __future__ import annotations

import uuid
from pathlib import Path

import pygit2
import pytest
from tests.integration.git.git_remotes import open_repo
from tests.support.git_http import GitHttpServer, closed_port

from runner.errors import Classification, ConfigError, ConflictError, RunnerError, TransientError
from runner.git import CredentialStore, GitWorkspace, probe_remote
from runner.git.remote import UNREACHABLE
from runner.settings import get_settings, reset_settings_cache

CUSTOMER = "customer-123"
PROJECT = "customer-123/project-abc"
TOKEN = "ghp_" + "T0pS3cretTokenValue1234567890abcd"


def finished_task(workspace: GitWorkspace, checkout, task_id: str = "1.1"):
    """Branch, commit and merge one task, as the pipeline does before PUSH."""
    branch = workspace.create_task_branch(checkout, task_id, f"Task {task_id}")
    (Path(checkout.path) / f"task_{task_id}.py").write_text(f"task = {task_id!r}\n")
    sha = workspace.commit_task(
        checkout, branch.branch, branch.base_commit, "work", {"Task-Id": task_id}
    )
    workspace.merge(checkout, branch.branch)
    return branch.branch, sha


@pytest.fixture
def with_credentials(allow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Let the customer use repositories under ``base`` (a server's base URL), configure
    ``token`` for it there, and return a workspace using both."""

    def configure(base: str, token: str = TOKEN) -> GitWorkspace:
        path = tmp_path / "git-credentials.toml"
        path.write_text(f'[[credentials]]\ncustomers = ["{CUSTOMER}"]\nurls = ["{base}/"]\n'
                        f'token = "{token}"\n')
        monkeypatch.setenv("DEVTEAM_WORKSPACE_GIT_CREDENTIALS", str(path))
        return GitWorkspace(allow({CUSTOMER: [base]}))

    return configure


def test_given_a_merged_task_when_pushed_then_the_remote_has_both_branches(
    workspace: GitWorkspace, remote
):
    checkout = workspace.checkout(CUSTOMER, PROJECT, str(uuid.uuid4()), remote.url)
    branch, sha = finished_task(workspace, checkout)

    result = workspace.push(checkout, ["main", branch])

    assert result.pushed == ["main", branch]
    assert result.skipped == []
    assert str(remote.tip().id) == sha
    assert str(remote.tip(branch).id) == sha


def test_given_a_pushed_state_when_pushed_again_then_everything_is_skipped(
    workspace: GitWorkspace, remote
):
    checkout = workspace.checkout(CUSTOMER, PROJECT, str(uuid.uuid4()), remote.url)
    branch, _ = finished_task(workspace, checkout)
    workspace.push(checkout, ["main", branch])

    again = workspace.push(checkout, ["main", branch])

    assert again.pushed == []
    assert again.skipped == ["main", branch]


def test_given_the_remote_moved_during_the_task_when_pushed_then_fetch_merge_retry_succeeds(
    workspace: GitWorkspace, remote, tmp_path: Path
):
    checkout = workspace.checkout(CUSTOMER, PROJECT, str(uuid.uuid4()), remote.url)
    branch, ours = finished_task(workspace, checkout)
    theirs = remote.push_from_other_clone(tmp_path, {"theirs.py": "t = 1\n"}, "meanwhile")

    result = workspace.push(checkout, ["main", branch])

    assert result.retried is True
    assert result.pushed == ["main", branch]
    tip = remote.tip()
    assert sorted(str(p) for p in tip.parent_ids) == sorted([ours, theirs])
    assert remote.has("theirs.py")
    assert remote.has("task_1.1.py")
    assert (Path(checkout.path) / "theirs.py").exists()
    assert str(open_repo(checkout).head.target) == str(tip.id)


def test_given_the_remote_moved_with_a_conflicting_change_then_push_fails_as_conflict(
    workspace: GitWorkspace, remote, tmp_path: Path
):
    checkout = workspace.checkout(CUSTOMER, PROJECT, str(uuid.uuid4()), remote.url)
    branch = workspace.create_task_branch(checkout, "1.1", "Readme")
    (Path(checkout.path) / "README.md").write_text("# ours\n")
    workspace.commit_task(checkout, branch.branch, branch.base_commit, "ours", {})
    workspace.merge(checkout, branch.branch)
    remote.push_from_other_clone(tmp_path, {"README.md": "# theirs\n"}, "theirs")

    with pytest.raises(ConflictError) as caught:
        workspace.push(checkout, ["main"])

    assert caught.value.details["paths"] == ["README.md"]


@pytest.mark.sockets
def test_given_a_post_receive_hook_when_pushed_twice_over_http_then_one_push_arrives(
    allow, remote, remotes_dir: Path
):
    remote.add_hook("post-receive", f"cat >> {remotes_dir}/received.log\n")
    with GitHttpServer(remotes_dir) as server:
        workspace = GitWorkspace(allow({CUSTOMER: [server.base]}), CredentialStore())
        url = server.url("app.git")
        checkout = workspace.checkout(CUSTOMER, PROJECT, str(uuid.uuid4()), url)
        branch, sha = finished_task(workspace, checkout)

        first = workspace.push(checkout, ["main", branch])
        second = workspace.push(checkout, ["main", branch])

    received = (remotes_dir / "received.log").read_text().splitlines()
    assert first.pushed == ["main", branch]
    assert second.pushed == []
    assert len(received) == 2  # one push updating two refs, nothing more
    assert {line.split()[2] for line in received} == {"refs/heads/main", f"refs/heads/{branch}"}
    assert str(remote.tip().id) == sha


@pytest.mark.sockets
def test_given_a_server_that_keeps_refusing_when_pushed_then_it_fails_classified(
    allow, remote, remotes_dir: Path
):
    remote.add_hook("pre-receive", "echo 'protected branch' >&2\nexit 1\n")
    with GitHttpServer(remotes_dir) as server:
        workspace = GitWorkspace(allow({CUSTOMER: [server.base]}), CredentialStore())
        checkout = workspace.checkout(CUSTOMER, PROJECT, str(uuid.uuid4()), server.url("app.git"))
        _, _ = finished_task(workspace, checkout)
        before = remote.tip().id

        with pytest.raises(ConflictError) as caught:
            workspace.push(checkout, ["main"])

    assert caught.value.classification is Classification.CONFLICT
    assert caught.value.details["branches"] == ["main"]
    assert remote.tip().id == before


@pytest.mark.sockets
def test_given_a_token_when_the_server_requires_it_then_clone_and_push_use_it(
    with_credentials, remote, remotes_dir: Path
):
    with GitHttpServer(remotes_dir, username="x-access-token", token=TOKEN) as server:
        workspace = with_credentials(server.base)
        checkout = workspace.checkout(CUSTOMER, PROJECT, str(uuid.uuid4()), server.url("app.git"))
        branch, sha = finished_task(workspace, checkout)
        result = workspace.push(checkout, ["main", branch])

    assert result.pushed == ["main", branch]
    assert str(remote.tip().id) == sha
    assert any(status == 401 for _, _, status in server.requests)
    assert any(
        path.endswith("git-receive-pack") and status == 200 for _, path, status in server.requests
    )


@pytest.mark.sockets
def test_given_a_wrong_token_then_the_failure_is_config_and_never_shows_the_token(
    with_credentials, remote, remotes_dir: Path
):
    server = GitHttpServer(remotes_dir, username="x-access-token", token="the-right-one")
    workspace = with_credentials(server.base, TOKEN)
    with server, pytest.raises(ConfigError) as caught:
        workspace.checkout(CUSTOMER, PROJECT, str(uuid.uuid4()), server.url("app.git"))

    assert caught.value.message == f"clone: {UNREACHABLE}"
    assert_no_token(caught.value)


@pytest.mark.sockets
def test_given_an_unreachable_https_remote_with_a_token_then_errors_never_show_the_token(
    with_credentials,
):
    base = f"https://127.0.0.1:{closed_port()}"
    workspace = with_credentials(base)
    url = f"{base}/org/repo.git"

    with pytest.raises(TransientError) as caught:
        workspace.checkout(CUSTOMER, PROJECT, str(uuid.uuid4()), url)
    info = probe_remote(
        url, CUSTOMER, CredentialStore.from_settings(get_settings()), settings=get_settings()
    )

    assert_no_token(caught.value)
    assert info.reachable is False
    assert info.classification == "transient"
    assert TOKEN not in repr(info)
    assert TOKEN not in (info.error or "")
    assert TOKEN in CredentialStore.from_settings(get_settings()).secret_values()


def test_given_a_url_with_embedded_credentials_then_it_is_refused_without_echoing_them(
    workspace: GitWorkspace,
):
    url = f"https://user:{TOKEN}@github.com/org/repo.git"

    with pytest.raises(ConfigError) as caught:
        workspace.sync_cache(CUSTOMER, url)

    assert_no_token(caught.value)


def assert_no_token(error: RunnerError) -> None:
    assert TOKEN not in str(error)
    assert TOKEN not in error.message
    assert TOKEN not in repr(error)
    assert TOKEN not in repr(error.to_dict())


def test_given_pushed_branches_then_a_fresh_clone_sees_them(
    workspace: GitWorkspace, remote, tmp_path: Path
):
    checkout = workspace.checkout(CUSTOMER, PROJECT, str(uuid.uuid4()), remote.url)
    branch, sha = finished_task(workspace, checkout, "4.2")
    workspace.push(checkout, ["main", branch])

    fresh = pygit2.clone_repository(remote.url, str(tmp_path / "fresh"))

    assert str(fresh.head.target) == sha
    assert (tmp_path / "fresh" / "task_4.2.py").read_text() == "task = '4.2'\n"


def test_given_the_remote_grew_past_the_size_limit_when_a_push_is_retried_then_it_is_refused(
    settings, remote, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("DEVTEAM_LIMITS_REPO_BYTES", "100000")
    reset_settings_cache()
    workspace = GitWorkspace(get_settings(), CredentialStore())
    checkout = workspace.checkout(CUSTOMER, PROJECT, str(uuid.uuid4()), remote.url)
    branch, ours = finished_task(workspace, checkout)
    grown = remote.commit({f"assets/{i}.bin": "\0" * 30_000 for i in range(8)}, "assets")

    for _ in range(2):  # a retried PUSH stage is refused the same way
        with pytest.raises(ConfigError) as refused:
            workspace.push(checkout, ["main", branch])

        assert "DEVTEAM_LIMITS_REPO_BYTES=100000" in refused.value.message
        assert str(remote.tip().id) == grown
        assert not (Path(checkout.path) / "assets").exists()
        repo = open_repo(checkout)
        assert str(repo.references["refs/heads/main"].target) == ours
    with pytest.raises(ConfigError):
        workspace.refresh(checkout)


def test_given_a_default_branch_named_like_a_task_branch_then_it_is_never_force_pushed(
    workspace: GitWorkspace, make_remote, tmp_path: Path
):
    remote = make_remote("release", branch="task/release")
    checkout = workspace.checkout(CUSTOMER, PROJECT, str(uuid.uuid4()), remote.url)
    branch, ours = finished_task(workspace, checkout)
    theirs = remote.push_from_other_clone(tmp_path, {"theirs.py": "t = 1\n"}, "meanwhile")

    result = workspace.push(checkout, ["task/release", branch])

    assert result.retried is True
    assert remote.reaches(theirs) and remote.reaches(ours)
    assert str(remote.tip(branch).id) == ours
