"""Bringing one commit into a branch without touching the working tree.

The merge is computed in memory (``git_merge_commits``): a conflict raises before any file
or ref changes, so the working copy is left exactly as it was — there is nothing to abort.
Two histories with no common commit are never merged: the remote, or anyone who can push
to it, could otherwise graft any history onto the customer's branch.

The remote's history is the customer's to rewrite. When it was force-pushed (its new tip
does not descend from the tip we last saw), merging it would put the removed commits (a
leaked secret, say) back with our next push. So the local branch is reset to the new tip
when it holds nothing unpushed, and the merge stops with a ``conflict`` when it does.
"""

from __future__ import annotations

import pygit2
from pygit2.enums import CheckoutStrategy

from runner.errors import ConflictError
from runner.git.results import MergeResult


def conflict_paths(index: pygit2.Index) -> list[str]:
    """The paths with conflicts in a merge result index (sorted, each once)."""
    conflicts = index.conflicts
    if conflicts is None:
        return []
    paths: set[str] = set()
    for ancestor, ours, theirs in conflicts:
        for entry in (ancestor, ours, theirs):
            if entry is not None:
                paths.add(entry.path)
    return sorted(paths)


def merge_tracking(
    repo: pygit2.Repository,
    name: str,
    signature: pygit2.Signature,
    previous: pygit2.Oid | None,
) -> None:
    """Bring ``refs/remotes/origin/<name>`` into the local branch ``name`` (created if absent).

    ``previous`` is where the remote-tracking ref pointed before the fetch that moved it:
    the remote state the local branch was last brought level with (None when unknown).
    A remote that moved on from it is merged in (a fast-forward when nothing local is
    unpushed). A remote rewritten since (see the module docstring) resets the branch to the
    new tip when the branch holds nothing beyond ``previous``; otherwise ConflictError,
    and nothing changes. When the branch is checked out, its files are updated too.
    """
    ref = f"refs/heads/{name}"
    tracking = repo.references.get(f"refs/remotes/origin/{name}")
    if tracking is None:
        return
    theirs = tracking.resolve().target
    assert isinstance(theirs, pygit2.Oid)
    if ref not in repo.references:
        repo.references.create(ref, theirs)
        return
    ours = repo.references[ref].resolve().target
    assert isinstance(ours, pygit2.Oid)
    rewritten = previous is not None and not _contains(repo, theirs, previous)
    if previous is not None and rewritten and not _contains(repo, previous, ours):
        raise ConflictError(
            f"the remote's {name} was rewritten (force-pushed) while this working copy "
            f"holds unpushed commits on {name}; merging would push the rewritten-away "
            "history back, so nothing was merged (a person must reconcile the branch)",
            details={"target": name, "remote": str(theirs), "previous": str(previous),
                     "local": str(ours)},
        )
    on_it = not repo.head_is_unborn and repo.head.name == ref
    if on_it:
        # Detach at the old tip so the checkout below compares against it and updates the
        # files that changed (with HEAD already on the new tip, nothing would look changed).
        repo.set_head(ours)
    try:
        if rewritten:
            repo.references.create(ref, theirs, force=True)
        else:
            merge_into(repo, ref, theirs, signature,
                       f"Merge remote-tracking branch 'origin/{name}' into {name}\n")
    finally:
        if on_it:
            repo.checkout(ref, strategy=CheckoutStrategy.SAFE)


def merge_into(
    repo: pygit2.Repository,
    target_ref: str,
    source: pygit2.Oid,
    signature: pygit2.Signature,
    message: str,
) -> MergeResult:
    """Merge commit ``source`` into the branch ``target_ref`` (a full ref name).

    Already contained → nothing changes; ``target`` behind ``source`` → fast-forward;
    otherwise a merge commit with parents ``[target, source]``. A conflict, or histories
    with no common commit, raise ConflictError with ``details["paths"]`` and change nothing.
    """
    target = repo.references[target_ref].resolve().target
    assert isinstance(target, pygit2.Oid)
    if target == source or repo.descendant_of(target, source):
        return MergeResult(commit=str(target), fast_forward=False, already_merged=True)
    if repo.descendant_of(source, target):
        repo.references.create(target_ref, source, force=True)
        return MergeResult(commit=str(source), fast_forward=True, already_merged=False)
    if repo.merge_base(target, source) is None:
        branch = target_ref.removeprefix("refs/heads/")
        raise ConflictError(
            f"refusing to merge {source} into {branch}: the two histories share no commit",
            details={"paths": [], "target": branch, "source": str(source)},
        )
    index = repo.merge_commits(target, source)
    paths = conflict_paths(index)
    if paths:
        branch = target_ref.removeprefix("refs/heads/")
        shown = ", ".join(paths[:20]) + (" ..." if len(paths) > 20 else "")
        raise ConflictError(
            f"merge into {branch} conflicts in {len(paths)} path(s): {shown}",
            details={"paths": paths, "target": branch, "source": str(source)},
        )
    tree = index.write_tree(repo)
    commit = repo.create_commit(target_ref, signature, signature, message, tree, [target, source])
    return MergeResult(commit=str(commit), fast_forward=False, already_merged=False)


def _contains(repo: pygit2.Repository, tip: pygit2.Oid, commit: pygit2.Oid) -> bool:
    """Whether ``commit`` is ``tip`` or one of its ancestors."""
    return tip == commit or bool(repo.descendant_of(tip, commit))
