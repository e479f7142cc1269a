"""What keeps a task from moving its own goalposts: protected paths, and verification that
may not get weaker than the base's.

Pure functions over changed paths, command output and recorded measures:

- ``protected_changes``: the paths of a change that only people (or the service itself)
  may edit: the task list (under any name it is found by, and the project's own path),
  the outcomes document, ``.devteam.toml``, CI workflows, and what the operator or the
  project adds.
- ``reported_test_count``: how many tests a test run reports (pytest, unittest, Jest, Vitest,
  Mocha, node:test and TAP), read from their summary lines. The output is the model's to
  write, so the count is the smallest summary in the test command's own runner's format:
  printing more summaries can lower it, never raise it.
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
from runner.tasklist import TASK_LIST_NAMES
from runner.verify.evaluate import COUNT_DIGITS

OUTCOMES_NAME = "task_outcomes.md"
"""The outcomes document, kept beside the task list (``pipeline.stages.tasklist_io``)."""
ALWAYS_PROTECTED = (*TASK_LIST_NAMES, OUTCOMES_NAME, ".devteam.toml")
"""File names no task may change, wherever they are in the repository: every name a task
list is found by without a configured path (``runner.tasklist.TASK_LIST_NAMES``), the
outcomes document (both the service's to write) and ``.devteam.toml`` (its checks). A
project's configured task-list path is protected by passing it as one of ``paths``."""

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


def _normal(path: str) -> str:
    return posixpath.normpath(path.lstrip("/"))


def protected_changes(changed: Sequence[str], patterns: Iterable[str] = (),
                      paths: Iterable[str] = ()) -> list[str]:
    """The changed paths that are protected, sorted: ``ALWAYS_PROTECTED`` names anywhere;
    ``patterns`` (``dir/**`` for a tree, a bare name for that name anywhere, otherwise a
    glob over the whole path); and ``paths``, each that one file, taken literally (a
    project's task list ``planning/TODO [v2].md`` is no glob)."""
    every = (*ALWAYS_PROTECTED, *patterns)
    exact = {_normal(p) for p in paths if p}
    hits = set()
    for raw in changed:
        path = _normal(raw)
        if path in exact or any(_matches(path, p) for p in every):
            hits.add(raw)
    return sorted(hits)


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
MAX_COUNT = 10**COUNT_DIGITS - 1
"""The largest count read from a summary: longer digit strings are not a count at all."""
_D = rf"\d{{1,{COUNT_DIGITS}}}"
_N = f"({_D})"
# "5 passed in 0.12s", "1 failed, 2 subtests passed in 0.02s" (subtests), "5 passed in 0.12
# seconds" (pytest before 5)
_PYTEST_LINE = re.compile(rf"=*\s*({_D} [a-z]+(?: [a-z]+)?(?:, {_D} [a-z]+(?: [a-z]+)?)*)"
                          r" in [\d.]+(?:s| seconds)\b")
_PYTEST_ITEM = re.compile(rf"{_N} (?:passed|failed|errors?|xfailed|xpassed)\b")
_PYTEST_NONE = re.compile(r"=*\s*no tests ran\b")
_JEST = re.compile(rf"\s*Tests:\s+(?:{_D} [a-z]+, )*{_N} total\s*$")
_JEST_NONE = re.compile(r"No tests found\b")
_VITEST = re.compile(rf"\s*Tests\s+.*\({_N}\)\s*$")
_MOCHA = re.compile(rf"\s*{_N} (passing|pending|failing)\b")
_TAP = re.compile(rf"\s*(?:#|\u2139)\s*tests\s+{_N}\s*$")
_UNITTEST = re.compile(rf"Ran {_N} tests? in ")
_UNITTEST_NONE = re.compile(r"NO TESTS RAN\b")

RUNNERS = ("pytest", "unittest", "jest", "vitest", "mocha", "tap")
"""The test runners whose summaries are read (``tap`` covers node:test and tape)."""
_NAMED = {
    "pytest": re.compile(r"\bpy\.?test\b"),
    "unittest": re.compile(r"\bunittest\b"),
    "jest": re.compile(r"\bjest\b"),
    "vitest": re.compile(r"\bvitest\b"),
    "mocha": re.compile(r"\bmocha\b"),
    "tap": re.compile(r"\bnode\b.*\s--test\b|\btape?\b"),
}


def runners_of(command: str | None) -> tuple[str, ...]:
    """The runners ``command`` names (``python3 -m coverage run -m pytest -q``: pytest);
    every runner when it names none (``npm test``, ``make test``: the runner is unknown)."""
    named = tuple(r for r in RUNNERS if command and _NAMED[r].search(command))
    return named or RUNNERS


def reported_test_count(output: str, command: str | None = None) -> int | None:
    """The number of tests a run of ``command`` reports; None when ``output`` holds no
    summary line of its runner (a test command of another kind, or an unreadable one).

    The output is written by code the model controls, so which summary counts is a rule a
    forger cannot turn to its advantage:

    - only the summary format of the runner ``command`` names counts (a pytest run's
      ``Ran 500 tests in`` line is not a pytest summary); a command that names none
      (``npm test``) is read in every known format;
    - when several summaries are present, the count is the smallest: printing extra lines
      can lower the count (and so only fail the guard), never raise it past a real one;
    - a count of more than nine digits is no count (the line is not a summary).
    """
    runners = set(runners_of(command))
    lines = _ANSI.sub("", output).splitlines()
    counts = [n for line in lines for n in _line_counts(line, runners)]
    if "mocha" in runners:
        counts.extend(_mocha_counts(lines))
    return min(counts) if counts else None


def _line_counts(line: str, runners: set[str]) -> list[int]:
    found: list[int] = []
    if "pytest" in runners:
        summary = _PYTEST_LINE.match(line)
        items = _PYTEST_ITEM.findall(summary.group(1)) if summary else []
        if items:
            found.append(sum(int(n) for n in items))
        if _PYTEST_NONE.match(line):
            found.append(0)
    if "unittest" in runners:
        ran = _UNITTEST.match(line)
        if ran:
            found.append(int(ran.group(1)))
        if _UNITTEST_NONE.match(line):
            found.append(0)
    if "jest" in runners:
        total = _JEST.match(line)
        if total:
            found.append(int(total.group(1)))
        if _JEST_NONE.match(line):
            found.append(0)
    for runner, pattern in (("vitest", _VITEST), ("tap", _TAP)):
        match = pattern.match(line) if runner in runners else None
        if match:
            found.append(int(match.group(1)))
    return found


def _mocha_counts(lines: Sequence[str]) -> list[int]:
    """Mocha's summary: ``N passing``, then (on the next lines) ``N pending`` and
    ``N failing`` when there are any; the count is passing plus failing."""
    counts = []
    for at, line in enumerate(lines):
        passing = _MOCHA.match(line)
        if not passing or passing.group(2) != "passing":
            continue
        count = int(passing.group(1))
        for following in lines[at + 1:at + 3]:
            more = _MOCHA.match(following)
            if not more or more.group(2) == "passing":
                break
            if more.group(2) == "failing":
                count += int(more.group(1))
                break
        counts.append(count)
    return counts


def _percentage(value: object) -> float | None:
    """``value`` when it is a coverage percentage (finite, from 0 to 100); None otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if 0 <= value <= 100 else None


def measures_of(commands: Sequence[CommandResult], test_command: str | None,
                results: Mapping[str, CriterionResult], commit: str | None = None) -> Measures:
    """The measures of one verification: tests run by ``test_command`` (its runner's
    summary, see ``reported_test_count``) and the coverage percentage it reached (when a
    coverage criterion measured one from 0 to 100)."""
    count = None
    if test_command:
        ran = [c for c in commands if c.command == test_command]
        if ran and not (ran[-1].timed_out or ran[-1].cancelled):
            count = reported_test_count(ran[-1].output_tail, test_command)
    coverage = results.get("test.coverage")
    return Measures(
        tests_run=count,
        coverage=_percentage(coverage.actual) if coverage is not None else None,
        commit=commit,
    )


def weakening(before: Measures | None, after: Measures) -> dict[str, CriterionResult]:
    """Failed criteria for each measure that got weaker than ``before``: ``tests.run`` when
    fewer tests ran (or none could be counted where some were), ``coverage.kept`` when
    coverage fell. Empty when nothing got weaker or nothing was measured before.

    A recorded measure no summary or report could have given (over ``MAX_COUNT`` tests,
    coverage outside 0 to 100, as stored before such values were refused) is no floor: it
    would fail every later round whatever the change."""
    if before is None:
        return {}
    found: dict[str, CriterionResult] = {}
    was = f" at {before.commit[:10]}" if before.commit else ""
    floor = before.tests_run if before.tests_run and before.tests_run <= MAX_COUNT else None
    if floor:
        now = after.tests_run
        if now is None or now < floor:
            shown = "none reported" if now is None else str(now)
            found["tests.run"] = CriterionResult(
                passed=False, actual=now, required=f"≥{floor}",
                detail=f"tests run: {floor} → {shown} (the change may not run "
                       f"fewer tests than the verified state{was})")
    kept, now_covered = _percentage(before.coverage), _percentage(after.coverage)
    if (kept is not None and now_covered is not None
            and now_covered < kept - COVERAGE_TOLERANCE):
        found["coverage.kept"] = CriterionResult(
            passed=False, actual=now_covered, required=f"≥{kept:g}%",
            detail=f"coverage: {kept:g}% → {now_covered:g}% (the change "
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
