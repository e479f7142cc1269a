"""The one exception a terminal command ends with on purpose."""

from __future__ import annotations

USAGE = 2
"""Exit code of a bad command line: a wrong argument, a path that is no repository."""
FAILED = 1
"""Exit code of everything else that ends a command early (an engine down, no task list)."""


class CommandError(Exception):
    """Ends the command with ``str(self)`` as one readable line and ``code`` as exit code."""

    def __init__(self, message: str, *, code: int = FAILED) -> None:
        super().__init__(message)
        self.code = code
