"""A coding tool's process, supervised: own process group, streamed output, hard limits.

The process runs in a new session so a timeout or a cancellation kills it and everything
it started (SIGTERM, then SIGKILL). Its combined output is read line by line on a thread,
made printable, redacted, passed to a sink as it comes, and its tail kept for the artifact.

What the tool prints is the model's reply, so an attacker's: each control character but
TAB (C0: NUL, ESC, BEL, backspace...; DEL; C1) becomes U+FFFD (:func:`printable`). NUL is
what Postgres refuses in text and jsonb (a stage's result could not be recorded); the
others would reach an operator's terminal through ``devteam watch``. Aider runs with
``--no-pretty``, so it prints no colours that this would mangle.

It runs on the host, so what the repository makes it read must not exhaust the host:
``ProcessLimits`` caps its address space (``RLIMIT_AS``: allocations past it fail inside
the tool) and its CPU time (``RLIMIT_CPU``: ``SIGXCPU``, then ``SIGKILL`` a few seconds
later), set in the child before it starts; both are inherited by what it starts.
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import resource
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from runner.errors import InfrastructureError
from runner.ports import LineSink
from runner.redact import Redactor

_KILL_GRACE = 2.0
_PR_SET_PDEATHSIG = 1


_CPU_KILL_AFTER = 5
"""Seconds of CPU past the soft limit (``SIGXCPU``) before the kernel sends ``SIGKILL``."""

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def printable(line: str) -> str:
    """``line`` with each control character but TAB replaced by U+FFFD (the line's
    ``\\n`` already taken off; the pipe is read with universal newlines, so no ``\\r``)."""
    return _CONTROL.sub("\ufffd", line)


@dataclass(frozen=True)
class ProcessLimits:
    """Resource limits of a tool process (0: none)."""

    memory_bytes: int = 0
    cpu_seconds: int = 0


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to SIGKILL us if the worker dies, so a worker
    killed with SIGKILL cannot leave a tool editing a working copy behind it."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _rlimits(limits: ProcessLimits) -> list[tuple[int, tuple[int, int]]]:
    """``(resource, (soft, hard))`` to set in the child, within our own hard limits (a
    process may lower its limits, never raise them)."""

    def within(kind: int, soft: int, hard: int) -> tuple[int, tuple[int, int]]:
        ceiling = resource.getrlimit(kind)[1]
        if ceiling != resource.RLIM_INFINITY:
            soft, hard = min(soft, ceiling), min(hard, ceiling)
        return kind, (soft, hard)

    wanted = [within(resource.RLIMIT_CORE, 0, 0)]  # no core files in the tool's directory
    if limits.memory_bytes > 0:
        wanted.append(within(resource.RLIMIT_AS, limits.memory_bytes, limits.memory_bytes))
    if limits.cpu_seconds > 0:
        wanted.append(within(resource.RLIMIT_CPU, limits.cpu_seconds,
                             limits.cpu_seconds + _CPU_KILL_AFTER))
    return wanted


def _child_setup(limits: ProcessLimits) -> Callable[[], None]:
    """What the child runs between fork and exec: die with us, then take its limits."""
    wanted = _rlimits(limits)  # computed in the parent: the child only makes syscalls

    def setup() -> None:
        _die_with_parent()
        for kind, values in wanted:
            resource.setrlimit(kind, values)

    return setup


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
        limits: ProcessLimits | None = None,
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
                preexec_fn=_child_setup(limits or ProcessLimits()),  # noqa: PLW1509
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

    @property
    def cpu_exceeded(self) -> bool:
        """Whether the kernel ended the process for using up its CPU time (``SIGXCPU``)."""
        return not (self.timed_out or self.cancelled) and self.returncode == -signal.SIGXCPU

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = self._redact(printable(raw.rstrip("\n")))
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
