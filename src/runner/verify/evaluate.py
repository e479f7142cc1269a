"""Turning what the checks produced into ``{passed, actual, required}`` per criterion.

Pure functions over command results, report bytes and changed paths, so every rule is
tested on real tool output without a container.

What the checks print and write is the repository's, and so the model's, to choose: a
number is read only from a tool's own summary format, with at most ``COUNT_DIGITS`` digits;
a coverage percentage must be finite and from 0 to 100; and a type checker that exits
non-zero never counts as 0 errors, whatever its output says. What cannot be read that way
is an unreadable result (a failed criterion that says why), never a pass and never a crash.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

from runner.errors import ConfigError
from runner.ports import CommandResult, CriterionResult
from runner.verify.requirements import Requirement, check, parse_requirement, touches

KNOWN = ("test.pass", "test.coverage", "type.strict", "doc.updated", "build")
"""Criteria checked by machine; any other name is a note shown to people."""
DEFAULT_OPS = {"type.strict": "<="}
_KINDS = {
    "test.pass": ({"pass"}, "'pass'"),
    "build": ({"pass"}, "'pass'"),
    "test.coverage": ({">=", ">", "<=", "<", "=="}, "a percentage such as '≥80%'"),
    "type.strict": ({">=", ">", "<=", "<", "==", "pass"}, "an error count such as '0 errors'"),
    "doc.updated": ({"path"}, "a path such as 'docs/api.md'"),
}

COUNT_DIGITS = 9
"""The most digits a count read from a tool's output may have: a longer one is unreadable
(Python refuses to convert over 4,300 digits, and over 308 overflow a float)."""
_D = rf"\d{{1,{COUNT_DIGITS}}}"
_N = f"({_D})"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_END = r"[ \t\r]*$"
_SUMMARIES = (
    # mypy: "Found 3 errors in 2 files (checked 5 source files)"
    re.compile(rf"^Found {_N} errors? in {_D} files? \((?:checked {_D} source "
               rf"files?|errors prevented further checking)\){_END}", re.MULTILINE),
    # tsc: "Found 3 errors.", "... in 2 files.", "... in the same file, starting at: a.ts:4",
    # "Found 1 error in a.ts:4"
    re.compile(rf"^Found {_N} errors?(?:\.| in {_D} files\.| in the same file, "
               rf"starting at: \S.*:\d+| in \S.*:\d+){_END}", re.MULTILINE),
)
_MYPY_OK = re.compile(rf"^Success: no issues found in {_D} source files?{_END}",
                      re.MULTILINE)
_TSC_ERROR = re.compile(r"error TS\d+", re.IGNORECASE)
_MYPY_ERROR = re.compile(r"^[^\s:][^:]*:\d+(?::\d+)?: error: ", re.MULTILINE)


class ReportError(ValueError):
    """A coverage report that cannot be read (message says why)."""


@dataclass(frozen=True)
class Evidence:
    """Everything the checks produced for one verification."""

    test: CommandResult | None = None
    coverage_report: bytes | None = None
    coverage_report_path: str | None = None
    coverage_report_refused: str | None = None
    """Why the report could not be taken out of the container (not a regular file, or over
    the size limit): the project's commands made it so, and the criterion fails saying it."""
    typecheck: CommandResult | None = None
    typecheck_output: str = ""
    """Complete output of the type checker (the result's tail may be cut)."""
    build: Sequence[CommandResult] = ()
    changed_paths: Sequence[str] = ()
    setup_failure: CommandResult | None = None


def parse_requirements(criteria: Mapping[str, str]) -> tuple[dict[str, Requirement], list[str]]:
    """Split criteria into parsed machine-checked requirements and notes (``name: text``).

    ConfigError when a known criterion's requirement is unreadable or of the wrong kind
    (a path for ``test.coverage``, a percentage for ``doc.updated``...).
    """
    machine: dict[str, Requirement] = {}
    notes: list[str] = []
    for name, text in criteria.items():
        if name not in KNOWN:
            notes.append(f"{name}: {text}")
            continue
        try:
            req = parse_requirement(text, default_op=DEFAULT_OPS.get(name, ">="),
                                    path=name == "doc.updated")
        except ConfigError as exc:
            raise ConfigError(f"criterion {name}: {exc.message}",
                              details={"criterion": name}) from None
        ops, expected = _KINDS[name]
        if req.op not in ops:
            raise ConfigError(f"criterion {name} needs {expected}, not {req.raw!r}",
                              details={"criterion": name})
        if name == "type.strict" and req.op == "pass":
            req = Requirement(op="<=", value=0.0, unit="errors", raw=req.raw)
        machine[name] = req
    return machine, notes


