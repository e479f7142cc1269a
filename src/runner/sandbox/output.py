"""Turning an exec's raw output into lines, a tail, and the wrapper's report.

The exec wrapper in the image (``containers/runner/exec.py``) prints marker lines
``@@devteam-<nonce>@@ <json>`` on stdout; :class:`OutputCollector` takes them out of the
stream, so callers see only the command's own lines, and keeps what they reported.

The command runs as the wrapper's uid, so the report is in-band data the command might
forge. It is believed only when it is consistent: one start, one end, nothing after the
end, and an end whose ``exit`` is the exit status Docker recorded for the wrapper (a
wrapper the command killed exits 128+N, whatever was written in its name). Anything else
is the command's failure (``verification``), with :data:`TAMPER_NOTE` as the tail's last
line.

Lines leave the collector free of NUL and of the C0 control characters other than tab,
carriage return and escape (each becomes U+FFFD): they are stored as JSON in Postgres,
which refuses ``\u0000``. Escape stays for the colour codes the report parsers strip.
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
TAMPER_NOTE = "devteam: the exec wrapper's report cannot be believed:"
"""Start of the tail's last line when the wrapper's report could not be believed (see the
module doc); the rest says why."""
_CONTROLS = {code: "\ufffd" for code in range(32) if chr(code) not in "\t\r\x1b"}


class OutputCollector:
    """Assembles demultiplexed chunks into lines, in arrival order, per stream.

    Each complete line, its control characters replaced (see the module doc), goes to
    ``on_line`` (a failing sink is ignored: output must not stop because a subscriber broke)
    and into the tail. ``start`` and ``end`` are the first reports of each kind; every
    marker line that breaks the protocol (a second start or end, anything after the end,
    a malformed report) adds a reason to ``tampering``. Thread-safe: the reader thread
    feeds it while the caller may read ``start`` and ``end``.
    """

    def __init__(self, nonce: str, on_line: LineSink | None = None) -> None:
        self._prefix = f"@@devteam-{nonce}@@ "
        self._on_line = on_line
        self._partial: dict[int, bytes] = {1: b"", 2: b""}
        self._tail: deque[str] = deque(maxlen=TAIL_LINES)
        self._lock = threading.Lock()
        self.start: dict[str, Any] | None = None
        self.end: dict[str, Any] | None = None
        self.tampering: list[str] = []
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
            self._report(line[len(self._prefix) :])
            return
        line = line.translate(_CONTROLS)
        self._tail.append(line)
        if self._on_line is not None:
            # A broken sink must not stop the command.
            with contextlib.suppress(Exception):
                self._on_line(line)

    def _report(self, text: str) -> None:
        """Keep one marker line's report, or say how it breaks the protocol."""
        try:
            report = json.loads(text)
        except ValueError:
            report = None
        event = report.get("event") if isinstance(report, dict) else None
        if self.end is not None:
            self._tamper("a second end report" if event == "end" else "a marker after the end")
        elif event == "start" and self.start is not None:
            self._tamper("a second start report")
        elif event == "start" and isinstance(report, dict):
            self.start = report
            self.started.set()
        elif event == "end" and isinstance(report, dict):
            self.end = report
        else:
            self._tamper("a marker line that is not a start or end report")

    def _tamper(self, reason: str) -> None:
        if reason not in self.tampering:
            self.tampering.append(reason)

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

    ``exit_code`` is the exec's own, as Docker recorded it (None when unknown); without the
    wrapper's end report (it was killed) the exit code is that, or -1. A report that cannot
    be believed (see :func:`distrust`) gives a failed result: the exec's exit code when it
    is not 0, else -1, no usage, and :data:`TAMPER_NOTE` with the reason as the tail's last
    line.
    """
    reason = distrust(collector, exit_code, stopped=timed_out or cancelled)
    if reason is not None:
        return CommandResult(
            command=command,
            exit_code=exit_code if isinstance(exit_code, int) and exit_code != 0 else -1,
            duration=round(duration, 3),
            output_tail=_last(collector.tail, f"{TAMPER_NOTE} {reason}; the result is a failure"),
            timed_out=timed_out,
            cancelled=cancelled,
        )
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


def distrust(collector: OutputCollector, exit_code: int | None, *, stopped: bool) -> str | None:
    """Why the wrapper's report cannot be believed; None when it can (or there is none).

    ``exit_code`` is the exec's exit status as Docker recorded it (None: unknown); ``stopped``
    says the runner itself stopped the command (timeout, cancel), which kills no wrapper.
    """
    if collector.tampering:
        return "; ".join(collector.tampering)
    end = collector.end
    if end is None:
        if exit_code == 0:
            return "the wrapper exited 0 without an end report"
        if isinstance(exit_code, int) and exit_code > 128 and not stopped:
            return f"the wrapper was killed (signal {exit_code - 128}) before its end report"
        return None
    reported = end.get("exit")
    if not isinstance(reported, int) or isinstance(reported, bool):
        return "the end report has no exit code"
    if exit_code is None:
        # Stopped by us, the stream may have been cut before Docker recorded the exit; the
        # result is a failure (timed out, cancelled) whatever the report says.
        return None if stopped else "Docker recorded no exit code to confirm the end report"
    if exit_code != reported:
        return f"the end report says exit {reported} but the wrapper exited {exit_code}"
    return None


def _note_last(tail: str) -> str:
    """``tail`` with the wrapper's disk-quota line (or a default one) as its last line."""
    notes = [line for line in tail.splitlines() if line.startswith(DISK_NOTE)]
    default = f"{DISK_NOTE} /workspace went over its quota; stopped"
    return _last(tail, notes[-1] if notes else default)


def _last(tail: str, note: str) -> str:
    """``tail`` (within ``TAIL_LINES``) with ``note`` as its last line and no other line
    of the same kind (a command's own copy of a note cannot stand in for it)."""
    kind = DISK_NOTE if note.startswith(DISK_NOTE) else TAMPER_NOTE
    kept = [line for line in tail.splitlines() if not line.startswith(kind)]
    return "\n".join([*kept[-(TAIL_LINES - 1) :], note])


def disk_limited(result: CommandResult) -> bool:
    """Whether the exec wrapper stopped the command for filling ``/workspace`` past its
    quota (``CommandResult`` has no field for it: the tail's last line says so)."""
    return result.output_tail.rpartition("\n")[2].startswith(DISK_NOTE)


def tampered(result: CommandResult) -> bool:
    """Whether the wrapper's report was not believed (the tail's last line says why)."""
    return result.output_tail.rpartition("\n")[2].startswith(TAMPER_NOTE)


def classify(result: CommandResult) -> Classification | None:
    """How the pipeline should treat a command's outcome; None when it succeeded.

    A command that exited 0 in time succeeded, whatever its children ran into.
    A command that tampered with the wrapper's report failed as ``verification``, whatever
    the report claimed. Hitting the sandbox's limits (memory, processes, time, the
    ``/workspace`` quota) is ``resource_limit``; a user's stop is ``cancelled``; any other
    non-zero exit is ``verification`` (the code failed its own checks).
    """
    if result.cancelled:
        return Classification.CANCELLED
    if result.ok:
        return None
    if tampered(result):
        return Classification.VERIFICATION
    if result.oom_killed or result.pids_limited or result.timed_out or disk_limited(result):
        return Classification.RESOURCE_LIMIT
    return Classification.VERIFICATION
