"""Where a customer's caches and working copies live, derived only from validated ids.

Layout under the workspace root::

    <root>/<customer>/cache/<sha256 of the normalised repository URL>.git   bare mirror
    <root>/<customer>/cache/<same>.lock                                     its lock file
    <root>/<customer>/work/<project>/<execution>                            a working copy

Ids are checked against narrow patterns before they become path components, so no id can
climb out of its directory (``..``, ``/``, absolute paths) or land in another customer's
tree; every customer's files are under ``<root>/<customer>/`` and nothing else is.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from runner.errors import ConfigError
from runner.git.remote import parse_remote_url

_PART = re.compile(r"[A-Za-z0-9_-]{1,100}")
_EXECUTION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")
"""UUIDs (with or without dashes) and other opaque ids of the same alphabet."""


@dataclass(frozen=True)
class WorkspacePaths:
    """The directories of one execution of one project of one customer."""

    customer_root: Path
    worktree: Path

    def cache_dir(self, repo_url: str) -> Path:
        """The bare mirror of ``repo_url`` shared by this customer's executions."""
        return cache_dir(self.customer_root, repo_url)


def validate_customer_id(customer_id: str) -> str:
    """Return ``customer_id`` if it is a safe path component, else raise ConfigError."""
    return _check(customer_id, _PART, "customer id")


def split_project_id(project_id: str) -> tuple[str, str]:
    """``"customer/project"`` → ``("customer", "project")``, both parts validated."""
    if not isinstance(project_id, str) or project_id.count("/") != 1 or len(project_id) > 200:
        raise ConfigError("project id must be 'customer/project'", details={"field": "projectId"})
    customer, project = project_id.split("/")
    return validate_customer_id(customer), _check(project, _PART, "project id")


def customer_root(root: Path, customer_id: str) -> Path:
    """``<root>/<customer>``: everything of one customer and nothing of any other."""
    return Path(root).resolve() / validate_customer_id(customer_id)


def cache_dir(customer_dir: Path, repo_url: str) -> Path:
    """The cache of ``repo_url`` inside ``customer_dir``, named by a hash of its normal form."""
    digest = hashlib.sha256(parse_remote_url(repo_url).key.encode()).hexdigest()[:32]
    return customer_dir / "cache" / f"{digest}.git"


def workspace_paths(
    root: Path, customer_id: str, project_id: str, execution_id: str
) -> WorkspacePaths:
    """The paths of one execution; ConfigError when an id is unsafe or ids disagree.

    ``project_id`` is ``customer/project`` and its customer part must be ``customer_id``.
    """
    customer, project = split_project_id(project_id)
    if customer != validate_customer_id(customer_id):
        raise ConfigError("project id does not belong to the customer",
                          details={"field": "projectId"})
    execution = _check(execution_id, _EXECUTION, "execution id")
    base = customer_root(root, customer)
    return WorkspacePaths(customer_root=base, worktree=base / "work" / project / execution)


def _check(value: object, pattern: re.Pattern[str], what: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ConfigError(
            f"{what} must be 1-100 letters, digits, '_' or '-'", details={"field": what}
        )
    return value
