"""Running a project's checks in a task container and judging the task's criteria.

The caller has started the container and copied the working copy in; the verifier runs
setup, tests, the coverage report, the type check and the build (each only when a
criterion needs it), reads report files back, and returns a VerificationResult with a
trimmed ``feedback`` text for the coding tool's next round. Criteria not met are a result,
not an exception; only unusable configuration (``config``) and cancellation raise.

A command's output is the repository's to choose, so what the result keeps of it is
bounded: each command's tail to ``DEVTEAM_LIMITS_OUTPUT_TAIL_BYTES`` (its end, after a
marker saying how much was dropped), the type checker's captured output to
``MAX_TYPECHECK_BYTES``.
"""

from __future__ import annotations

import shlex
import threading
from collections.abc import Mapping, Sequence

import msgspec

from runner.errors import CancelledError, ConfigError, VerificationError
from runner.limits import keep_tail, utf8_len
from runner.ports import (
    CommandResult,
    CriterionResult,
    LineSink,
    SandboxSession,
    VerificationResult,
)
from runner.settings import Settings, get_settings
from runner.verify.config import ProjectConfig
from runner.verify.evaluate import Evidence, describe, evaluate, parse_requirements
from runner.verify.requirements import Requirement

COMMAND_ENV = {"CI": "1", "NO_COLOR": "1", "FORCE_COLOR": "0"}
MAX_TYPECHECK_LINES = 20_000
MAX_TYPECHECK_BYTES = 8 * 1024 * 1024
"""The type checker's output read for its error count (what is past it is not counted)."""


class Verifier:
    """Runs verification commands in a SandboxSession and evaluates criteria."""

    def __init__(self, settings: Settings | None = None, *, feedback_chars: int = 4000,
                 tail_lines: int = 40) -> None:
        self._settings = settings or get_settings()
        self._feedback_chars = feedback_chars
        self._tail_lines = tail_lines

    def verify(
        self,
        task_id: str,
        criteria: Mapping[str, str],
        config: ProjectConfig,
        session: SandboxSession,
        changed_paths: Sequence[str] = (),
        *,
        on_line: LineSink | None = None,
        cancel: threading.Event | None = None,
        env: Mapping[str, str] | None = None,
    ) -> VerificationResult:
        """Verify one task: ``config.criteria`` overlaid with the task's ``criteria``.

        ``env`` adds variables to every command (the installed dependencies' ``PATH``).

        Raises ConfigError when a criterion cannot be read or needs a command the project
        does not have, CancelledError when ``cancel`` is set; otherwise returns the result
        (``success`` true only when every machine-checked criterion passed).
        """
        requirements, notes = parse_requirements({**config.criteria, **criteria})
        _require_commands(requirements, config)
        run = _Runner(session, self._timeout(config), on_line, cancel,
                      {**COMMAND_ENV, **(env or {})},
                      tail_bytes=self._settings.limits.output_tail_bytes)
        setup_failure = next((r for r in map(run, config.setup) if not r.ok), None)
        evidence = Evidence(changed_paths=tuple(changed_paths), setup_failure=setup_failure)
        if setup_failure is None:
            evidence = self._collect(requirements, config, run, evidence)
        results = evaluate(requirements, evidence)
        success = setup_failure is None and all(r.passed for r in results.values())
        return VerificationResult(
            task_id=task_id, success=success, results=results, commands=run.results,
            notes=notes, feedback=None if success else self._feedback(results, run.results),
        )

    def _collect(self, requirements: Mapping[str, Requirement], config: ProjectConfig,
                 run: _Runner, evidence: Evidence) -> Evidence:
        test = report = typecheck = None
        refused: str | None = None
        typecheck_output = ""
        if "test.pass" in requirements or "test.coverage" in requirements:
            if "test.coverage" in requirements and config.coverage_report:
                run.quiet(f"rm -f {shlex.quote(config.coverage_report)}")
            assert config.test is not None
            test = run(config.test)
            if "test.coverage" in requirements:
                if config.coverage:
                    run(config.coverage)
                assert config.coverage_report is not None
                try:
                    report = run.session.read_file(config.coverage_report)
                except VerificationError as exc:  # a directory, a device, too big
                    refused = exc.message
        if "type.strict" in requirements:
            assert config.typecheck is not None
            lines: list[str] = []
            typecheck = run(config.typecheck, capture=lines)
            typecheck_output = "\n".join(lines)
        build = [run(cmd) for cmd in config.build] if "build" in requirements else []
        return Evidence(
            test=test, coverage_report=report, coverage_report_path=config.coverage_report,
            coverage_report_refused=refused, typecheck=typecheck,
            typecheck_output=typecheck_output, build=build,
            changed_paths=evidence.changed_paths,
        )

    def _timeout(self, config: ProjectConfig) -> float:
        """The operator's limit, or the repository's if lower: a repository may only lower
        it (``timeout_seconds = 86400`` once held a container slot for a day)."""
        return float(command_timeout(config, self._settings))

    def _feedback(self, results: Mapping[str, CriterionResult],
                  commands: Sequence[CommandResult]) -> str:
        parts = ["Verification failed:"]
        for name, result in results.items():
            if result.passed:
                continue
            line = f"- {name}: required {result.required}, got {result.actual}"
            parts.append(line + (f" ({result.detail})" if result.detail else ""))
        for command in commands:
            if command.ok:
                continue
            tail = "\n".join(command.output_tail.rstrip().splitlines()[-self._tail_lines:])
            parts.append(f"\n$ {command.command}  [{describe(command)}]\n{tail}")
        text = "\n".join(parts)
        if len(text) > self._feedback_chars:
            text = text[: self._feedback_chars - 20].rstrip() + "\n... (trimmed)"
        return text


