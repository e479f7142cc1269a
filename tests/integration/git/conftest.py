"""Real bare repositories on disk as remotes, and a workspace configured to use them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pygit2
import pytest
from tests.integration.git.git_remotes import Remote
from tests.support.git_http import repository_access

from runner.git import CredentialStore, GitWorkspace
from runner.settings import Settings, get_settings, reset_settings_cache


@pytest.fixture
def remotes_dir(tmp_path: Path) -> Path:
    path = tmp_path / "remotes"
    path.mkdir()
    return path


@pytest.fixture
def settings(tmp_path: Path, remotes_dir: Path, monkeypatch: pytest.MonkeyPatch
             ) -> Iterator[Settings]:
    monkeypatch.setenv("DEVTEAM_WORKSPACE_ROOT", str(tmp_path / "workspaces"))
    monkeypatch.setenv("DEVTEAM_WORKSPACE_ALLOWED_FILE_ROOTS", str(remotes_dir))
    monkeypatch.setenv("DEVTEAM_WORKSPACE_GIT_CREDENTIALS", "")
    monkeypatch.setenv("DEVTEAM_GIT_CUSTOMER_REPOS", "")
    monkeypatch.setenv("DEVTEAM_GIT_PRIVATE_HOSTS", "")
    monkeypatch.setenv("DEVTEAM_WORKSPACE_AUTHOR_NAME", "Runner Bot")
    monkeypatch.setenv("DEVTEAM_WORKSPACE_AUTHOR_EMAIL", "bot@devteam.test")
    reset_settings_cache()
    yield get_settings()
    reset_settings_cache()


@pytest.fixture
def workspace(settings: Settings) -> GitWorkspace:
    return GitWorkspace(settings, CredentialStore())


@pytest.fixture
def allow(settings: Settings, monkeypatch: pytest.MonkeyPatch):
    """Let customers use repositories on loopback servers, as the operator would:
    ``allow({"customer-123": [server.base]})`` returns the settings read afresh."""

    def configure(prefixes: dict[str, list[str]]) -> Settings:
        for key, value in repository_access(prefixes).items():
            monkeypatch.setenv(key, value)
        reset_settings_cache()
        return get_settings()

    return configure


@pytest.fixture
def make_remote(remotes_dir: Path):
    def make(
        name: str = "app", files: dict[str, str] | None = None, branch: str = "main"
    ) -> Remote:
        path = remotes_dir / f"{name}.git"
        pygit2.init_repository(str(path), bare=True, initial_head=branch)
        remote = Remote(path, branch)
        remote.commit(
            files or {"README.md": "# App\n", "src/app.py": "print('hi')\n"}, "initial commit"
        )
        return remote

    return make


@pytest.fixture
def remote(make_remote) -> Remote:
    return make_remote()
