"""Values the git workspace returns. Frozen; ``to_dict()`` gives a JSON-safe form."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class _Serialisable:
    def to_dict(self) -> dict[str, Any]:
        """Field values with paths as strings and bytes left out (for stage results)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, bytes):
                continue
            out[f.name] = str(value) if isinstance(value, Path) else value
        return out


@dataclass(frozen=True)
class CacheResult(_Serialisable):
    """The customer's bare mirror of a repository after a clone or a fetch."""

    path: Path
    cloned: bool
    """True when this call made the first clone, False when it fetched."""
    default_branch: str | None = None
    """The remote's default branch as its HEAD names it (None for an empty repository)."""


@dataclass(frozen=True)
class Checkout(_Serialisable):
    """One execution's working copy. Stages re-open it by calling ``checkout()`` again."""

    path: Path
    customer_id: str
    project_id: str
    execution_id: str
    repo_url: str
    default_branch: str
    head: str
    """Commit id of ``HEAD`` when this value was made."""
    cloned: bool = False
    """True when this call created the working copy."""


@dataclass(frozen=True)
class BranchResult(_Serialisable):
    branch: str
    base_commit: str
    """The default-branch commit the task's single commit sits on."""
    created: bool
    """False when an existing branch of the same task was reused."""
    head: str = ""
    """Current tip of the branch (equals ``base_commit`` until a commit is made)."""


@dataclass(frozen=True)
class MergeResult(_Serialisable):
    commit: str
    """Tip of the default branch after the merge."""
    fast_forward: bool
    already_merged: bool


@dataclass(frozen=True)
class PushResult(_Serialisable):
    pushed: list[str] = field(default_factory=list)
    """Branch names sent to the remote."""
    skipped: list[str] = field(default_factory=list)
    """Branch names the remote already had at the same commit."""
    retried: bool = False
    """True when a rejection was resolved by fetching and merging once."""


@dataclass(frozen=True)
class RemoteInfo(_Serialisable):
    """What ``probe_remote`` learned; a bad URL is a result with ``error`` set."""

    reachable: bool
    default_branch: str | None = None
    error: str | None = None
    classification: str | None = None
    branches: list[str] = field(default_factory=list)
    file_path: str | None = None
    """The first of the requested paths present at the default branch, if any."""
    file_bytes: bytes | None = field(default=None, repr=False)
