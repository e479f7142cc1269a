"""The per-customer bare mirror of a repository: cloned once, fetched after.

Working copies are cloned from the mirror (a local, fast clone) and fetch from it, so the
remote is contacted once per sync whatever the number of executions. A lock file beside
the mirror serialises writers across processes and threads; a clone is made in a
temporary directory and renamed into place, so a crash never leaves half a mirror.
"""

from __future__ import annotations

import contextlib
import fcntl
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pygit2
from pygit2.enums import FetchPrune

from runner.git.credentials import GitCallbacks
from runner.git.remote import RemoteUrl, translate_git_error
from runner.git.results import CacheResult
from runner.removal import remove_tree

HEADS = "+refs/heads/*:refs/heads/*"
TAGS = "+refs/tags/*:refs/tags/*"
CallbacksFactory = Callable[[], GitCallbacks]


@contextlib.contextmanager
def locked(path: Path, *, exclusive: bool = True) -> Iterator[None]:
    """Hold an advisory lock on ``path`` (created if missing) for the ``with`` block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def lock_path(cache: Path) -> Path:
    return cache.with_suffix(".lock")


def open_repository(path: Path) -> pygit2.Repository | None:
    """The repository at ``path``, or None when there is none (or only a broken one)."""
    if not path.exists():
        return None
    try:
        return pygit2.Repository(str(path))
    except pygit2.GitError:
        return None


def sync_mirror(
    cache: Path, remote: RemoteUrl, callbacks: CallbacksFactory, secrets: Sequence[str] = ()
) -> CacheResult:
    """Clone ``remote`` into ``cache`` the first time, fetch (with pruning) after."""
    with locked(lock_path(cache)):
        repo = open_repository(cache)
        action = "clone" if repo is None else "fetch"
        try:
            if repo is None:
                repo = _clone(cache, remote, callbacks)
                cloned = True
            else:
                _fetch(repo, remote, callbacks)
                cloned = False
        except (pygit2.GitError, OSError) as exc:
            raise translate_git_error(exc, action, remote, secrets, network=True) from None
        return CacheResult(path=cache, cloned=cloned, default_branch=head_branch(repo))


def head_branch(repo: pygit2.Repository) -> str | None:
    """The existing branch ``HEAD`` names, or None (empty repository, detached HEAD)."""
    try:
        target = repo.references["HEAD"].target
    except (KeyError, pygit2.GitError):
        return None
    if isinstance(target, str) and target.startswith("refs/heads/") and target in repo.references:
        return target.removeprefix("refs/heads/")
    return None


def _clone(cache: Path, remote: RemoteUrl, callbacks: CallbacksFactory) -> pygit2.Repository:
    cache.parent.mkdir(parents=True, exist_ok=True)
    if cache.exists():
        remove_tree(cache)
    tmp = cache.parent / f".{cache.name}.{uuid.uuid4().hex}.tmp"
    try:
        repo = pygit2.init_repository(str(tmp), bare=True)
        _mirror_remote(repo, "origin", remote.git_url)
        _fetch(repo, remote, callbacks)
        tmp.rename(cache)
    finally:
        if tmp.exists():
            remove_tree(tmp)
    return pygit2.Repository(str(cache))


def _mirror_remote(repo: pygit2.Repository, name: str, url: str) -> pygit2.Remote:
    repo.remotes.create(name, url, HEADS)
    repo.remotes.add_fetch(name, TAGS)
    return repo.remotes[name]


def _fetch(repo: pygit2.Repository, remote: RemoteUrl, callbacks: CallbacksFactory) -> None:
    origin = repo.remotes["origin"]
    if origin.url != remote.git_url:
        repo.remotes.set_url("origin", remote.git_url)
        origin = repo.remotes["origin"]
    origin.fetch(callbacks=callbacks(), prune=FetchPrune.PRUNE)
    for head in origin.list_heads(connect=False):
        if head.name == "HEAD" and head.symref_target:
            if repo.references["HEAD"].target != head.symref_target:
                repo.set_head(head.symref_target)
            break


def clone_worktree(cache: Path, worktree: Path, branch: str, origin_url: str
                   ) -> pygit2.Repository:
    """A working copy of ``branch`` cloned from the mirror, whose ``origin`` is the real
    remote and whose ``cache`` remote fetches from the mirror into ``refs/remotes/origin``."""
    worktree.parent.mkdir(parents=True, exist_ok=True)
    remove_tree(worktree)
    tmp = worktree.parent / f".{worktree.name}.{uuid.uuid4().hex}.tmp"
    try:
        with locked(lock_path(cache), exclusive=False):
            pygit2.clone_repository(str(cache), str(tmp), checkout_branch=branch)
        repo = pygit2.Repository(str(tmp))
        repo.remotes.set_url("origin", origin_url)
        repo.remotes.create("cache", str(cache), "+refs/heads/*:refs/remotes/origin/*")
        tmp.rename(worktree)
    finally:
        if tmp.exists():
            remove_tree(tmp)
    return pygit2.Repository(str(worktree))


def fetch_from_mirror(repo: pygit2.Repository, cache: Path) -> None:
    """Update ``refs/remotes/origin/*`` of a working copy from the mirror (pruning)."""
    if "cache" not in set(repo.remotes.names()):
        repo.remotes.create("cache", str(cache), "+refs/heads/*:refs/remotes/origin/*")
    elif repo.remotes["cache"].url != str(cache):
        repo.remotes.set_url("cache", str(cache))
    with locked(lock_path(cache), exclusive=False):
        repo.remotes["cache"].fetch(prune=FetchPrune.PRUNE)
