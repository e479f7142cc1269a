"""Making the pipeline's commits and reading diffs, on an open working copy.

A task branch is always exactly one commit ahead of its base: each IMPLEMENT round's
result replaces the previous round's commit (squash semantics), and committing the same
tree and message again returns the existing commit instead of making a new one.
"""

from __future__ import annotations

import fnmatch
import os
import re
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath

import pygit2
from pygit2.enums import DiffOption

from runner.errors import ConfigError

_TRAILER_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}")
DEFAULT_EXCLUDES = (".aider*",)
"""New top-level paths never committed: Aider's history files and tag cache."""


def compose_message(message: str, trailers: Mapping[str, str] | None = None) -> str:
    """``message`` followed by a blank line and ``Key: value`` trailer lines."""
    text = message.strip() or "Update"
    lines = []
    for key, value in (trailers or {}).items():
        if not _TRAILER_KEY.fullmatch(key):
            raise ConfigError(f"invalid commit trailer name {key!r}")
        lines.append(f"{key}: {' '.join(str(value).split())}")
    return text + ("\n\n" + "\n".join(lines) if lines else "") + "\n"


def stage_worktree(
    repo: pygit2.Repository, base_tree: pygit2.Tree, excludes: Sequence[str] = DEFAULT_EXCLUDES
) -> pygit2.Oid:
    """Stage every change of the working tree (additions, edits, deletions); return the tree.

    Paths ignored by ``.gitignore`` stay out, as do new top-level paths matching
    ``excludes`` (unless the base commit already tracks them).
    """
    workdir = Path(repo.workdir)
    index = repo.index
    index.read(force=True)
    index.add_all()
    for entry in list(index):
        path = workdir / entry.path
        gone = not (path.exists() or path.is_symlink())
        if gone or (_excluded(entry.path, excludes)
                    and entry.path.split("/", 1)[0] not in base_tree):
            index.remove(entry.path)
    tree: pygit2.Oid = index.write_tree()
    index.write()
    return tree


def squash_commit(
    repo: pygit2.Repository,
    branch: str,
    *,
    base: pygit2.Commit,
    tree: pygit2.Oid,
    message: str,
    signature: pygit2.Signature,
) -> str | None:
    """Point ``branch`` at one commit of ``tree`` on ``base``; None when ``tree`` is base's."""
    ref = f"refs/heads/{branch}"
    tip = repo.references[ref].resolve().target
    if tree == base.tree_id:
        if tip != base.id:
            repo.references.create(ref, base.id, force=True)
        return None
    current = repo[tip].peel(pygit2.Commit)
    if (
        current.parent_ids == [base.id]
        and current.tree_id == tree
        and current.message == message
    ):
        return str(current.id)
    commit = repo.create_commit(None, signature, signature, message, tree, [base.id])
    repo.references.create(ref, commit, force=True)
    return str(commit)


def _lexical_relpath(path: str) -> PurePosixPath:
    """``path`` when, as written, it names something inside the repository (not ``.git``)."""
    rel = PurePosixPath(path)
    if (
        not path
        or rel.is_absolute()
        or any(part in ("..", ".git", "") for part in rel.parts)
        or "\x00" in path
    ):
        raise ConfigError(f"{path!r} is not a path inside the repository")
    return rel


def safe_relpath(workdir: Path, path: str) -> PurePosixPath:
    """``path`` as a repository-relative path that stays inside ``workdir``, else ConfigError."""
    rel = _lexical_relpath(path)
    resolved = (workdir / rel).resolve()
    if not resolved.is_relative_to(workdir.resolve()):
        raise ConfigError(f"{path!r} leads outside the repository")
    return rel


def write_target(workdir: Path, path: str) -> Path:
    """Where the service may write ``path``: a regular file inside the working copy, reached
    without following any link and never inside ``.git``. ConfigError otherwise.

    A repository can make ``task_outcomes.md`` a link to ``.git/config`` (or a directory
    on the way a link to anywhere): writing through it would change git's own files, or
    the host's. The message names only the repository-relative path.
    """
    rel = _lexical_relpath(path)
    root = workdir.resolve()
    current = root
    for depth, part in enumerate(rel.parts, start=1):
        current = current / part
        try:
            info = current.lstat()
        except FileNotFoundError:
            break
        shown = "/".join(rel.parts[:depth])
        if stat.S_ISLNK(info.st_mode):
            raise ConfigError(
                f"refusing to write {path}: {shown} is a symbolic link in the repository; "
                "the service writes only regular files inside the repository (replace the "
                "link with a file, or remove it)", details={"path": path})
        if depth == len(rel.parts) and not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"refusing to write {path}: it is not a regular file",
                              details={"path": path})
    target = root / rel
    inside = target.resolve().relative_to(root) if target.resolve().is_relative_to(root) else None
    if inside is None or inside.parts[:1] in ((), (".git",)):
        raise ConfigError(f"refusing to write {path}: it resolves into .git or outside the "
                          "repository", details={"path": path})
    return target


def _write_file(target: Path, content: bytes) -> None:
    """Write ``content`` to ``target`` without following a link at its last component."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)


def commit_files_on(
    repo: pygit2.Repository,
    branch: str,
    *,
    files: Mapping[str, bytes],
    message: str,
    signature: pygit2.Signature,
) -> str | None:
    """Write each file and commit exactly those files, together, on ``branch`` (checked
    out); None when none of them changed."""
    workdir = Path(repo.workdir)
    ref = f"refs/heads/{branch}"
    tip = repo.references[ref].peel(pygit2.Commit)
    index = repo.index
    index.read_tree(tip.tree)
    targets = {path: write_target(workdir, path) for path in files}  # all, before any write
    for path, content in files.items():
        _write_file(targets[path], content)
        index.add(str(_lexical_relpath(path)))
    tree = index.write_tree()
    index.write()
    if tree == tip.tree_id:
        return None
    return str(repo.create_commit(ref, signature, signature, message, tree, [tip.id]))


def resolve_commit(repo: pygit2.Repository, rev: str) -> pygit2.Commit:
    """The commit ``rev`` names (a sha, a branch, ``HEAD``...); ConfigError if none."""
    try:
        commit = repo.revparse_single(rev).peel(pygit2.Commit)
    except (KeyError, ValueError, pygit2.GitError):
        raise ConfigError(f"no commit named {rev!r} in the working copy") from None
    assert isinstance(commit, pygit2.Commit)
    return commit


def diff_between(repo: pygit2.Repository, base: str, head: str | None) -> pygit2.Diff:
    """Diff ``base``..``head``; ``head=None`` compares with the working tree (untracked too)."""
    old = resolve_commit(repo, base)
    if head is None:
        flags = (DiffOption.INCLUDE_UNTRACKED | DiffOption.RECURSE_UNTRACKED_DIRS
                 | DiffOption.SHOW_UNTRACKED_CONTENT)
        diff = old.tree.diff_to_workdir(flags=flags)
    else:
        diff = repo.diff(old, resolve_commit(repo, head))
    diff.find_similar()
    return diff


def changed_paths(diff: pygit2.Diff) -> list[str]:
    """Every path a diff touches (both sides of a rename), sorted."""
    paths = {p for d in diff.deltas for p in (d.old_file.path, d.new_file.path) if p}
    return sorted(paths)


def _excluded(path: str, patterns: Sequence[str]) -> bool:
    top = path.split("/", 1)[0]
    return any(fnmatch.fnmatchcase(top, pattern) for pattern in patterns)
