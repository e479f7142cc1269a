"""Helpers for the git integration tests: a bare repository standing in for GitHub."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import pygit2

SIG = pygit2.Signature("Other Developer", "other@example.com")
_counter = itertools.count()


class Remote:
    """A bare repository standing in for GitHub, with a way for "someone else" to push."""

    def __init__(self, path: Path, branch: str) -> None:
        self.path = path
        self.branch = branch
        self.repo = pygit2.Repository(str(path))

    @property
    def url(self) -> str:
        return f"file://{self.path}"

    def tip(self, branch: str | None = None) -> pygit2.Commit:
        ref = self.repo.references[f"refs/heads/{branch or self.branch}"]
        return ref.peel(pygit2.Commit)

    def read(self, path: str, branch: str | None = None) -> bytes:
        return self.tip(branch).tree[path].data

    def has(self, path: str, branch: str | None = None) -> bool:
        return path in self.tip(branch).tree

    def branches(self) -> list[str]:
        return sorted(self.repo.branches.local)

    def commit(
        self, files: dict[str, str | None], message: str = "change", branch: str | None = None,
        parent: str | None = None,
    ) -> str:
        """Commit directly into the bare repository (``None`` deletes a file), on the
        branch's tip or on ``parent``; the branch is moved to the new commit."""
        branch = branch or self.branch
        ref = f"refs/heads/{branch}"
        if parent is not None:
            parents = [pygit2.Oid(hex=parent)]
        else:
            parents = [self.repo.references[ref].target] if ref in self.repo.references else []
        index = pygit2.Index()
        if parents:
            index.read_tree(self.repo[parents[0]].peel(pygit2.Commit).tree)
        for name, text in files.items():
            if text is None:
                index.remove(name)
            else:
                blob = self.repo.create_blob(text.encode())
                index.add(pygit2.IndexEntry(name, blob, pygit2.enums.FileMode.BLOB))
        tree = index.write_tree(self.repo)
        sha = self.repo.create_commit(None, SIG, SIG, message, tree, parents)
        self.repo.references.create(ref, sha, force=True)
        return str(sha)

    def force_push(self, sha: str, branch: str | None = None) -> None:
        """Point ``branch`` at ``sha`` whatever it pointed at (``git push --force``)."""
        self.repo.references.create(f"refs/heads/{branch or self.branch}",
                                    pygit2.Oid(hex=sha), force=True)

    def reaches(self, sha: str, branch: str | None = None) -> bool:
        """Whether commit ``sha`` is in the history of ``branch``."""
        tip = self.tip(branch).id
        return str(tip) == sha or self.repo.descendant_of(tip, pygit2.Oid(hex=sha))

    def push_from_other_clone(self, tmp: Path, files: dict[str, str], message: str) -> str:
        """Another developer clones, commits and pushes (a real clone and push)."""
        where = tmp / f"other-{next(_counter)}"
        clone = pygit2.clone_repository(self.url, str(where), checkout_branch=self.branch)
        for name, text in files.items():
            (where / name).parent.mkdir(parents=True, exist_ok=True)
            (where / name).write_text(text)
            clone.index.add(name)
        clone.index.write()
        tree = clone.index.write_tree()
        sha = clone.create_commit("HEAD", SIG, SIG, message, tree, [clone.head.target])
        clone.remotes["origin"].push([f"refs/heads/{self.branch}:refs/heads/{self.branch}"])
        shutil.rmtree(where)
        return str(sha)

    def add_hook(self, name: str, script: str) -> None:
        hook = self.path / "hooks" / name
        hook.write_text("#!/bin/sh\n" + script)
        hook.chmod(0o755)


def open_repo(checkout) -> pygit2.Repository:
    return pygit2.Repository(str(checkout.path))


def is_clean(repo: pygit2.Repository) -> bool:
    return not {p: s for p, s in repo.status().items() if s != pygit2.enums.FileStatus.IGNORED}
