"""Git workspaces (pygit2): per-customer caches, per-execution working copies, task
branches, squash commits, merges and pushes with server-side credentials.

Layout: ``paths`` (ids → directories), ``branch`` (task branch names), ``remote`` (URL
syntax and error translation), ``policy`` (which URLs a customer may use, and where they
may lead), ``credentials`` (server-side credentials bound to customers, as pygit2
callbacks), ``cache`` (the bare mirror), ``commits``/``merge``/``push`` (the operations on a
working copy), ``workspace`` (``GitWorkspace``, what the pipeline calls), ``probe``
(repository validation without a working copy).
"""

from runner.git.branch import branch_name
from runner.git.credentials import CredentialStore
from runner.git.paths import WorkspacePaths, workspace_paths
from runner.git.policy import RepositoryPolicy
from runner.git.probe import probe_remote
from runner.git.results import (
    BranchResult,
    CacheResult,
    Checkout,
    MergeResult,
    PushResult,
    RemoteInfo,
)
from runner.git.workspace import GitWorkspace

__all__ = [
    "BranchResult",
    "CacheResult",
    "Checkout",
    "CredentialStore",
    "GitWorkspace",
    "MergeResult",
    "PushResult",
    "RemoteInfo",
    "RepositoryPolicy",
    "WorkspacePaths",
    "branch_name",
    "probe_remote",
    "workspace_paths",
]