class _Runner:
    """Runs commands in the session, records them, and stops promptly on cancel."""

    def __init__(self, session: SandboxSession, timeout: float,
                 on_line: LineSink | None, cancel: threading.Event | None,
                 env: Mapping[str, str] | None = None, *, tail_bytes: int = 64 * 1024) -> None:
        self.session = session
        self._tail_bytes = tail_bytes
        self.env = dict(env or COMMAND_ENV)
        self.results: list[CommandResult] = []
        self._timeout = timeout
        self._on_line = on_line
        self._cancel = cancel

    def __call__(self, command: str, capture: list[str] | None = None) -> CommandResult:
        self._check_cancel()
        sink = self._on_line
        if capture is not None:
            captured = [0]

            def sink(line: str) -> None:
                if len(capture) < MAX_TYPECHECK_LINES and captured[0] < MAX_TYPECHECK_BYTES:
                    capture.append(line)
                    captured[0] += utf8_len(line) + 1
                if self._on_line is not None:
                    self._on_line(line)
        result = self.session.run(command, timeout=self._timeout, on_line=sink,
                                  cancel=self._cancel, env=self.env)
        result = msgspec.structs.replace(
            result, output_tail=keep_tail(result.output_tail, self._tail_bytes))
        self.results.append(result)
        if result.cancelled:
            raise CancelledError("verification cancelled", details={"command": command})
        self._check_cancel()
        return result

    def quiet(self, command: str) -> None:
        """A housekeeping command: not streamed, not recorded."""
        self.session.run(command, timeout=60, env=self.env)

    def _check_cancel(self) -> None:
        if self._cancel is not None and self._cancel.is_set():
            raise CancelledError("verification cancelled")


def command_timeout(config: ProjectConfig, settings: Settings) -> int:
    """Seconds one verification command may run: ``[limits] timeout_seconds`` of
    ``.devteam.toml`` caps it below ``DEVTEAM_SANDBOX_COMMAND_TIMEOUT_SECONDS``, never
    above (the operator's limit is a maximum)."""
    ceiling = settings.sandbox.command_timeout_seconds
    wanted = config.timeout_seconds
    return min(wanted, ceiling) if wanted else ceiling


def _require_commands(requirements: Mapping[str, Requirement], config: ProjectConfig) -> None:
    needs = {
        "test.pass": ("test", config.test),
        "test.coverage": ("test", config.test),
        "type.strict": ("typecheck", config.typecheck),
        "build": ("build", config.build),
    }
    for name, (key, value) in needs.items():
        if name in requirements and not value:
            raise ConfigError(
                f"criterion {name} needs a {key} command: add [commands] {key} to .devteam.toml",
                details={"criterion": name},
            )
    if "test.coverage" in requirements and not config.coverage_report:
        raise ConfigError(
            "criterion test.coverage needs a report: add [reports] coverage to .devteam.toml",
            details={"criterion": "test.coverage"},
        )
