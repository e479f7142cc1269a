"""Checking a repository before it is used: reachable, default branch, a file's bytes.

Used by ``POST /api/devteam/repository/validate``. Nothing is written under the workspace
root: the refs are listed over the wire and, when a file is asked for, the default branch
is fetched into a throw-away bare repository (shallow where the transport supports it).
Every failure is a result with a message and a classification, never an exception. The
URL is checked against the customer's repository policy first (nothing is sent anywhere
for a refused URL), and every failure talking to the remote reads the same (``UNREACHABLE``)
so a probe cannot be used to map ports or guess at other customers' repositories.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import pygit2

from runner.errors import Classification, ConfigError, RunnerError
from runner.git.commits import safe_relpath
from runner.git.credentials import CredentialStore, remote_heads
from runner.git.policy import Refused, RepositoryPolicy
from runner.git.remote import UNREACHABLE, RemoteUrl, translate_git_error
from runner.git.results import RemoteInfo
from runner.settings import Settings, get_settings

MAX_FILE_BYTES = 5 * 1024 * 1024


def probe_remote(
    url: str,
    customer_id: str,
    credentials: CredentialStore,
    *,
    branch: str | None = None,
    paths: Sequence[str] = (),
    settings: Settings | None = None,
    policy: RepositoryPolicy | None = None,
) -> RemoteInfo:
    """Whether ``customer_id`` may use ``url`` and it answers with the customer's
    credentials, its default branch and branches, and the bytes of the first of ``paths``
    that exists on ``branch`` (default: remote HEAD)."""
    settings = settings or get_settings()
    policy = policy or RepositoryPolicy.from_settings(settings)
    secrets = credentials.secret_values()
    decision = policy.decide(customer_id, url)
    if isinstance(decision, Refused):
        unresolved = decision.classification is Classification.TRANSIENT
        return RemoteInfo(reachable=False, classification=str(decision.classification),
                          error=f"connect: {UNREACHABLE}" if unresolved else decision.reason)
    remote = decision.remote
    with tempfile.TemporaryDirectory(prefix="devteam-probe-") as tmp:
        try:
            repo = pygit2.init_repository(tmp, bare=True)
            anon = repo.remotes.create_anonymous(remote.git_url)
            heads = remote_heads(anon, credentials.callbacks(remote, customer_id))
        except (pygit2.GitError, OSError) as exc:
            return _failure(translate_git_error(exc, "connect", remote, secrets, network=True))
        branches = sorted(h.name.removeprefix("refs/heads/") for h in heads
                          if h.name and h.name.startswith("refs/heads/"))
        head = next((h.symref_target for h in heads if h.name == "HEAD"), None)
        default = head.removeprefix("refs/heads/") if head else None
        chosen = branch or default
        info = RemoteInfo(reachable=True, default_branch=default, branches=branches)
        if chosen is None or chosen not in branches:
            missing = f"branch {chosen!r} does not exist" if chosen else "repository is empty"
            return _with_error(info, missing)
        if not paths:
            return info
        try:
            tree = _fetch_tree(repo, remote, chosen, credentials, customer_id)
        except (pygit2.GitError, OSError) as exc:
            err = translate_git_error(exc, "fetch", remote, secrets, network=True)
            return _with_error(info, err.message, str(err.classification))
        return _read_first(info, repo, tree, paths, Path(tmp))


def _fetch_tree(
    repo: pygit2.Repository,
    remote: RemoteUrl,
    branch: str,
    credentials: CredentialStore,
    customer_id: str,
) -> pygit2.Tree:
    spec = f"+refs/heads/{branch}:refs/probe/{branch}"
    anon = repo.remotes.create_anonymous(remote.git_url)
    try:
        anon.fetch([spec], callbacks=credentials.callbacks(remote, customer_id), depth=1)
    except pygit2.GitError as exc:
        if "shallow" not in str(exc).lower():
            raise
        anon.fetch([spec], callbacks=credentials.callbacks(remote, customer_id))
    commit = repo.references[f"refs/probe/{branch}"].peel(pygit2.Commit)
    assert isinstance(commit, pygit2.Commit)
    return commit.tree


def _read_first(info: RemoteInfo, repo: pygit2.Repository, tree: pygit2.Tree,
                paths: Sequence[str], tmp: Path) -> RemoteInfo:
    for path in paths:
        try:
            rel = str(safe_relpath(tmp, path))
        except ConfigError as exc:
            return _with_error(info, exc.message, "config")
        try:
            obj = tree[rel]
        except KeyError:
            continue
        if not isinstance(obj, pygit2.Blob):
            continue
        # the size from the object's header: the blob's own ``size`` inflates all of it
        # (a file of zeros a thousand times its packed size)
        _, size = repo.odb.read_header(obj.id)
        if size > MAX_FILE_BYTES:
            return _with_error(info, f"{rel} is larger than {MAX_FILE_BYTES} bytes", "config")
        return RemoteInfo(
            reachable=True, default_branch=info.default_branch, branches=info.branches,
            file_path=rel, file_bytes=obj.data,
        )
    return info


def _failure(err: RunnerError) -> RemoteInfo:
    return RemoteInfo(reachable=False, error=err.message, classification=str(err.classification))


def _with_error(info: RemoteInfo, message: str, classification: str = "config") -> RemoteInfo:
    return RemoteInfo(
        reachable=info.reachable, default_branch=info.default_branch, branches=info.branches,
        error=message, classification=classification,
    )
