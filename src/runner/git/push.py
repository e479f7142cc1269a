"""Pushing branches: only what the remote lacks, with one fetch-merge-retry on rejection.

Before pushing, the remote's refs are listed; a branch the remote already has at the same
commit is skipped, so running the PUSH stage twice sends nothing the second time. Task
branches belong to the runner and are rewritten by squash commits, so the caller names them
in ``force`` and they are pushed with force (a task branch someone else pushed is
overwritten, never merged); every other branch (the default branch) only fast-forwards.
When the remote refuses a branch of the latter kind because it moved, ``on_rejected``
fetches and merges once and the push is retried; a second refusal is a ``conflict``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

import pygit2

from runner.errors import ConflictError
from runner.git.cache import CallbacksFactory
from runner.git.credentials import remote_heads
from runner.git.remote import RemoteUrl, scrub, translate_git_error
from runner.git.results import PushResult

_NON_FAST_FORWARD = (
    "cannot push because a reference",
    "non-fastforwardable",
    "non-fast-forward",
    "fetch first",
)


def push_branches(
    repo: pygit2.Repository,
    remote: RemoteUrl,
    callbacks: CallbacksFactory,
    names: Sequence[str],
    *,
    on_rejected: Callable[[list[str]], None],
    force: Collection[str] = (),
    secrets: Sequence[str] = (),
) -> PushResult:
    """Push ``names`` (local branch names) to ``origin``, those in ``force`` with force;
    ``on_rejected`` gets the refused branches not in ``force``. See the module docstring."""
    local = {name: _local_tip(repo, name) for name in dict.fromkeys(names)}
    try:
        heads = {h.name: h.oid for h in remote_heads(repo.remotes["origin"], callbacks())}
    except (pygit2.GitError, OSError) as exc:
        raise translate_git_error(exc, "list remote branches", remote, secrets,
                                  network=True) from None
    skipped = [n for n, oid in local.items() if heads.get(f"refs/heads/{n}") == oid]
    todo = [n for n in local if n not in skipped]
    if not todo:
        return PushResult(pushed=[], skipped=skipped)
    rejected = _attempt(repo, remote, callbacks, todo, force, secrets)
    if not rejected:
        return PushResult(pushed=todo, skipped=skipped)
    behind = [n for n in rejected if n not in force]
    if behind:  # a forced branch's refusal needs no fetch: it is retried as it is
        on_rejected(behind)
    again = _attempt(repo, remote, callbacks, todo, force, secrets)
    if again:
        raise ConflictError(
            f"push of {', '.join(again)} rejected again"
            + (" after fetching and merging" if behind else ""),
            details={"branches": list(again), "reasons": dict(again)},
        )
    return PushResult(pushed=todo, skipped=skipped, retried=True)


def _local_tip(repo: pygit2.Repository, name: str) -> pygit2.Oid:
    ref = repo.references.get(f"refs/heads/{name}")
    if ref is None:
        raise ConflictError(f"branch {name} does not exist in the working copy",
                            details={"branch": name})
    target = ref.resolve().target
    assert isinstance(target, pygit2.Oid)
    return target


def _attempt(
    repo: pygit2.Repository,
    remote: RemoteUrl,
    callbacks: CallbacksFactory,
    names: list[str],
    force: Collection[str],
    secrets: Sequence[str],
) -> dict[str, str]:
    """Push once; return ``{branch: reason}`` for every branch the remote refused."""
    specs = [("+" if n in force else "") + f"refs/heads/{n}:refs/heads/{n}" for n in names]
    cb = callbacks()
    try:
        repo.remotes["origin"].push(specs, callbacks=cb)
    except (pygit2.GitError, OSError) as exc:
        message = str(exc)
        if any(marker in message.lower() for marker in _NON_FAST_FORWARD):
            reason = scrub(message, secrets)
            ordinary = [n for n in names if n not in force]
            return dict.fromkeys(ordinary or names, reason)
        raise translate_git_error(exc, "push", remote, secrets, network=True) from None
    return {
        ref.removeprefix("refs/heads/"): scrub(reason, secrets)
        for ref, reason in cb.rejected.items()
    }