def coverage_percent(report: bytes) -> float:
    """Total line coverage from coverage.py JSON or an Istanbul json-summary.

    The report is the project's commands' to write, so it is checked, not trusted: a
    percentage must be a finite number from 0 to 100, and Istanbul's line counts whole
    numbers with ``0 ≤ covered ≤ total``. ``Infinity``, ``NaN``, ``5000``, ``1e400`` or a
    400-digit count are a ReportError saying so, like any other unreadable report.
    """
    return _total(_loaded(report))


def read_coverage(report: bytes) -> tuple[float, list[str]]:
    """``coverage_percent`` of ``report`` and the files it measured (coverage.py JSON
    ``files``, or an Istanbul json-summary's keys besides ``total``, sorted), from one
    parse (a report may be 8 MiB)."""
    data = _loaded(report)
    return _total(data), _files(data)


def _loaded(report: bytes) -> dict[str, Any]:
    try:
        data = json.loads(report)
    except ValueError:
        raise ReportError("coverage report is not JSON") from None
    except RecursionError:
        raise _too_deep() from None
    if not isinstance(data, dict):
        raise ReportError("coverage report is not a JSON object")
    return data


def _total(data: dict[str, Any]) -> float:
    totals = data.get("totals")
    if isinstance(totals, dict) and "percent_covered" in totals:
        return _percent(totals["percent_covered"], "totals.percent_covered")
    lines = data.get("total", {}).get("lines") if isinstance(data.get("total"), dict) else None
    if isinstance(lines, dict):
        if _is_number(lines.get("pct")):
            return _percent(lines["pct"], "total.lines.pct")
        total, covered = lines.get("total"), lines.get("covered")
        if _is_count(total) and _is_count(covered) and total > 0:
            if covered > total:
                raise ReportError(f"coverage report counts {_shown(covered)} covered lines "
                                  f"of {_shown(total)}: covered cannot exceed total")
            try:
                return _percent(100 * covered / total, "total.lines")
            except OverflowError:
                raise ReportError("coverage report's line counts are too large") from None
        raise ReportError("coverage report measured no lines")
    raise ReportError("coverage report is neither coverage.py JSON nor an Istanbul json-summary")


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _percent(value: object, field: str) -> float:
    """``value`` as a percentage; ReportError unless it is a finite number from 0 to 100
    (compared before any conversion, so neither NaN nor a huge integer gets through)."""
    if not _is_number(value):
        raise ReportError(f"coverage report's {field} is not a number")
    if not 0 <= value <= 100:  # False for NaN too
        raise ReportError(f"coverage report gives {field} = {_shown(value)}: a percentage "
                          "must be a finite number from 0 to 100")
    return float(value)


def _shown(value: object, limit: int = 24) -> str:
    """``value`` for a message, cut to ``limit`` characters (a report's 400-digit count is
    not repeated in full)."""
    if isinstance(value, int) and value >= 10**limit:
        return f"a number of over {limit} digits"
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "…"


def _too_deep() -> ConfigError:
    """A coverage report nested past the JSON parser's recursion limit: what the project's
    coverage command wrote is not a report this service reads (the same on any retry)."""
    return ConfigError(
        "the coverage report is nested too deeply to be read: [reports] coverage must be "
        "coverage.py JSON or an Istanbul json-summary", details={"key": "reports.coverage"})


def _files(data: dict[str, Any]) -> list[str]:
    files = data.get("files")
    listed: dict[str, object] = files if isinstance(files, dict) else data
    return sorted(str(k) for k in listed if k != "total")


def _measured(files: list[str], shown: int = 5) -> str:
    if not files:
        return "no files measured"
    more = f" and {len(files) - shown} more" if len(files) > shown else ""
    plural = "s" if len(files) != 1 else ""
    return f"measured {len(files)} file{plural}: {', '.join(files[:shown])}{more}"


