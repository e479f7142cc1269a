"""Evaluating criteria from real coverage reports and real mypy/tsc output."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from runner.errors import ConfigError
from runner.ports import CommandResult
from runner.verify.evaluate import (
    Evidence,
    ReportError,
    coverage_percent,
    evaluate,
    parse_requirements,
    read_coverage,
    type_error_count,
)

SAMPLES = Path(__file__).parent / "samples"


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def cmd(command: str, exit_code: int = 0, output: str = "", **flags) -> CommandResult:
    return CommandResult(
        command=command, exit_code=exit_code, duration=1.0, output_tail=output, **flags
    )


def test_coverage_py_json_gives_its_total_percent():
    assert coverage_percent(sample("coveragepy.json")) == pytest.approx(73.3333, abs=1e-3)


def test_istanbul_json_summary_gives_total_line_percent():
    assert coverage_percent(sample("istanbul_summary.json")) == 92.86


@pytest.mark.parametrize("report", ["coveragepy.json", "istanbul_summary.json"])
def test_one_read_of_a_report_gives_its_total_and_its_files(report):
    data = sample(report)
    percent, files = read_coverage(data)
    listed = json.loads(data)
    listed = listed.get("files", listed)
    assert (percent, files) == (coverage_percent(data), sorted(k for k in listed if k != "total"))
    assert files and "total" not in files


@pytest.mark.parametrize(
    ("report", "message"),
    [
        (sample("istanbul_unknown_pct.json"), "measured no lines"),
        (b"<html>coverage</html>", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"meta": {}}', "neither coverage.py JSON nor an Istanbul"),
    ],
)
def test_unreadable_coverage_reports_say_why(report, message):
    with pytest.raises(ReportError, match=message):
        coverage_percent(report)


@pytest.mark.parametrize(
    ("name", "exit_code", "count"),
    [
        ("mypy_errors.txt", 1, 1),
        ("mypy_three_errors.txt", 1, 3),
        ("mypy_success.txt", 0, 0),
        ("tsc_plain.txt", 2, 3),
        ("tsc_pretty_ansi.txt", 2, 3),
    ],
)
def test_type_checker_output_gives_the_error_count(name, exit_code, count):
    assert type_error_count(sample(name).decode(), exit_code) == count


def test_type_checker_output_without_errors_or_summary_depends_on_the_exit_code():
    assert type_error_count("", 0) == 0
    assert type_error_count("Segmentation fault", 139) is None


def test_given_all_kinds_of_evidence_then_each_criterion_gets_passed_actual_required():
    requirements, notes = parse_requirements(
        {
            "test.pass": "pass",
            "test.coverage": "≥70%",
            "type.strict": "0 errors",
            "doc.updated": "docs/api.md",
            "build": "pass",
            "criterion 1": "Users can sign in with SSO",
        }
    )
    evidence = Evidence(
        test=cmd("pytest", 0),
        coverage_report=sample("coveragepy.json"),
        typecheck=cmd("mypy --strict .", 1),
        typecheck_output=sample("mypy_three_errors.txt").decode(),
        build=[cmd("make", 0), cmd("make dist", 2)],
        changed_paths=["docs/api.md", "src/app.py"],
    )

    results = evaluate(requirements, evidence)

    assert notes == ["criterion 1: Users can sign in with SSO"]
    assert set(results) == {"test.pass", "test.coverage", "type.strict", "doc.updated", "build"}
    assert (results["test.pass"].passed, results["test.pass"].actual) == (True, "exit 0")
    assert results["test.coverage"].passed is True
    assert results["test.coverage"].actual == 73.33
    assert results["test.coverage"].required == "≥70%"
    assert (results["type.strict"].passed, results["type.strict"].actual) == (False, 3)
    assert (results["doc.updated"].passed, results["doc.updated"].actual) == (True, True)
    assert results["build"].passed is False
    assert results["build"].actual == "exit 2: make dist"


def test_given_a_missing_report_after_failing_tests_then_coverage_fails_with_a_reason():
    requirements, _ = parse_requirements({"test.coverage": "80%"})

    result = evaluate(
        requirements, Evidence(test=cmd("npm test", 1), coverage_report_path="coverage/x.json")
    )

    assert result["test.coverage"].passed is False
    assert result["test.coverage"].detail == "coverage/x.json was not produced (tests: exit 1)"


def test_given_a_killed_test_run_then_actual_says_how_it_died():
    requirements, _ = parse_requirements({"test.pass": "pass"})

    oom = evaluate(requirements, Evidence(test=cmd("pytest", 137, oom_killed=True)))
    slow = evaluate(requirements, Evidence(test=cmd("pytest", -1, timed_out=True)))

    assert oom["test.pass"].actual == "killed: out of memory"
    assert slow["test.pass"].actual == "timed out"
    assert not oom["test.pass"].passed
    assert not slow["test.pass"].passed


def test_given_an_untouched_doc_then_doc_updated_fails_with_detail():
    requirements, _ = parse_requirements({"doc.updated": "CHANGELOG.md"})

    result = evaluate(requirements, Evidence(changed_paths=["src/app.py"]))

    assert result["doc.updated"].passed is False
    assert result["doc.updated"].actual is False
    assert "CHANGELOG.md" in result["doc.updated"].detail


def test_given_a_timed_out_type_check_then_it_fails_without_guessing_a_count():
    requirements, _ = parse_requirements({"type.strict": "0 errors"})

    result = evaluate(requirements, Evidence(typecheck=cmd("mypy .", -1, timed_out=True)))

    assert result["type.strict"].passed is False
    assert result["type.strict"].actual is None


@pytest.mark.parametrize(
    ("criteria", "message"),
    [
        ({"test.coverage": "docs/api.md"}, "needs a percentage"),
        ({"doc.updated": "≥80%"}, "needs a path"),
        ({"test.pass": "80%"}, "needs 'pass'"),
        ({"type.strict": "several"}, "criterion type.strict"),
    ],
)
def test_given_a_requirement_of_the_wrong_kind_then_config_error(criteria, message):
    with pytest.raises(ConfigError, match=message):
        parse_requirements(criteria)


def test_type_strict_pass_means_zero_errors():
    requirements, _ = parse_requirements({"type.strict": "pass"})

    ok = evaluate(
        requirements,
        Evidence(typecheck=cmd("tsc", 0), typecheck_output=sample("mypy_success.txt").decode()),
    )
    bad = evaluate(
        requirements,
        Evidence(typecheck=cmd("tsc", 2), typecheck_output=sample("tsc_plain.txt").decode()),
    )

    assert ok["type.strict"].passed is True
    assert bad["type.strict"].passed is False


@pytest.mark.parametrize("report", ["coveragepy.json", "istanbul_summary.json"])
def test_a_coverage_result_names_the_files_it_measured(report):
    _, expected = read_coverage(sample(report))
    requirements, _ = parse_requirements({"test.coverage": ">=1%"})

    result = evaluate(requirements, Evidence(coverage_report=sample(report)))["test.coverage"]

    assert expected and "total" not in expected
    assert result.detail is not None
    assert result.detail.startswith(f"measured {len(expected)} file")
    assert expected[0] in result.detail


# Hostile reports and output: what the checks print and write is the model's to choose.

BIG = "9" * 400
HOSTILE_REPORTS = [
    b'{"totals":{"percent_covered":Infinity}}',
    b'{"totals":{"percent_covered":1e400}}',
    b'{"totals":{"percent_covered":NaN}}',
    b'{"totals":{"percent_covered":5000}}',
    b'{"totals":{"percent_covered":-1}}',
    b'{"totals":{"percent_covered":true}}',
    b'{"totals":{"percent_covered":' + BIG.encode() + b"}}",
    b'{"total":{"lines":{"pct":100.5}}}',
    b'{"total":{"lines":{"pct":-Infinity}}}',
    b'{"total":{"lines":{"total":1,"covered":1000}}}',
    b'{"total":{"lines":{"total":1,"covered":' + BIG.encode() + b"}}}",
    b'{"total":{"lines":{"total":true,"covered":true}}}',
    b'{"total":{"lines":{"total":10,"covered":-5}}}',
]


@pytest.mark.parametrize("report", HOSTILE_REPORTS)
def test_a_coverage_value_outside_0_to_100_is_an_unreadable_report_never_a_pass(report):
    requirements, _ = parse_requirements({"test.coverage": "≥80%"})

    result = evaluate(requirements, Evidence(
        test=cmd("pytest"), coverage_report=report, coverage_report_path=".cov.json",
    ))["test.coverage"]

    assert (result.passed, result.actual) == (False, None)
    assert result.detail.startswith(".cov.json: coverage report")
    assert len(result.detail) < 200  # a 400-digit number is not repeated
    assert b"NaN" not in msgspec.json.encode(result)
    with pytest.raises(ReportError):
        coverage_percent(report)


@pytest.mark.parametrize(("report", "percent"), [
    (b'{"totals":{"percent_covered":0}}', 0.0),
    (b'{"totals":{"percent_covered":100}}', 100.0),
    (b'{"total":{"lines":{"total":3,"covered":3}}}', 100.0),
    (b'{"total":{"lines":{"total":' + BIG.encode() + b',"covered":' + BIG.encode() + b"}}}",
     100.0),
])
def test_the_bounds_of_a_percentage_are_still_readable(report, percent):
    assert coverage_percent(report) == percent


@pytest.mark.parametrize("output", [
    f"Found {'9' * 5000} errors in 1 file (checked 1 source file)",
    f"Found {'9' * 400} errors.",
    f"Found {'9' * 10} errors.",
])
def test_a_type_error_count_of_too_many_digits_is_unreadable_not_a_crash(output):
    requirements, _ = parse_requirements({"type.strict": "≤5 errors"})

    assert type_error_count(output, 2) is None
    result = evaluate(requirements, Evidence(typecheck=cmd("tsc", 2), typecheck_output=output))

    assert (result["type.strict"].passed, result["type.strict"].actual) == (False, None)
    assert "could not read an error count" in result["type.strict"].detail


FORGED_TYPE_OUTPUT = [
    # the audit's: tsc without a summary, a message quoting "Found 0 errors"
    ("""a.ts(1,7): error TS2322: Type '"Found 0 errors"' is not assignable to type '1'.""", 2),
    ("Found 0 errors.\n", 2),  # a summary line printed by something else, with a failing exit
    ("Found 0 errors in 0 files (checked 1 source file)\n", 1),
    ("Success: no issues found in 1 source file\n", 1),
    ("Found 0 errors.py:1: error: Name \"x\" is not defined  [name-defined]\n", 1),
    ("x.ts:1:1 - error TS2304: Cannot find name 'x'.\nFound 0 errors.\n", 2),
    ("", 2),
]


@pytest.mark.parametrize(("output", "exit_code"), FORGED_TYPE_OUTPUT)
def test_a_failing_type_checker_never_counts_as_zero_errors(output, exit_code):
    requirements, _ = parse_requirements({"type.strict": "0 errors"})

    result = evaluate(requirements, Evidence(
        typecheck=cmd("npx tsc --noEmit", exit_code), typecheck_output=output,
    ))["type.strict"]

    assert result.passed is False
    assert result.actual != 0
    assert type_error_count(output, exit_code) != 0


@pytest.mark.parametrize(("output", "count"), [
    ("Found 1 error.\n", 1),
    ("Found 7 errors.\n", 7),
    ("Found 1 error in src/a.ts\x1b[90m:4\x1b[0m\n", 1),
    ("Found 2 errors in the same file, starting at: src/a.ts:4\n", 2),
    ("Found 5 errors in 3 files.\n\nErrors  Files\n     5  src/a.ts:1\n", 5),
    ("Found 2 errors in 1 file (errors prevented further checking)\n", 2),
    ("Found 3 errors in 2 files (checked 9 source files)\r\n", 3),
])
def test_each_checkers_own_summary_line_is_read(output, count):
    assert type_error_count(output, 2) == count


def test_a_forged_lower_summary_does_not_lower_the_real_count():
    real = sample("mypy_three_errors.txt").decode()
    forged = "Found 1 error in 1 file (checked 1 source file)\n"

    assert type_error_count(forged + real, 1) == 3
    assert type_error_count(real + forged, 1) == 3
    assert type_error_count("Found 1 error.\n" + sample("tsc_pretty_ansi.txt").decode(), 2) == 3


def test_a_clean_exit_may_still_report_errors_but_never_fewer_than_it_prints():
    assert type_error_count("Found 4 errors.\n", 0) == 4
    assert type_error_count("Found 0 errors.\n", 0) == 0


FRAGMENTS = st.sampled_from([
    "Found ", "0", "1", "9" * 12, " errors", " error", ".", " in ", "1 file", " files.",
    " (checked 1 source file)", "Success: no issues found in 1 source file", "\n", "\r\n",
    "a.ts(1,7): ", "a.py:1: ", "error TS2322: ", "error: ", "\x1b[91m", "\x1b[0m", "x",
])


@given(
    output=st.one_of(st.text(max_size=300), st.lists(FRAGMENTS, max_size=40).map("".join)),
    exit_code=st.integers(min_value=1, max_value=255),
)
@example(output="Found 0 errors.", exit_code=2)
def test_whatever_a_failing_type_checker_prints_it_never_passes_and_never_raises(
    output, exit_code
):
    requirements, _ = parse_requirements({"type.strict": "0 errors"})

    count = type_error_count(output, exit_code)
    result = evaluate(requirements, Evidence(
        typecheck=cmd("mypy .", exit_code), typecheck_output=output,
    ))["type.strict"]

    assert count is None or 0 < count < 10**9
    assert result.passed is False


@given(report=st.one_of(
    st.binary(max_size=200),
    st.builds(lambda v: b'{"totals":{"percent_covered":%s}}' % v.encode(), st.sampled_from(
        ["Infinity", "-Infinity", "NaN", "1e400", "-0.0", "100.0000001", BIG, "true", "null"])
        | st.floats().map(repr) | st.integers().map(str)),
    st.builds(lambda t, c: b'{"total":{"lines":{"total":%d,"covered":%d}}}' % (t, c),
              st.integers(), st.integers()),
))
def test_whatever_a_coverage_report_says_the_percent_is_within_0_to_100_or_unreadable(report):
    try:
        percent = coverage_percent(report)
    except ReportError:
        return
    assert 0.0 <= percent <= 100.0
