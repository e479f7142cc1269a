"""Turning an exec's raw output into lines, a tail, and the wrapper's report.

The exec wrapper in the image (``containers/runner/exec.py``) prints marker lines
``@@devteam-<nonce>@@ <json>`` on stdout; :class:`OutputCollector` takes them out of the
stream, so callers see only the command's own lines, and keeps what they reported.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections import deque
from typing import Any

from runner.errors import Classification
from runner.ports import CommandResult, LineSink

TAIL_LINES = 200
"""Lines of combined output kept in ``CommandResult.output_tail``."""
MAX_LINE_BYTES = 64 * 1024
"""A line longer than this is cut and passed on in pieces (a binary blob has no newlines)."""
DISK_NOTE = "devteam: disk quota exceeded:"
"""Start of the line the exec wrapper prints when it stopped a command for filling
``/workspace`` past its quota; ``command_result`` makes it the tail's last line."""


class OutputCollector:
    """Assembles demultiplexed chunks into lines, in arrival order, per stream.

    Each complete line goes to ``on_line`` (a failing sink is ignored: output must not stop
    because a subscriber broke) and into the tail. Thread-safe: the reader thread feeds it
    while the caller may read ``start`` and ``end``.
    """

    def __init__(self, nonce: str, on_line: LineSink | None = None) -> None:
        self._prefix = f"@@devteam-{nonce}@@ "
        self._on_line = on_line
        self._partial: dict[int, bytes] = {1: b"", 2: b""}
        self._tail: deque[str] = deque(maxlen=TAIL_LINES)
        self._lock = threading.Lock()
        self.start: dict[str, Any] | None = None
        self.end: dict[str, Any] | None = None
        self.started = threading.Event()

    def feed(self, stream: int, data: bytes) -> None:
        """Add a chunk of ``stream`` (1 stdout, 2 stderr)."""
        with self._lock:
            buffer = self._partial[stream] + data
            *lines, rest = buffer.split(b"\n")
            while len(rest) > MAX_LINE_BYTES:
                lines.append(rest[:MAX_LINE_BYTES])
                rest = rest[MAX_LINE_BYTES:]
            self._partial[stream] = rest
            for raw in lines:
                self._line(stream, raw.decode("utf-8", errors="replace").rstrip("\r"))

    def close(self) -> None:
        """Flush partial lines once the stream has ended."""
        with self._lock:
            for stream, rest in self._partial.items():
                if rest:
                    self._line(stream, rest.decode("utf-8", errors="replace"))
                self._partial[stream] = b""

    def _line(self, stream: int, line: str) -> None:
        if stream == 1 and line.startswith(self._prefix):
            try:
                report = json.loads(line[len(self._prefix) :])
            except ValueError:
                report = None
            if isinstance(report, dict):
                if report.get("event") == "start":
                    self.start = report
                    self.started.set()
                else:
                    self.end = report
                return
        self._tail.append(line)
        if self._on_line is not None:
            # A broken sink must not stop the command.
            with contextlib.suppress(Exception):
                self._on_line(line)

    @property
    def tail(self) -> str:
        with self._lock:
            return "\n".join(self._tail)


def command_result(
    command: str,
    collector: OutputCollector,
    *,
    exit_code: int | None,
    duration: float,
    timed_out: bool,
    cancelled: bool,
) -> CommandResult:
    """The ``CommandResult`` of a finished exec, from the wrapper's report when there is one.

    ``exit_code`` is the exec's own (None when unknown); without the wrapper's end report
    (it was killed) the exit code is that, or -1.
    """
    end = collector.end or {}
    tail = collector.tail
    if end.get("disk_limited"):
        tail = _note_last(tail)
    code = end.get("exit", exit_code)
    if not isinstance(code, int):
        code = -1
    peak = end.get("peak_memory_bytes")
    cpu = end.get("cpu_seconds")
    return CommandResult(
        command=command,
        exit_code=code,
        duration=round(duration, 3),
        output_tail=tail,
        timed_out=timed_out or bool(end.get("timed_out")),
        cancelled=cancelled,
        oom_killed=bool(end.get("oom_killed")),
        pids_limited=bool(end.get("pids_limited")),
        peak_memory_bytes=peak if isinstance(peak, int) else None,
        cpu_seconds=float(cpu) if isinstance(cpu, int | float) else None,
    )


def _note_last(tail: str) -> str:
    """``tail`` with the wrapper's disk-quota line (or a default one) as its last line."""
    lines = tail.splitlines()
    notes = [line for line in lines if line.startswith(DISK_NOTE)]
    note = notes[-1] if notes else f"{DISK_NOTE} /workspace went over its quota; stopped"
    kept = [line for line in lines if not line.startswith(DISK_NOTE)]
    return "\n".join([*kept[-(TAIL_LINES - 1) :], note])


def disk_limited(result: CommandResult) -> bool:
    """Whether the exec wrapper stopped the command for filling ``/workspace`` past its
    quota (``CommandResult`` has no field for it: the tail's last line says so)."""
    return result.output_tail.rpartition("\n")[2].startswith(DISK_NOTE)


def classify(result: CommandResult) -> Classification | None:
    """How the pipeline should treat a command's outcome; None when it succeeded.

    A command that exited 0 in time succeeded, whatever its children ran into.
    Hitting the sandbox's limits (memory, processes, time, the ``/workspace`` quota) is
    ``resource_limit``; a user's stop is ``cancelled``; any other non-zero exit is
    ``verification`` (the code failed its own checks).
    """
    if result.cancelled:
        return Classification.CANCELLED
    if result.ok:
        return None
    if result.oom_killed or result.pids_limited or result.timed_out or disk_limited(result):
        return Classification.RESOURCE_LIMIT
    return Classification.VERIFICATION
