"""Hostile repositories, built as real bare repositories on disk (pygit2, no working tree).

A repository is described by its files; a value may be text, bytes, a :class:`Link` (a
symbolic link whose target is the given text), a :class:`Gitlink` (a submodule entry) or a
:class:`Deep` tree (directories nested ``depth`` levels, built bottom-up so no recursion
limit is met). ``bare_repository`` writes the objects and one commit on ``main``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pygit2

AUTHOR = pygit2.Signature("Hostile Owner", "owner@hostile.test")


@dataclass(frozen=True)
class Link:
    """A symbolic link to ``target``."""

    target: str


@dataclass(frozen=True)
class Gitlink:
    """A submodule entry (a commit id the checkout never fetches)."""

    commit: str = "1" * 40


@dataclass(frozen=True)
class Deep:
    """``depth`` directories named ``name`` inside each other, ``leaf`` a file at the end."""

    depth: int
    name: str = "d"
    leaf: str = "leaf.txt"


Content = str | bytes | Link | Gitlink | Deep


def bare_repository(path: Path, files: dict[str, Content]) -> Path:
    """A bare repository at ``path`` whose ``main`` holds ``files``; returns ``path``."""
    repo = pygit2.init_repository(str(path), bare=True, initial_head="main")
    repo.config["core.logAllRefUpdates"] = "always"  # pushes leave a reflog entry
    tree = _tree(repo, files)
    repo.create_commit("refs/heads/main", AUTHOR, AUTHOR, "Start", tree, [])
    return path


def refs(path: Path) -> dict[str, str]:
    """Every ref of the repository at ``path`` and its target (what a push would change)."""
    repo = pygit2.Repository(str(path))
    return {name: str(repo.references[name].resolve().target) for name in repo.references}


def _tree(repo: pygit2.Repository, files: dict[str, Content]) -> pygit2.Oid:
    nested: dict[str, object] = {}
    for name, content in files.items():
        node = nested
        *dirs, leaf = name.split("/")
        for d in dirs:
            node = node.setdefault(d, {})  # type: ignore[assignment]
        node[leaf] = content
    # build bottom-up without recursion: deepest directories first
    order: list[tuple[str, dict[str, object]]] = []
    stack: list[tuple[str, dict[str, object]]] = [("", nested)]
    while stack:
        prefix, node = stack.pop()
        order.append((prefix, node))
        stack.extend((f"{prefix}/{k}", v) for k, v in node.items() if isinstance(v, dict))
    built: dict[str, pygit2.Oid] = {}
    for prefix, node in reversed(order):
        builder = repo.TreeBuilder()
        for key, value in sorted(node.items()):
            if isinstance(value, dict):
                builder.insert(key, built[f"{prefix}/{key}"], pygit2.GIT_FILEMODE_TREE)
            elif isinstance(value, Link):
                builder.insert(key, repo.create_blob(value.target.encode()),
                               pygit2.GIT_FILEMODE_LINK)
            elif isinstance(value, Gitlink):
                builder.insert(key, pygit2.Oid(hex=value.commit), pygit2.GIT_FILEMODE_COMMIT)
            elif isinstance(value, Deep):
                builder.insert(key, _deep(repo, value), pygit2.GIT_FILEMODE_TREE)
            else:
                data = value.encode() if isinstance(value, str) else value
                builder.insert(key, repo.create_blob(data), pygit2.GIT_FILEMODE_BLOB)
        built[prefix] = builder.write()
    return built[""]


def _deep(repo: pygit2.Repository, deep: Deep) -> pygit2.Oid:
    builder = repo.TreeBuilder()
    builder.insert(deep.leaf, repo.create_blob(b"at the bottom\n"), pygit2.GIT_FILEMODE_BLOB)
    tree = builder.write()
    for _ in range(deep.depth - 1):
        builder = repo.TreeBuilder()
        builder.insert(deep.name, tree, pygit2.GIT_FILEMODE_TREE)
        tree = builder.write()
    return tree


def compressible(count: int, size: int) -> dict[str, bytes]:
    """``count`` files of ``size`` zero bytes (each slightly different, so none is shared):
    a few kilobytes packed, ``count * size`` bytes checked out."""
    return {f"assets/blob-{i:04d}.bin": b"\0" * size + str(i).encode() for i in range(count)}
