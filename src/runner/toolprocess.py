"""A coding tool's process, supervised: own process group, streamed output, hard limits.

The process runs in a new session so a timeout or a cancellation kills it and everything
it started (SIGTERM, then SIGKILL). Its combined output is read line by line on a thread,
redacted, passed to a sink as it comes, and its tail kept for the artifact.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from runner.errors import InfrastructureError
from runner.ports import LineSink
from runner.redact import Redactor

_KILL_GRACE = 2.0
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to SIGKILL us if the worker dies, so a worker
    killed with SIGKILL cannot leave a tool editing a working copy behind it."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class ToolProcess:
    """A started tool process; :meth:`wait` ends it, :meth:`output` is what it printed."""

    def __init__(
        self,
        command: list[str],
        env: dict[str, str],
        cwd: Path,
        redactor: Redactor,
        *,
        on_line: LineSink | None = None,
        limit: int = 64 * 1024,
    ) -> None:
        self._redact, self._on_line, self._limit = redactor.lines(), on_line, limit
        self._tail: collections.deque[str] = collections.deque()
        self._lock = threading.Lock()
        self._size = 0
        self._dropped = False
        self.timed_out = self.cancelled = False
        try:
            self.proc = subprocess.Popen(
                command,
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                encoding="utf-8",
                errors="replace",
                start_new_session=True,
                preexec_fn=_die_with_parent if os.name == "posix" else None,  # noqa: PLW1509
            )
        except OSError as exc:
            raise InfrastructureError(
                f"cannot start {Path(command[0]).name}: {exc.strerror}"
            ) from None
        self._reader = threading.Thread(target=self._read, name="tool-output", daemon=True)
        self._reader.start()

    @property
    def returncode(self) -> int:
        return self.proc.returncode if self.proc.returncode is not None else -1

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = self._redact(raw.rstrip("\n"))
            with self._lock:
                self._tail.append(line)
                self._size += len(line) + 1
                while self._size > self._limit and len(self._tail) > 1:
                    self._size -= len(self._tail.popleft()) + 1
                    self._dropped = True
            if self._on_line is not None:
                try:
                    self._on_line(line)
                except Exception:  # noqa: BLE001 - a broken sink must not stall the tool
                    self._on_line = None

    def wait(self, timeout: float, cancel: threading.Event | None) -> None:
        """Wait for exit; kill the whole process group on timeout or ``cancel``."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if cancel is not None and cancel.is_set():
                self.cancelled = True
            elif time.monotonic() >= deadline:
                self.timed_out = True
            else:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(0.05)
                continue
            self._kill()
            break
        # Whatever the tool left running in its group would hold the output pipe open.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._reader.join(_KILL_GRACE)

    def _kill(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(_KILL_GRACE)
                return
            except subprocess.TimeoutExpired:
                continue

    def output(self) -> str:
        """The redacted output, its tail kept within ``limit`` characters."""
        with self._lock:
            text = "\n".join(self._tail)
        return f"[... earlier output omitted ...]\n{text}" if self._dropped else text
