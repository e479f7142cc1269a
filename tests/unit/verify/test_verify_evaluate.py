"""Evaluating criteria from real coverage reports and real mypy/tsc output."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.errors import ConfigError
from runner.ports import CommandResult
from runner.verify.evaluate import (
    Evidence,
    ReportError,
    coverage_percent,
    evaluate,
    measured_files,
    parse_requirements,
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
    expected = measured_files(sample(report))
    requirements, _ = parse_requirements({"test.coverage": ">=1%"})

    result = evaluate(requirements, Evidence(coverage_report=sample(report)))["test.coverage"]

    assert expected and "total" not in expected
    assert result.detail is not None
    assert result.detail.startswith(f"measured {len(expected)} file")
    assert expected[0] in result.detail
