"""GitWorkspace: the pipeline's git operations on per-execution working copies (pygit2).

Every call blocks (the pipeline runs them in worker threads) and raises only
``runner.errors`` classes: pygit2 and OS errors are translated here, with messages that
never contain credentials. Working copies are re-opened by calling ``checkout()`` again
with the same ids, so each stage can run in a different process.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import pygit2
from pygit2.enums import CheckoutStrategy

from runner.errors import ConfigError, InfrastructureError, RunnerError
from runner.git import cache as mirror
from runner.git import commits
from runner.git.branch import PREFIX as BRANCH_PREFIX
from runner.git.branch import branch_name
from runner.git.credentials import CredentialStore
from runner.git.limits import TreeLimits, check_tree
from runner.git.merge import merge_into, merge_tracking
from runner.git.paths import cache_dir, customer_root, workspace_paths
from runner.git.policy import RepositoryPolicy
from runner.git.push import push_branches
from runner.git.remote import RemoteUrl, translate_git_error
from runner.git.results import BranchResult, CacheResult, Checkout, MergeResult, PushResult
from runner.removal import remove_tree
from runner.settings import Settings, get_settings

_RESET = (CheckoutStrategy.FORCE | CheckoutStrategy.REMOVE_UNTRACKED
          | CheckoutStrategy.REMOVE_IGNORED)
"""A reset leaves exactly the commit's tree: a file the change wrote where ``.gitignore``
hides it is never committed, so it must not be verified, nor outlive the task. (Nothing of
the service's lives in a working copy: dependency caches are Docker volumes, Aider's
files are in a temporary directory, locks are beside the copy.)"""
_DEFAULT_KEY = "devteam.defaultbranch"
"""Git config key of a working copy recording the default branch chosen at checkout."""
_ORIGIN_URL = "remote.origin.url"


class GitWorkspace:
    """Caches, working copies, task branches, commits, merges and pushes for all customers."""

    def __init__(
        self,
        settings: Settings | None = None,
        credentials: CredentialStore | None = None,
        policy: RepositoryPolicy | None = None,
    ) -> None:
        self._settings = settings or get_settings()
        self._credentials = (
            credentials if credentials is not None
            else CredentialStore.from_settings(self._settings)
        )
        self._policy = policy or RepositoryPolicy.from_settings(self._settings)
        """Checked again before every network operation, whatever the gateway checked."""
        self.root = self._settings.path(self._settings.workspace.root).resolve()

    # ------------------------------------------------------------------ remote and cache
    def sync_cache(self, customer_id: str, repo_url: str) -> CacheResult:
        """Clone the customer's mirror of ``repo_url`` once, fetch it on later calls."""
        remote = self._policy.require(customer_id, repo_url)
        cache = cache_dir(customer_root(self.root, customer_id), repo_url)
        return mirror.sync_mirror(cache, remote, self._callbacks(remote, customer_id),
                                  self._credentials.secret_values())

    def checkout(
        self,
        customer_id: str,
        project_id: str,
        execution_id: str,
        repo_url: str,
        default_branch: str | None = None,
    ) -> Checkout:
        """The execution's working copy: reused when it exists, else cloned from the cache.

        ``origin`` points at the real remote; the default branch is the remote's HEAD unless
        given. ConfigError for unsafe ids, a refused URL, an empty repository or a missing
        default branch.
        """
        remote = self._policy.require(customer_id, repo_url, resolve=False)
        paths = workspace_paths(self.root, customer_id, project_id, execution_id)
        existing = mirror.open_repository(paths.worktree)
        if (
            existing is not None
            and not existing.is_bare
            and not existing.head_is_unborn
            and _DEFAULT_KEY in existing.config
        ):
            if existing.config[_ORIGIN_URL] != remote.git_url:
                raise ConfigError("the execution's working copy belongs to another repository")
            return Checkout(
                path=paths.worktree, customer_id=customer_id, project_id=project_id,
                execution_id=execution_id, repo_url=repo_url,
                default_branch=default_branch or str(existing.config[_DEFAULT_KEY]),
                head=str(existing.head.target),
            )
        cache = self.sync_cache(customer_id, repo_url)
        branch = default_branch or cache.default_branch
        with self._translated("create working copy", remote):
            cache_repo = pygit2.Repository(str(cache.path))
            if not any(cache_repo.branches.local):
                raise ConfigError(f"{remote.display} has no commits")
            if not branch or f"refs/heads/{branch}" not in cache_repo.references:
                raise ConfigError(
                    f"branch {branch!r} does not exist in {remote.display}" if branch
                    else f"{remote.display} has no default branch; name one"
                )
            self._check_size(cache_repo, f"refs/heads/{branch}",
                             f"branch {branch} of {remote.display}")
            repo = mirror.clone_worktree(cache.path, paths.worktree, branch, remote.git_url)
            repo.config[_DEFAULT_KEY] = branch
            return Checkout(
                path=paths.worktree, customer_id=customer_id, project_id=project_id,
                execution_id=execution_id, repo_url=repo_url, default_branch=branch,
                head=str(repo.head.target), cloned=True,
            )

    def refresh(self, checkout: Checkout) -> Checkout:
        """Fetch the remote (through the cache) and bring the default branch up to date.

        The local default branch fast-forwards; if it holds unpushed merges and the remote
        moved on too, the remote is merged in (a conflict raises ConflictError). A remote
        rewritten by a force-push replaces the local branch when nothing local is unpushed,
        else ConflictError (``merge.merge_tracking``). A failed refresh leaves the working
        copy, its record of the remote included, as it was.
        """
        remote = self._policy.require(checkout.customer_id, checkout.repo_url, resolve=False)
        cache = self.sync_cache(checkout.customer_id, checkout.repo_url)
        repo = self._open(checkout)
        branch = checkout.default_branch
        with self._translated("fetch from cache", remote):
            previous = self._target(repo, f"refs/remotes/origin/{branch}")
            mirror.fetch_from_mirror(repo, cache.path)
            with _tracking_kept(repo, branch, previous):
                if f"refs/remotes/origin/{branch}" not in repo.references:
                    raise ConfigError(f"the default branch {branch} no longer exists on the "
                                      "remote")
                self._bring_level(repo, branch, previous, remote)
        return replace(checkout, head=str(repo.head.target))

    # ------------------------------------------------------------------ branches, commits
    def create_task_branch(self, checkout: Checkout, task_id: str, title: str) -> BranchResult:
        """Check out the task's branch, created from the local default branch if new.

        Call ``refresh`` first so the default branch is current. The base is always the
        default branch's tip, so the change is verified with the configuration (protected
        paths, criteria) the default branch has now. An existing branch of the same task
        (local, or on the remote: an earlier run's push) is reused only when it is that tip
        or one commit on it, the shape the runner's squash commits give; any other (forked
        from an older commit, or pushed by someone else with a history of its own) is
        replaced by a new branch at the tip, and the next push overwrites the remote's. The
        working copy is reset to the branch tip, so leftovers of an interrupted attempt
        (ignored files included) are discarded.
        """
        repo = self._open(checkout)
        name = branch_name(task_id, title)
        ref = f"refs/heads/{name}"
        with self._translated("create task branch"):
            default_tip = self._tip(repo, f"refs/heads/{checkout.default_branch}")
            existing = self._target(repo, ref)
            if existing is None:
                existing = self._target(repo, f"refs/remotes/origin/{name}")
            reused = existing is not None and _on_tip(repo, existing, default_tip)
            tip = existing if existing is not None and reused else default_tip
            repo.references.create(ref, tip, force=True)
            if tip != default_tip:  # a branch that may have been pushed by someone else
                self._check_size(repo, ref, f"branch {name}")
            repo.checkout(ref, strategy=_RESET)
        return BranchResult(branch=name, base_commit=str(default_tip), created=not reused,
                            head=str(tip))

    def commit_task(
        self,
        checkout: Checkout,
        branch: str,
        base_commit: str,
        message: str,
        trailers: Mapping[str, str] | None = None,
    ) -> str | None:
        """Commit all working-tree changes as the task's single commit on ``base_commit``.

        A later round replaces the earlier round's commit; the same tree and message give
        back the existing commit. Returns its sha, or None (branch reset to the base) when
        the working tree equals the base. ``trailers`` (``Task-Id``...) end the message.
        """
        repo = self._open(checkout)
        full = commits.compose_message(message, trailers)
        with self._translated("commit task"):
            base = commits.resolve_commit(repo, base_commit)
            if f"refs/heads/{branch}" not in repo.references:
                raise ConfigError(f"branch {branch} does not exist in the working copy")
            if repo.head.name != f"refs/heads/{branch}":
                repo.set_head(f"refs/heads/{branch}")
            tree = commits.stage_worktree(repo, base.tree)
            return commits.squash_commit(repo, branch, base=base, tree=tree, message=full,
                                         signature=self._signature())

    def commit_files(
        self,
        checkout: Checkout,
        files: Mapping[str, str | bytes],
        message: str,
        trailers: Mapping[str, str] | None = None,
    ) -> str | None:
        """Commit several files together on the default branch; None if none changed."""
        repo = self._open(checkout)
        data = {p: c.encode() if isinstance(c, str) else c for p, c in files.items()}
        with self._translated("commit files"):
            self._switch(repo, checkout.default_branch)
            return commits.commit_files_on(
                repo, checkout.default_branch, files=data,
                message=commits.compose_message(message, trailers),
                signature=self._signature(),
            )

    def check_writable(self, checkout: Checkout, paths: Sequence[str]) -> None:
        """ConfigError unless every one of ``paths`` could be written by ``commit_files``
        on the default branch: a regular file or absent, reached through no link, not in
        ``.git`` (checked before any work, so a task's change is never merged first)."""
        repo = self._open(checkout)
        with self._translated("check files"):
            self._switch(repo, checkout.default_branch)
            for path in paths:
                commits.write_target(Path(checkout.path), path)

    def reset_branch(self, checkout: Checkout, branch: str, commit: str) -> None:
        """Point ``branch`` at ``commit`` and check it out, discarding local changes.

        A retried round starts from exactly the commit recorded for it, whatever an
        interrupted earlier try of the same round left behind: untracked and ignored files
        are removed, so the working copy holds exactly the commit's tree.
        """
        repo = self._open(checkout)
        with self._translated("reset branch"):
            target = commits.resolve_commit(repo, commit)
            repo.references.create(f"refs/heads/{branch}", target.id, force=True)
            repo.checkout(f"refs/heads/{branch}", strategy=_RESET)

    def read_file(self, checkout: Checkout, path: str, ref: str | None = None, *,
                  limit: int | None = None) -> bytes | None:
        """A file's bytes at ``ref`` (default: the default branch), or None if absent.

        With ``limit``, a larger file is a ``config`` error (it is never loaded)."""
        repo = self._open(checkout)
        with self._translated("read file"):
            found = self._file(repo, checkout, path, ref, limit)
            if found is None:
                return None
            blob = repo[found]
            assert isinstance(blob, pygit2.Blob)
            return blob.data

    def check_size(self, checkout: Checkout, path: str, limit: int) -> None:
        """A file at the default branch larger than ``limit`` is a ``config`` error, as
        ``read_file`` would raise; the file is not read (an absent one passes)."""
        repo = self._open(checkout)
        with self._translated("read file"):
            self._file(repo, checkout, path, None, limit)

    @staticmethod
    def _file(repo: pygit2.Repository, checkout: Checkout, path: str, ref: str | None,
              limit: int | None) -> pygit2.Oid | None:
        """The blob of ``path`` at ``ref`` (None: absent or not a file), its size checked
        against ``limit`` from the object's header: looking the blob up inflates it all."""
        rel = commits.safe_relpath(Path(checkout.path), path)
        commit = commits.resolve_commit(repo, ref or f"refs/heads/{checkout.default_branch}")
        try:
            entry = commit.tree[str(rel)]
        except KeyError:
            return None
        kind, size = repo.odb.read_header(entry.id)
        if kind != pygit2.enums.ObjectType.BLOB:
            return None
        if limit is not None and size > limit:
            raise ConfigError(f"{path} is larger than {limit} bytes", details={"file": path})
        return entry.id

    # ------------------------------------------------------------------ merge and push
    def merge(self, checkout: Checkout, branch: str) -> MergeResult:
        """Merge ``branch`` into the default branch and check the default branch out.

        Fast-forward when possible, else a merge commit; already merged gives no new
        commit. A conflict raises ConflictError naming the paths (``details["paths"]``)
        and leaves the working copy as it was.
        """
        repo = self._open(checkout)
        with self._translated("merge"):
            source = self._tip(repo, f"refs/heads/{branch}")
            result = merge_into(
                repo, f"refs/heads/{checkout.default_branch}", source, self._signature(),
                f"Merge branch '{branch}' into {checkout.default_branch}\n",
            )
            self._switch(repo, checkout.default_branch)
        return result

    def push(self, checkout: Checkout, branch_names: Sequence[str]) -> PushResult:
        """Push branches to ``origin``, skipping what the remote already has.

        Task branches are the runner's: pushed with force, replacing whatever the remote
        has. The default branch is never forced: a rejection (the remote moved) fetches,
        measures the remote branch against the size limits, merges it once (as ``refresh``
        does) and retries; refused again → ConflictError; network failures →
        TransientError.
        """
        remote = self._policy.require(checkout.customer_id, checkout.repo_url)
        repo = self._open(checkout)
        forced = [n for n in branch_names
                  if n.startswith(BRANCH_PREFIX) and n != checkout.default_branch]

        def integrate(rejected: list[str]) -> None:
            cache = self.sync_cache(checkout.customer_id, checkout.repo_url)
            with self._translated("fetch after rejected push", remote):
                previous = {n: self._target(repo, f"refs/remotes/origin/{n}") for n in rejected}
                mirror.fetch_from_mirror(repo, cache.path)
                for name in rejected:
                    with _tracking_kept(repo, name, previous[name]):
                        self._bring_level(repo, name, previous[name], remote)

        return push_branches(repo, remote, self._callbacks(remote, checkout.customer_id),
                             branch_names, on_rejected=integrate, force=forced,
                             secrets=self._credentials.secret_values())

    # ------------------------------------------------------------------ diffs, removal
    def diff_paths(self, checkout: Checkout, base: str, head: str | None = None) -> list[str]:
        """Paths changed between ``base`` and ``head`` (None: the working tree)."""
        repo = self._open(checkout)
        with self._translated("diff"):
            return commits.changed_paths(commits.diff_between(repo, base, head))

    def diff_text(self, checkout: Checkout, base: str, head: str | None = None) -> str:
        """The patch between ``base`` and ``head`` (None: the working tree)."""
        repo = self._open(checkout)
        with self._translated("diff"):
            return commits.diff_between(repo, base, head).patch or ""

    def remove(self, checkout: Checkout) -> list[str]:
        """Delete the working copy (no error when already gone, however deep its tree);
        returns what could not be removed (the reaper tries again later)."""
        path = Path(checkout.path).resolve()
        if not path.is_relative_to(self.root) or path == self.root:
            raise ConfigError("refusing to remove a path outside the workspace root")
        return remove_tree(path)

    # ------------------------------------------------------------------ helpers
    def _check_size(self, repo: pygit2.Repository, ref: str, what: str) -> None:
        """ConfigError naming the limit when checking ``ref`` out would write more bytes,
        files or directory levels than ``DEVTEAM_LIMITS_REPO_*`` allow."""
        target = repo.references[ref].resolve().target
        assert isinstance(target, pygit2.Oid)
        check_tree(repo, target, TreeLimits.from_settings(self._settings), what=what)

    def _bring_level(self, repo: pygit2.Repository, name: str, previous: pygit2.Oid | None,
                     remote: RemoteUrl) -> None:
        """Merge the fetched ``origin/<name>`` into ``name`` (``merge.merge_tracking``),
        after measuring it when checking it out would write anything new."""
        tracking = f"refs/remotes/origin/{name}"
        theirs = self._target(repo, tracking)
        if theirs is not None and theirs != self._target(repo, f"refs/heads/{name}"):
            self._check_size(repo, tracking, f"branch {name} of {remote.display}")
        merge_tracking(repo, name, self._signature(), previous)

    def _callbacks(self, remote: RemoteUrl, customer_id: str) -> mirror.CallbacksFactory:
        return lambda: self._credentials.callbacks(remote, customer_id)

    def _signature(self) -> pygit2.Signature:
        ws = self._settings.workspace
        return pygit2.Signature(ws.author_name, ws.author_email)

    def _open(self, checkout: Checkout) -> pygit2.Repository:
        repo = mirror.open_repository(Path(checkout.path))
        if repo is None or repo.is_bare:
            raise InfrastructureError("the execution's working copy is missing",
                                      details={"execution_id": checkout.execution_id})
        return repo

    @staticmethod
    def _tip(repo: pygit2.Repository, ref: str) -> pygit2.Oid:
        if ref not in repo.references:
            raise ConfigError(f"{ref.removeprefix('refs/heads/')} does not exist")
        target = repo.references[ref].resolve().target
        assert isinstance(target, pygit2.Oid)
        return target

    @staticmethod
    def _target(repo: pygit2.Repository, ref: str) -> pygit2.Oid | None:
        """The commit ``ref`` points at, or None when there is no such ref."""
        found = repo.references.get(ref)
        if found is None:
            return None
        target = found.resolve().target
        assert isinstance(target, pygit2.Oid)
        return target

    def _switch(self, repo: pygit2.Repository, branch: str) -> None:
        if repo.head_is_unborn or repo.head.name != f"refs/heads/{branch}":
            repo.checkout(f"refs/heads/{branch}")

    @contextlib.contextmanager
    def _translated(self, action: str, remote: RemoteUrl | None = None) -> Iterator[None]:
        try:
            yield
        except RunnerError:
            raise
        except (pygit2.GitError, OSError, KeyError) as exc:
            raise translate_git_error(
                exc if not isinstance(exc, KeyError) else pygit2.GitError(str(exc)),
                action, remote, self._credentials.secret_values(),
            ) from None


def _on_tip(repo: pygit2.Repository, commit: pygit2.Oid, default_tip: pygit2.Oid) -> bool:
    """Whether ``commit`` is ``default_tip`` or a single commit on it."""
    if commit == default_tip:
        return True
    found = repo[commit].peel(pygit2.Commit)
    return list(found.parent_ids) == [default_tip]


@contextlib.contextmanager
def _tracking_kept(repo: pygit2.Repository, name: str, previous: pygit2.Oid | None
                   ) -> Iterator[None]:
    """Put ``refs/remotes/origin/<name>`` back at ``previous`` if the block raises.

    The remote-tracking ref is the remote state the local branch was last brought level
    with; a fetch whose result was refused (too large, rewritten, conflicting) must not
    count as that, or the next attempt would take a rewritten remote for one that moved
    on and merge the removed history back."""
    try:
        yield
    except BaseException:
        ref = f"refs/remotes/origin/{name}"
        if previous is not None:
            repo.references.create(ref, previous, force=True)
        elif ref in repo.references:
            repo.references.delete(ref)
        raise
