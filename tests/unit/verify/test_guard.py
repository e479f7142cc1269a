"""The goalposts a task may not move: protected paths, fewer tests, lower coverage, and
what an unchanged base cannot pass. Test-run summaries are real runners' output."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.stages.tasklist_io import OUTCOMES_FILE, outcomes_path
from runner.ports import CommandResult, CriterionResult
from runner.tasklist import TASK_LIST_NAMES
from runner.verify.guard import (
    ALWAYS_PROTECTED,
    Measures,
    baseline_problems,
    measures_of,
    patch_of,
    protected_changes,
    reported_test_count,
    runners_of,
    split_patterns,
    weakening,
)

OPERATOR = split_patterns(".github/workflows/**, .gitlab-ci.yml,Jenkinsfile")


@pytest.mark.parametrize(("changed", "hits"), [
    (["src/a.py", "tests/test_a.py"], []),
    (["tasks_list.md", "src/a.py"], ["tasks_list.md"]),
    (["docs/tasks_list.md"], ["docs/tasks_list.md"]),
    (["docs/task_outcomes.md"], ["docs/task_outcomes.md"]),
    ([".devteam.toml"], [".devteam.toml"]),
    ([".github/workflows/ci.yml", ".github/CODEOWNERS"], [".github/workflows/ci.yml"]),
    (["ci/Jenkinsfile"], ["ci/Jenkinsfile"]),
    (["./.gitlab-ci.yml"], ["./.gitlab-ci.yml"]),
    (["src/.github/workflows.py"], []),
])
def test_protected_paths_are_found_wherever_the_rule_says(changed, hits):
    assert protected_changes(changed, OPERATOR) == hits


@pytest.mark.parametrize("name", TASK_LIST_NAMES)
@pytest.mark.parametrize("folder", ["", "docs/", "ai_docs/tasks/", "tasks/", "deep/er/"])
def test_every_name_a_task_list_is_found_by_is_protected_wherever_it_is(name, folder):
    # the audit: `task_lists.md` (the second name read_task_list tries) was not protected,
    # so a task could mark other tasks done and have that merged
    assert protected_changes([f"{folder}{name}", "src/a.py"]) == [f"{folder}{name}"]


def test_the_outcomes_document_the_service_writes_is_always_protected():
    assert OUTCOMES_FILE in ALWAYS_PROTECTED
    assert set(TASK_LIST_NAMES) <= set(ALWAYS_PROTECTED)
    assert protected_changes([outcomes_path("planning/TODO.md")]) == [
        "planning/task_outcomes.md"]


@pytest.mark.parametrize("changed", [
    "planning/TODO.md", "./planning/TODO.md", "/planning/TODO.md", "planning//TODO.md"])
def test_a_project_s_configured_task_list_path_is_protected(changed):
    configured = ("planning/TODO.md", outcomes_path("planning/TODO.md"))

    assert protected_changes([changed, "src/a.py"], OPERATOR, configured) == [changed]
    assert protected_changes([changed]) == []  # only because the project names it


def test_a_configured_path_is_that_one_file_not_a_pattern():
    configured = ["plans/TODO [v2]*.md", "TODO.md"]

    assert protected_changes(["plans/TODO [v2]*.md"], (), configured) == [
        "plans/TODO [v2]*.md"]
    assert protected_changes(["plans/TODO 2x.md", "docs/TODO.md", "TODO.md.bak"], (),
                             configured) == []


def test_a_project_can_protect_more_but_not_unprotect_the_task_list():
    assert protected_changes(["deploy/prod.tf", "tasks_list.md"], ["deploy/**"]) == [
        "deploy/prod.tf", "tasks_list.md"]
    assert protected_changes(["tasks_list.md"], []) == ["tasks_list.md"]


@pytest.mark.parametrize(("output", "count"), [
    ("..F\n=== 1 failed, 41 passed, 2 skipped in 0.31s ===\n", 42),
    ("42 passed in 0.12s\n", 42),
    ("\x1b[32m===== 3 passed, 1 xfailed in 1.02s =====\x1b[0m\n", 4),
    ("==== 1 passed, 2 errors in 0.5s ====", 3),
    ("==== 1 failed, 2 subtests passed in 0.02s ====\n", 1),  # subtests are not tests
    ("5 passed in 0.12 seconds\n", 5),  # pytest before 5
    ("collected 0 items\n\n==== no tests ran in 0.01s ====\n", 0),
    ("Tests:       1 failed, 41 passed, 42 total\nTime:        1.2 s\n", 42),
    (" Test Files  3 passed (3)\n      Tests  2 failed | 40 passed (42)\n   Start at  10:00\n", 42),
    ("  40 passing (30ms)\n  2 failing\n\n  1) add\n", 42),
    ("  7 passing (3ms)\n", 7),
    ("# tests 42\n# suites 0\n# pass 42\n# fail 0\n", 42),
    ("\u2139 tests 5\n\u2139 pass 5\n", 5),
    (("......\n----------------------------------------------------------------------\n"
     "Ran 6 tests in 0.001s\n\nOK\n"), 6),
    ("everything is fine\n", None),
    ("", None),
])
def test_tests_run_reads_the_summary_of_common_runners(output, count):
    assert reported_test_count(output) == count


def _run(command: str, output: str, code: int = 0) -> CommandResult:
    return CommandResult(command=command, exit_code=code, duration=1.0, output_tail=output)


# Forged summaries: the test run's output is the model's to write.

PYTEST = "python3 -m coverage run --source=src -m pytest -q"
D = "9" * 5000


@pytest.mark.parametrize("output", [
    f"==== {D} passed in 0.1s ====\n",
    f"Ran {D} tests in 0.1s\n",
    f"Tests:  {D} total\n",
    f"      Tests  {D} passed ({D})\n",
    f"  {D} passing (3ms)\n",
    f"# tests {D}\n",
    f"==== {'9' * 30} passed in 0.1s ====\n",
    f"Ran {'9' * 10} tests in 0.1s\n",
])
def test_a_summary_count_of_too_many_digits_is_unreadable_not_a_crash(output):
    assert reported_test_count(output) is None
    found = weakening(Measures(tests_run=120), measures_of([_run("npm test", output)],
                                                            "npm test", {}))
    assert found["tests.run"].detail.startswith("tests run: 120 → none reported")


@pytest.mark.parametrize(("command", "output"), [
    (PYTEST, "1 passed in 0.1s\nRan 500 tests in 0.1s\n"),  # the audit's
    (PYTEST, "==== 1 passed in 0.1s ====\n==== 500 passed in 0.1s ====\n"),
    (PYTEST, "==== 500 passed in 0.1s ====\n==== 1 passed in 0.1s ====\n"),
    ("npm test", "Tests:       1 passed, 1 total\nTests:       500 passed, 500 total\n"),
    ("npm test", "1 passed in 0.1s\nRan 500 tests in 0.1s\n# tests 500\n"),
    ("npx mocha", "  1 passing (3ms)\n\n  noise\n  499 failing\n"),
    ("python -m unittest", "Ran 1 test in 0.0s\nRan 500 tests in 0.1s\n"),
])
def test_extra_summary_lines_never_raise_the_count(command, output):
    measures = measures_of([_run(command, output)], command, {})

    assert measures.tests_run == 1
    found = weakening(Measures(tests_run=120), measures)
    assert found["tests.run"].passed is False
    assert found["tests.run"].detail.startswith("tests run: 120 → 1")


@pytest.mark.parametrize(("command", "output"), [
    (PYTEST, "Ran 500 tests in 0.1s\n"),
    (PYTEST, "Tests:       500 passed, 500 total\n"),
    ("npx jest --coverage", "==== 500 passed in 0.1s ====\n"),
    ("npx vitest run", "Ran 500 tests in 0.1s\n"),
])
def test_only_the_named_runners_own_summary_counts(command, output):
    assert reported_test_count(output, command) is None
    found = weakening(Measures(tests_run=120), measures_of([_run(command, output)], command, {}))
    assert found["tests.run"].detail.startswith("tests run: 120 → none reported")


@pytest.mark.parametrize(("command", "runners"), [
    (PYTEST, ("pytest",)),
    ("py.test -x", ("pytest",)),
    ("python -m unittest discover", ("unittest",)),
    ("npx jest --ci", ("jest",)),
    ("npx vitest run", ("vitest",)),
    ("npx mocha 'test/**/*.js'", ("mocha",)),
    ("node --test test/", ("tap",)),
    ("npm test", ("pytest", "unittest", "jest", "vitest", "mocha", "tap")),
    (None, ("pytest", "unittest", "jest", "vitest", "mocha", "tap")),
])
def test_the_runner_is_known_from_the_test_command(command, runners):
    assert runners_of(command) == runners


@given(before=st.text(max_size=200), after=st.text(max_size=200),
       command=st.sampled_from([PYTEST, "npm test", "npx jest", "npx mocha", None]))
def test_whatever_else_is_printed_the_count_never_exceeds_the_real_summary(before, after, command):
    real = {PYTEST: "==== 1 failed, 41 passed in 0.3s ====",
            "npx jest": "Tests:       1 failed, 41 passed, 42 total",
            "npx mocha": "  41 passing (3ms)\n  1 failing"}.get(command, "Ran 42 tests in 0.1s")

    count = reported_test_count(f"{before}\n{real}\n{after}", command)

    assert count is not None and 0 <= count <= 42


@pytest.mark.parametrize("actual", [float("inf"), float("nan"), 5000.0, -1.0, 100000])
def test_a_coverage_no_report_could_give_is_not_measured(actual):
    results = {"test.coverage": CriterionResult(passed=True, actual=actual, required="≥80%")}
    assert measures_of([], None, results).coverage is None


def test_a_recorded_floor_no_run_could_reach_is_no_floor():
    # stored before such values were refused: they would fail every later round
    assert weakening(Measures(coverage=100000.0, tests_run=10**30),
                     Measures(coverage=85.0, tests_run=42)) == {}
    assert weakening(Measures(coverage=float("inf")), Measures(coverage=85.0)) == {}


def test_measures_come_from_the_test_command_and_the_coverage_criterion():
    commands = [_run("pytest", "5 passed in 0.1s"), _run("coverage json", "Wrote JSON")]
    results = {"test.coverage": CriterionResult(passed=True, actual=91.5, required="≥80%")}
    assert measures_of(commands, "pytest", results, "abc") == Measures(
        tests_run=5, coverage=91.5, commit="abc")
    assert measures_of(commands, None, {}) == Measures()


def test_fewer_tests_than_the_verified_state_fail_with_a_readable_reason():
    before = Measures(tests_run=42, coverage=85.0, commit="0123456789abcdef")
    found = weakening(before, Measures(tests_run=17, coverage=85.0))
    assert list(found) == ["tests.run"]
    assert not found["tests.run"].passed
    assert found["tests.run"].detail.startswith("tests run: 42 → 17")
    assert "0123456789" in found["tests.run"].detail


def test_a_test_command_that_reports_nothing_where_tests_ran_counts_as_weaker():
    found = weakening(Measures(tests_run=3), Measures(tests_run=None))
    assert found["tests.run"].detail.startswith("tests run: 3 → none reported")


def test_lower_coverage_fails_and_equal_or_more_does_not():
    before = Measures(tests_run=4, coverage=85.25)
    assert weakening(before, Measures(tests_run=4, coverage=85.25)) == {}
    assert weakening(before, Measures(tests_run=9, coverage=99.0)) == {}
    found = weakening(before, Measures(tests_run=4, coverage=70.0))
    assert list(found) == ["coverage.kept"]
    assert found["coverage.kept"].detail.startswith("coverage: 85.25% → 70%")


def test_nothing_is_weaker_than_nothing():
    assert weakening(None, Measures(tests_run=0)) == {}
    assert weakening(Measures(), Measures(tests_run=0)) == {}
    assert weakening(Measures(tests_run=0), Measures(tests_run=0)) == {}


def test_a_base_that_fails_its_tests_or_build_cannot_pass_but_thresholds_may_be_the_task():
    results = {
        "test.pass": CriterionResult(passed=False, actual="exit 1", required="pass"),
        "type.strict": CriterionResult(passed=False, actual=7, required="0 errors"),
        "test.coverage": CriterionResult(passed=False, actual=40.0, required="≥80%"),
        "build": CriterionResult(passed=False, actual="exit 2: npm run build", required="pass"),
        "doc.updated": CriterionResult(passed=False, actual=False, required="README.md"),
    }
    assert baseline_problems(results) == [
        "test.pass: required pass, got exit 1", "build: required pass, got exit 2: npm run build"]


def test_a_base_whose_checks_cannot_be_read_cannot_pass():
    results = {"test.coverage": CriterionResult(
        passed=False, actual=None, required="≥80%", detail=".coverage.json was not produced")}
    assert baseline_problems(results) == ["test.coverage: .coverage.json was not produced"]


def test_a_base_without_tests_yet_is_not_broken():
    results = {"test.pass": CriterionResult(passed=False, actual="exit 5", required="pass")}
    assert baseline_problems(results, Measures(tests_run=0)) == []
    assert baseline_problems(results, Measures(tests_run=None)) != []


PATCH = """diff --git a/src/a.py b/src/a.py
--- a/src/a.py
+++ b/src/a.py
@@ -1 +1 @@
-x = 1
+x = 2
diff --git a/tasks_list.md b/tasks_list.md
--- a/tasks_list.md
+++ b/tasks_list.md
@@ -1 +1 @@
-- [ ] 1.2 Next
+- [x] 1.2 Next
"""


def test_the_diff_shown_is_the_protected_paths_only_and_bounded():
    shown = patch_of(PATCH, ["tasks_list.md"])
    assert shown.startswith("diff --git a/tasks_list.md") and "+- [x] 1.2 Next" in shown
    assert "src/a.py" not in shown
    cut = patch_of(PATCH, ["src/a.py", "tasks_list.md"], limit=40)
    assert cut.endswith("(diff cut at 40 characters)\n") and len(cut) < 100
