"""What a checkout may put on the host's disk: bytes, entries and depth of a commit's tree.

A repository is compressed: 92 KB of packed objects expanded to a 200 MB working copy, and a
tree 1,200 directories deep broke every recursive walk of the working copy. So before a
commit is checked out (cloned into a working copy, brought in by a fetch, or a task branch
pushed by someone else) its tree is measured from the object database alone — object
headers, never the contents — and a tree past a limit is a ``config`` error that names the
setting. The walk is iterative and stops at the first limit passed, so a "tree bomb" (one
subtree referenced over and over) costs no more than the limits allow.
"""

from __future__ import annotations

from dataclasses import dataclass

import pygit2

from runner.errors import ConfigError
from runner.settings import Settings

_SHOWN_PATH = 120
"""Characters of a too-deep path the error shows (its start)."""


@dataclass(frozen=True)
class TreeLimits:
    """Most bytes in files, entries (files, links, directories) and directory depth."""

    bytes: int
    entries: int
    depth: int

    @classmethod
    def from_settings(cls, settings: Settings) -> TreeLimits:
        box = settings.limits
        return cls(bytes=box.repo_bytes, entries=box.repo_files, depth=box.repo_depth)


@dataclass(frozen=True)
class TreeSize:
    """What a checkout of a tree would write."""

    bytes: int
    entries: int
    depth: int


def check_tree(repo: pygit2.Repository, commit: pygit2.Oid | str, limits: TreeLimits,
               *, what: str) -> TreeSize:
    """Measure the tree of ``commit``; ConfigError naming the limit when one is passed.

    ``what`` names the commit in the message (``"branch main of <repository>"``).
    """
    root = repo[commit].peel(pygit2.Tree)
    sizes: dict[pygit2.Oid, int] = {}
    total = entries = deepest = 0
    stack: list[tuple[pygit2.Tree, int, str]] = [(root, 0, "")]
    while stack:
        tree, depth, prefix = stack.pop()
        for entry in tree:
            entries += 1
            if entries > limits.entries:
                raise _refused(what, f"more than {limits.entries:,} files and directories",
                               "DEVTEAM_LIMITS_REPO_FILES", limits.entries)
            if entry.filemode == pygit2.GIT_FILEMODE_TREE:
                if depth + 1 > limits.depth:
                    path = f"{prefix}{entry.name}"
                    shown = path if len(path) <= _SHOWN_PATH else path[:_SHOWN_PATH] + "/…"
                    raise _refused(
                        what, f"directories nested more than {limits.depth} levels deep "
                        f"({shown})", "DEVTEAM_LIMITS_REPO_DEPTH", limits.depth)
                deepest = max(deepest, depth + 1)
                child = repo[entry.id]
                assert isinstance(child, pygit2.Tree)
                stack.append((child, depth + 1,
                               f"{prefix}{entry.name}/" if len(prefix) <= _SHOWN_PATH else prefix))
            elif entry.filemode != pygit2.GIT_FILEMODE_COMMIT:  # a submodule writes nothing
                size = sizes.get(entry.id)
                if size is None:
                    size = sizes[entry.id] = repo.odb.read_header(entry.id)[1]
                total += size
                if total > limits.bytes:
                    raise _refused(what, f"more than {limits.bytes:,} bytes in its files",
                                   "DEVTEAM_LIMITS_REPO_BYTES", limits.bytes)
    return TreeSize(bytes=total, entries=entries, depth=deepest)


def _refused(what: str, why: str, setting: str, value: int) -> ConfigError:
    return ConfigError(
        f"{what} is too large to check out: {why} (limit {setting}={value})",
        details={"limit": setting, "value": value},
    )
