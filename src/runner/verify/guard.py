"""What keeps a task from moving its own goalposts: protected paths, and verification that
may not get weaker than the base's.

Pure functions over changed paths, command output and recorded measures:

- ``protected_changes``: the paths of a change that only people (or the service itself)
  may edit: the task list, the outcomes document, ``.devteam.toml``, CI workflows, and
  what the operator or the project adds.
- ``reported_test_count``: how many tests a test run reports (pytest, unittest, Jest, Vitest, Mocha,
  node:test and TAP), read from the end of its output.
- ``weakening``: the checks that got weaker than the last verified state (fewer tests run,
  lower coverage), each as a failed criterion with a readable reason ("tests run: 42 → 17").
- ``baseline_problems``: the checks the unchanged base cannot pass, which no change by the
  model should be charged with.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence

import msgspec

from runner.ports import CommandResult, CriterionResult

ALWAYS_PROTECTED = ("tasks_list.md", "task_outcomes.md", ".devteam.toml")
"""File names no task may change, wherever they are in the repository (the task list and
the outcomes document are the service's to write; ``.devteam.toml`` configures its checks)."""

DEFAULT_PROTECTED = (".github/workflows/**", ".gitlab-ci.yml", ".circleci/**", "Jenkinsfile")
"""Protected unless the operator says otherwise (``DEVTEAM_VERIFY_PROTECTED``)."""

COVERAGE_TOLERANCE = 0.01
"""Percentage points coverage may drop by rounding before it counts as lower."""


class Measures(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """What a verification measured, for the next one to be compared with."""

    tests_run: int | None = None
    coverage: float | None = None
    commit: str | None = None


def split_patterns(value: str | Iterable[str]) -> tuple[str, ...]:
    """``a, b`` or an iterable of patterns, blanks dropped."""
    items = value.split(",") if isinstance(value, str) else value
    return tuple(p.strip().strip("/") for p in items if p and p.strip().strip("/"))


def _matches(path: str, pattern: str) -> bool:
    if pattern.endswith("/**"):
        prefix = pattern[:-3]
        return path == prefix or path.startswith(prefix + "/")
    if "/" not in pattern:
        return fnmatch.fnmatchcase(posixpath.basename(path), pattern)
    return fnmatch.fnmatchcase(path, pattern)


def protected_changes(changed: Sequence[str], patterns: Iterable[str] = ()) -> list[str]:
    """The changed paths that are protected: ``ALWAYS_PROTECTED`` names anywhere, and
    ``patterns`` (``dir/**`` for a tree, a bare name for that name anywhere, otherwise a
    glob over the whole path), sorted."""
    every = (*ALWAYS_PROTECTED, *patterns)
    hits = set()
    for raw in changed:
        path = posixpath.normpath(raw.lstrip("/"))
        if any(_matches(path, p) for p in every):
            hits.add(raw)
    return sorted(hits)


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_PYTEST = re.compile(r"\b(\d+) (passed|failed|errors?|xfailed|xpassed)\b")
_PYTEST_LINE = re.compile(r"\b\d+ (passed|failed|errors?)\b.* in [\d.]+\s*s")
_JEST = re.compile(r"^\s*Tests:\s+.*?\b(\d+) total\b")
_VITEST = re.compile(r"^\s*Tests\s+.*\((\d+)\)\s*$")
_MOCHA = re.compile(r"^\s*(\d+) (passing|failing)\b")
_NODE_TEST = re.compile(r"^\s*(?:#|\u2139)\s*tests\s+(\d+)\s*$")
_UNITTEST = re.compile(r"^Ran (\d+) tests? in ")
_NONE_RAN = re.compile(r"\bno tests ran\b|^No tests found", re.IGNORECASE)


def reported_test_count(output: str) -> int | None:
    """The number of tests a run reports, from the last summary line in ``output`` that a
    known runner writes; None when there is none (a test command of another kind)."""
    lines = _ANSI.sub("", output).splitlines()
    mocha: dict[str, int] = {}
    for line in reversed(lines):
        if _NONE_RAN.search(line):
            return 0
        if _PYTEST_LINE.search(line):
            return sum(int(n) for n, _ in _PYTEST.findall(line))
        for pattern in (_JEST, _VITEST, _NODE_TEST, _UNITTEST):
            found = pattern.search(line)
            if found:
                return int(found.group(1))
        found = _MOCHA.search(line)
        if found:
            mocha.setdefault(found.group(2), int(found.group(1)))
            if "passing" in mocha:
                return sum(mocha.values())
    return None


def measures_of(commands: Sequence[CommandResult], test_command: str | None,
                results: Mapping[str, CriterionResult], commit: str | None = None) -> Measures:
    """The measures of one verification: tests run by ``test_command`` and the coverage
    percentage it reached (when a coverage criterion measured it)."""
    count = None
    if test_command:
        ran = [c for c in commands if c.command == test_command]
        if ran and not (ran[-1].timed_out or ran[-1].cancelled):
            count = reported_test_count(ran[-1].output_tail)
    coverage = results.get("test.coverage")
    percent = coverage.actual if coverage is not None else None
    return Measures(
        tests_run=count,
        coverage=float(percent) if isinstance(percent, int | float) else None,
        commit=commit,
    )


def weakening(before: Measures | None, after: Measures) -> dict[str, CriterionResult]:
    """Failed criteria for each measure that got weaker than ``before``: ``tests.run`` when
    fewer tests ran (or none could be counted where some were), ``coverage.kept`` when
    coverage fell. Empty when nothing got weaker or nothing was measured before."""
    if before is None:
        return {}
    found: dict[str, CriterionResult] = {}
    was = f" at {before.commit[:10]}" if before.commit else ""
    if before.tests_run:
        now = after.tests_run
        if now is None or now < before.tests_run:
            shown = "none reported" if now is None else str(now)
            found["tests.run"] = CriterionResult(
                passed=False, actual=now, required=f"≥{before.tests_run}",
                detail=f"tests run: {before.tests_run} → {shown} (the change may not run "
                       f"fewer tests than the verified state{was})")
    if (before.coverage is not None and after.coverage is not None
            and after.coverage < before.coverage - COVERAGE_TOLERANCE):
        found["coverage.kept"] = CriterionResult(
            passed=False, actual=after.coverage, required=f"≥{before.coverage:g}%",
            detail=f"coverage: {before.coverage:g}% → {after.coverage:g}% (the change "
                   f"may not lower coverage below the verified state{was})")
    return found


CANNOT_PASS = ("test.pass", "build")
"""Criteria whose failure at the base means the base itself is broken. Thresholds
(coverage, type errors) may be what a task is for, so they are recorded, not refused."""


def baseline_problems(results: Mapping[str, CriterionResult],
                      measures: Measures | None = None) -> list[str]:
    """What the unchanged base cannot pass: a failing test run or build, or a check whose
    result could not be read at all (no coverage report, unreadable type-checker output).
    A base with no tests yet is not broken: its tasks are there to write them."""
    problems = []
    empty = measures is not None and measures.tests_run == 0
    for name, result in results.items():
        if name == "doc.updated" or result.passed:
            continue
        if empty and name in ("test.pass", "test.coverage"):
            continue
        if name in CANNOT_PASS or result.actual is None:
            why = result.detail or f"got {result.actual}"
            problems.append(f"{name}: {why}" if result.detail else
                            f"{name}: required {result.required}, {why}")
    return problems


_DIFF_HEADER = re.compile(r"^diff --git a/(.*?) b/(.*)$")


def patch_of(patch: str, paths: Iterable[str], limit: int = 8000) -> str:
    """The parts of ``patch`` (``git diff`` text) that change ``paths``, at most ``limit``
    characters (cut with a marker)."""
    wanted = set(paths)
    kept: list[str] = []
    keep = False
    for line in patch.splitlines(keepends=True):
        header = _DIFF_HEADER.match(line.rstrip("\n"))
        if header:
            keep = header.group(1) in wanted or header.group(2) in wanted
        if keep:
            kept.append(line)
    text = "".join(kept)
    if len(text) > limit:
        text = text[:limit].rstrip() + f"\n… (diff cut at {limit} characters)\n"
    return text
