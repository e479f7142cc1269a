"""A lock across processes (pytest-xdist workers, other test sessions on this machine) for
fixtures that build or install something shared once: the runner image, npm packages."""

from __future__ import annotations

import contextlib
import fcntl
import tempfile
from collections.abc import Iterator
from pathlib import Path

LOCKS = Path(tempfile.gettempdir()) / "devteam-test-locks"


@contextlib.contextmanager
def file_lock(name: str) -> Iterator[None]:
    """Hold the exclusive lock ``name`` (an ``flock`` on a file of that name; the kernel
    releases it when the holder exits, however it ends)."""
    LOCKS.mkdir(parents=True, exist_ok=True)
    with (LOCKS / f"{name}.lock").open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
