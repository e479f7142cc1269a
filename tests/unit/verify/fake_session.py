"""A SandboxSession stand-in: scripted command outcomes over an in-memory /workspace.

It records every call so tests can check what ran, in which order, with which timeout.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from runner.ports import CommandResult, LineSink


@dataclass
class Scripted:
    exit_code: int = 0
    output: str = ""
    writes: dict[str, bytes] = field(default_factory=dict)
    """Files that exist after the command (e.g. a coverage report)."""
    timed_out: bool = False
    oom_killed: bool = False
    cancelled: bool = False
    tail_lines: int = 50


@dataclass
class Call:
    command: str
    timeout: float
    env: Mapping[str, str] | None


class FakeSession:
    name = "fake-task-container"

    def __init__(
        self, script: Mapping[str, Scripted] | None = None, files: Mapping[str, bytes] | None = None
    ) -> None:
        self.script = dict(script or {})
        self.files = dict(files or {})
        self.calls: list[Call] = []

    @property
    def commands(self) -> list[str]:
        return [c.command for c in self.calls]

    def copy_in(self, source: Path, *, exclude: Sequence[str] = (".git",)) -> None:
        raise AssertionError("the verifier must not copy files in; that is the caller's job")

    def run(
        self,
        command: str,
        *,
        timeout: float,
        on_line: LineSink | None = None,
        cancel: threading.Event | None = None,
        env: Mapping[str, str] | None = None,
    ) -> CommandResult:
        self.calls.append(Call(command, timeout, env))
        if command.startswith("rm -f "):
            self.files.pop(command.removeprefix("rm -f ").strip("'"), None)
            return CommandResult(command=command, exit_code=0, duration=0.0, output_tail="")
        step = self.script.get(command, Scripted())
        lines = step.output.splitlines()
        for line in lines:
            if on_line is not None:
                on_line(line)
        self.files.update(step.writes)
        if step.cancelled and cancel is not None:
            cancel.set()
        return CommandResult(
            command=command,
            exit_code=step.exit_code,
            duration=0.01,
            output_tail="\n".join(lines[-step.tail_lines :]),
            timed_out=step.timed_out,
            oom_killed=step.oom_killed,
            cancelled=step.cancelled,
        )

    def read_file(self, path: str) -> bytes | None:
        return self.files.get(path.removeprefix("/workspace/"))
