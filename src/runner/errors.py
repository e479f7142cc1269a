"""The project's own exceptions, each with a classification the pipeline acts on.

Adapters (git, Docker, Aider, the filesystem) translate driver errors into these at their
edge, so nothing above them ever sees a ``pygit2.GitError`` or a ``docker.errors.APIError``.
The classification decides what happens next:

- ``transient``: try the same step again after a pause (network blip, lock held).
- ``infrastructure``: our own machinery failed (Docker down, disk full); retried a few
  times, then the execution stops with an error a person must look at.
- ``tool``: the coding tool failed or changed nothing; counts as a failed implement round.
- ``verification``: the change does not meet its criteria; counts as a failed round.
- ``resource_limit``: the customer's code hit its sandbox limits (memory, processes, time).
- ``conflict``: git could not merge or push without a person; stops the execution.
- ``config``: the repository or project configuration is wrong; stops the execution.
- ``environment``: the project's environment, not its code, is at fault (setup failed, a
  request was blocked by the egress allowlist, a module or command is missing, a host
  cannot be reached, a disk is full): never handed to the coding tool, never a reason for
  another round or an error-resolution task; the execution pauses for a person with an
  error record that says what to configure.
- ``cancelled``: a user stopped the execution; nothing to retry.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class Classification(StrEnum):
    TRANSIENT = "transient"
    INFRASTRUCTURE = "infrastructure"
    TOOL = "tool"
    VERIFICATION = "verification"
    RESOURCE_LIMIT = "resource_limit"
    CONFLICT = "conflict"
    CONFIG = "config"
    ENVIRONMENT = "environment"
    CANCELLED = "cancelled"

    @property
    def retryable(self) -> bool:
        """Whether the same step may simply be run again."""
        return self in (Classification.TRANSIENT, Classification.INFRASTRUCTURE)


class RunnerError(Exception):
    """Base of every error the runner raises on purpose.

    ``message`` is safe to show a user (already free of secrets); ``details`` holds
    structured context (paths, exit codes, tails of output) for the error record.
    """

    classification: Classification = Classification.INFRASTRUCTURE

    def __init__(
        self,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        classification: Classification | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}
        if classification is not None:
            self.classification = classification

    def to_dict(self) -> dict[str, Any]:
        return {
            "classification": str(self.classification),
            "message": self.message,
            "details": self.details,
        }


class TransientError(RunnerError):
    classification = Classification.TRANSIENT


class InfrastructureError(RunnerError):
    classification = Classification.INFRASTRUCTURE


class ToolError(RunnerError):
    classification = Classification.TOOL


class VerificationError(RunnerError):
    classification = Classification.VERIFICATION


class ConflictError(RunnerError):
    classification = Classification.CONFLICT


class ConfigError(RunnerError):
    classification = Classification.CONFIG


class EnvironmentFailure(RunnerError):
    """The environment the checks run in is wrong (see ``environment`` above)."""

    classification = Classification.ENVIRONMENT


class CancelledError(RunnerError):
    classification = Classification.CANCELLED