def type_error_count(output: str, exit_code: int | None = None) -> int | None:
    """Errors reported by mypy or tsc; None when the output says nothing we can read.

    The count is the largest of the checker's own summary lines (mypy's ``Found N errors
    in M files (checked K source files)``, tsc's ``Found N errors.`` and its variants,
    each a whole line) and the number of error lines: an error message can quote
    ``Found 0 errors`` and a forger can add lines, but neither can lower the count.
    ``Success: no issues found`` is 0. A checker that exits non-zero has found something
    (or failed): no count, or a count of 0, is then None, never 0 errors. A clean exit
    with nothing to count is 0 errors. Numbers of more than ``COUNT_DIGITS`` digits are not
    read.
    """
    text = _ANSI.sub("", output)
    counts = [int(n) for pattern in _SUMMARIES for n in pattern.findall(text)]
    if _MYPY_OK.search(text):
        counts.append(0)
    lines = len(_TSC_ERROR.findall(text)) + len(_MYPY_ERROR.findall(text))
    if lines:
        counts.append(lines)
    count = max(counts) if counts else None
    if exit_code is not None and exit_code != 0:
        return count or None
    if exit_code == 0 and count is None:
        return 0
    return count


def describe(result: CommandResult) -> str:
    """``exit 0``, ``exit 2``, ``timed out``, ``killed: out of memory``..."""
    if result.cancelled:
        return "cancelled"
    if result.timed_out:
        return "timed out"
    if result.oom_killed:
        return "killed: out of memory"
    if result.pids_limited:
        return "killed: process limit"
    return f"exit {result.exit_code}"


def evaluate(
    requirements: Mapping[str, Requirement], evidence: Evidence
) -> dict[str, CriterionResult]:
    """One CriterionResult per requirement, from ``evidence``."""
    return {name: _evaluate_one(name, req, evidence) for name, req in requirements.items()}


def _evaluate_one(name: str, req: Requirement, ev: Evidence) -> CriterionResult:
    if ev.setup_failure is not None and name != "doc.updated":
        return _fail(req, None, f"setup failed ({describe(ev.setup_failure)}): "
                     f"{ev.setup_failure.command}")
    if name == "test.pass":
        if ev.test is None:
            return _fail(req, None, "no test command ran")
        return _result(req, ev.test.ok, describe(ev.test))
    if name == "test.coverage":
        return _coverage(req, ev)
    if name == "type.strict":
        return _types(req, ev)
    if name == "doc.updated":
        hits = sorted(p for p in ev.changed_paths if touches(p, str(req.value)))
        detail = None if hits else f"{req.value} is not among the changed paths"
        return CriterionResult(passed=bool(hits), actual=bool(hits), required=req.raw,
                               detail=detail)
    if name == "build":
        if not ev.build:
            return _fail(req, None, "no build command ran")
        failed = [r for r in ev.build if not r.ok]
        actual = "all passed" if not failed else f"{describe(failed[0])}: {failed[0].command}"
        return _result(req, not failed, actual)
    return _fail(req, None, f"{name} is not a machine-checked criterion")


def _coverage(req: Requirement, ev: Evidence) -> CriterionResult:
    if ev.coverage_report_refused is not None:
        return _fail(req, None, ev.coverage_report_refused)
    if ev.coverage_report is None:
        where = ev.coverage_report_path or "the coverage report"
        why = f" (tests: {describe(ev.test)})" if ev.test is not None and not ev.test.ok else ""
        return _fail(req, None, f"{where} was not produced{why}")
    try:
        percent, files = read_coverage(ev.coverage_report)
    except ReportError as exc:
        where = f"{ev.coverage_report_path}: " if ev.coverage_report_path else ""
        return _fail(req, None, f"{where}{exc}")
    percent = round(percent, 2)
    return CriterionResult(passed=check(req, percent), actual=percent, required=req.raw,
                           detail=_measured(files))


def _types(req: Requirement, ev: Evidence) -> CriterionResult:
    if ev.typecheck is None:
        return _fail(req, None, "no type-check command ran")
    if ev.typecheck.timed_out or ev.typecheck.cancelled or ev.typecheck.oom_killed:
        return _fail(req, None, f"type check {describe(ev.typecheck)}")
    output = ev.typecheck_output or ev.typecheck.output_tail
    count = type_error_count(output, ev.typecheck.exit_code)
    if count is None:
        return _fail(req, None, f"could not read an error count from the type checker's "
                     f"output ({describe(ev.typecheck)})")
    return CriterionResult(passed=check(req, count), actual=count, required=req.raw)


def _result(req: Requirement, ok: bool, actual: str) -> CriterionResult:
    return CriterionResult(passed=check(req, ok), actual=actual, required=req.raw)


def _fail(req: Requirement, actual: object, detail: str) -> CriterionResult:
    return CriterionResult(passed=False, actual=actual, required=req.raw, detail=detail)
