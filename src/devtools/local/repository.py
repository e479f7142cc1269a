"""The repository ``devteam run`` is pointed at: a local path (the user's own repository,
bare or not) or a URL the service may reach.

The pipeline clones and pushes by URL, so a local path becomes a ``file://`` URL that only
the processes ``devteam run`` starts are allowed to use. A working copy is never pushed
into (its checked-out branch would move under the user's feet): the run gets a bare copy
of the checked-out branch under the project's state directory, and what the run merged
comes back as a new branch ``devteam/run-<id>`` of the user's repository. A bare
repository is what a remote is, so it is used directly.
"""

from __future__ import annotations

import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

import pygit2

from devtools.local.errors import USAGE, CommandError
from pipeline.stages.tasklist_io import MAX_TASK_LIST_BYTES
from runner.errors import ConfigError
from runner.git import CredentialStore, probe_remote
from runner.git.paths import cache_dir, customer_root
from runner.git.remote import check_remote_url, parse_remote_url
from runner.settings import Settings
from runner.tasklist import TASK_LIST_NAMES, TaskList, TaskListError

RESULT_BRANCH = "devteam/run-{id}"
_SCP = re.compile(r"^[A-Za-z0-9._~-]+@[A-Za-z0-9.-]+:")


@dataclass(frozen=True)
class FoundTaskList:
    tasks: TaskList
    path: str


class Target(Protocol):
    """What ``devteam run`` needs of the repository, wherever it is."""

    name: str
    """The repository's name (the default project is ``local/<name>``)."""
    label: str
    """Where it is, as the user would recognise it (a path, a URL without credentials)."""
    dirty: bool
    """Whether a working copy has uncommitted changes (they are not part of the run)."""

    def describe(self) -> str: ...

    def task_list(self, customer: str) -> FoundTaskList | None:
        """The task list on the branch that will run (None when there is none);
        CommandError when it is broken or the repository cannot be read. ``customer``
        chooses the server-side git credentials a remote is read with."""

    def stage(self, workdir: Path) -> tuple[str, list[Path]]:
        """``(url, roots)``: the URL the pipeline clones and pushes, and the directories
        its processes must be allowed to use as ``file://`` repositories."""

    def final_task_list(self, path: str, customer: str) -> FoundTaskList | None:
        """The task list at ``path`` as the run left it; None when it cannot be read."""

    def bring_back(self, execution_id: uuid.UUID) -> str:
        """Make the run's result reachable by the user; say where it is (one line)."""

    def cleanup(self, settings: Settings, customer: str) -> None:
        """Remove what :meth:`stage` made (``settings`` and ``customer`` locate the
        pipeline's cache of it)."""


def resolve_target(repo: str, settings: Settings) -> Target:
    """A local repository for a path (or ``file://`` URL), otherwise a remote one. A path
    that is not a git repository, or a URL the service refuses, is a usage error."""
    text = repo.strip()
    if text.startswith("file:"):
        return LocalRepository.open(Path(unquote(urlsplit(text).path)))
    if Path(text).expanduser().exists() or not ("://" in text or _SCP.match(text)):
        return LocalRepository.open(Path(text))
    return RemoteRepository.check(text, settings)


class LocalRepository:
    """The user's own repository on this machine."""

    def __init__(self, repo: pygit2.Repository, shown: str) -> None:
        self.shown = shown
        self.git_dir = Path(repo.path).resolve()
        self.workdir = Path(repo.workdir).resolve() if repo.workdir else None
        self.bare = repo.is_bare
        if repo.head_is_unborn:
            raise CommandError(f"{shown} has no commits yet; commit a task list first")
        if repo.head_is_detached:
            raise CommandError(
                f"{shown} has no branch checked out (detached HEAD); check out the branch "
                "to run"
            )
        self.head_ref = repo.head.name
        self.branch = repo.head.shorthand
        self.start = str(repo.head.target)
        top = self.workdir or self.git_dir
        self.label = str(top)
        self.name = top.name.removesuffix(".git") or "repository"
        self.dirty = (not self.bare) and bool(repo.status(untracked_files="no"))
        self.staged: Path | None = None

    @classmethod
    def open(cls, path: Path) -> LocalRepository:
        shown = str(path)
        where = path.expanduser()
        if not where.is_dir():
            what = "does not exist" if not where.exists() else "is not a directory"
            raise CommandError(f"{shown} {what}", code=USAGE)
        try:
            repo = pygit2.Repository(
                str(where.resolve()), pygit2.enums.RepositoryOpenFlag.NO_SEARCH
            )
        except pygit2.GitError:
            raise CommandError(
                f"{shown} is not a git repository (give the top of a working copy, or a bare "
                "repository)",
                code=USAGE,
            ) from None
        return cls(repo, shown)

    def describe(self) -> str:
        if self.bare:
            return f"{self.git_dir} (bare; the run pushes to its branch {self.branch})"
        return (
            f"{self.workdir} (branch {self.branch} at {self.start[:8]}; your branch is not "
            "touched: the run works on a copy and brings the result back as a new branch)"
        )

    def task_list(self, customer: str) -> FoundTaskList | None:
        repo = pygit2.Repository(str(self.git_dir))
        return _read_task_list(repo, repo.get(self.start), TASK_LIST_NAMES)

    def stage(self, workdir: Path) -> tuple[str, list[Path]]:
        if self.bare:
            return f"file://{self.git_dir}", [self.git_dir]
        dest = (workdir / "origin.git").resolve()
        dest.parent.mkdir(parents=True, exist_ok=True)
        copy = pygit2.init_repository(str(dest), bare=True, initial_head=self.branch)
        try:
            source = copy.remotes.create_anonymous(str(self.git_dir))
            source.fetch([f"+{self.head_ref}:{self.head_ref}"])
        except pygit2.GitError as exc:
            raise CommandError(f"cannot copy {self.shown} to {dest}: {exc}") from None
        self.staged = dest
        return f"file://{dest}", [dest]

    def _pushed_to(self) -> pygit2.Repository:
        return pygit2.Repository(str(self.staged or self.git_dir))

    def final_task_list(self, path: str, customer: str) -> FoundTaskList | None:
        try:
            repo = self._pushed_to()
            return _read_task_list(repo, repo.references[self.head_ref].peel(), (path,))
        except (pygit2.GitError, KeyError, CommandError):
            return None

    def bring_back(self, execution_id: uuid.UUID) -> str:
        if not self.bare and self.staged is None:
            return ""  # no copy was made (or it is kept elsewhere)
        tip = str(self._pushed_to().references[self.head_ref].target)
        if tip == self.start:
            return f"nothing was merged: {self.branch} of {self.shown} is as it was"
        if self.staged is None:
            return f"the merged work is on {self.branch} of {self.git_dir} (now {tip[:8]})"
        name = RESULT_BRANCH.format(id=execution_id.hex[:8])
        try:
            mine = pygit2.Repository(str(self.git_dir))
            mine.remotes.create_anonymous(str(self.staged)).fetch(
                [f"+{self.head_ref}:refs/heads/{name}"]
            )
        except pygit2.GitError as exc:
            kept, self.staged = self.staged, None  # keep the copy: it holds the result
            return (
                f"could not create branch {name} in {self.shown} ({exc}); the result is on "
                f"{self.branch} of {kept}"
            )
        return (
            f"the merged work is on the new branch {name} of {self.shown} "
            f"({self.branch} is untouched); see it with `git log {self.branch}..{name}`"
        )

    def cleanup(self, settings: Settings, customer: str) -> None:
        """Remove the bare copy, and the pipeline's cache of it (nothing else will use it)."""
        if self.staged is None:
            return
        root = customer_root(settings.path(settings.workspace.root), customer)
        cache = cache_dir(root, f"file://{self.staged}")
        shutil.rmtree(cache, ignore_errors=True)
        cache.with_suffix(".lock").unlink(missing_ok=True)
        shutil.rmtree(self.staged, ignore_errors=True)
        self.staged = None


class RemoteRepository:
    """A repository the service reaches by URL (https, ssh, loopback http)."""

    def __init__(self, url: str, settings: Settings) -> None:
        self.url = url
        self.settings = settings
        self.label = parse_remote_url(url).display
        self.dirty = False
        last = parse_remote_url(url).path.rstrip("/").rsplit("/", 1)[-1]
        self.name = last.removesuffix(".git") or "repository"

    @classmethod
    def check(cls, url: str, settings: Settings) -> RemoteRepository:
        try:
            check_remote_url(url, settings)
        except ConfigError as exc:
            raise CommandError(f"--repo: {exc.message}", code=USAGE) from None
        return cls(url, settings)

    def describe(self) -> str:
        return f"{self.label} (the run pushes to its default branch)"

    def _read(self, paths: tuple[str, ...], customer: str) -> FoundTaskList | None:
        try:
            credentials = CredentialStore.from_settings(self.settings)
        except ConfigError as exc:
            raise CommandError(exc.message) from None
        info = probe_remote(self.url, customer, credentials, paths=paths, settings=self.settings)
        if not info.reachable or info.error:
            raise CommandError(info.error or "the repository cannot be reached")
        if info.file_bytes is None or info.file_path is None:
            return None
        return _parse(info.file_bytes, info.file_path)

    def task_list(self, customer: str) -> FoundTaskList | None:
        return self._read(TASK_LIST_NAMES, customer)

    def stage(self, workdir: Path) -> tuple[str, list[Path]]:
        return self.url, []

    def final_task_list(self, path: str, customer: str) -> FoundTaskList | None:
        try:
            return self._read((path,), customer)
        except CommandError:
            return None

    def bring_back(self, execution_id: uuid.UUID) -> str:
        return f"the merged work is on the default branch of {self.label}"

    def cleanup(self, settings: Settings, customer: str) -> None:
        return None


def _read_task_list(
    repo: pygit2.Repository, commit: object, names: tuple[str, ...]
) -> FoundTaskList | None:
    if not isinstance(commit, pygit2.Commit):
        return None
    for name in names:
        try:
            blob = repo[commit.tree[name].id]
        except KeyError:
            continue
        if isinstance(blob, pygit2.Blob):
            return _parse(blob.data, name)
    return None


def _parse(data: bytes, path: str) -> FoundTaskList:
    if len(data) > MAX_TASK_LIST_BYTES:
        raise CommandError(f"{path} is larger than {MAX_TASK_LIST_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise CommandError(f"{path} is not UTF-8 text") from None
    try:
        return FoundTaskList(TaskList.parse(text, source=path), path)
    except TaskListError as exc:
        first = exc.problems[0]
        more = len(exc.problems) - 1
        raise CommandError(
            f"{path}:{first.line}: {first.message}"
            + (f" (and {more} more; `devteam tasks validate {path}` lists them)" if more else "")
        ) from None
