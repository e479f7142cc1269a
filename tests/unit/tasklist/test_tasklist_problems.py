"""Broken task lists are reported in full, with line numbers, and never half-used."""

from __future__ import annotations

import pytest

from runner.errors import Classification
from runner.tasklist import Problem, TaskList, TaskListError


def problems_of(text: str) -> list[tuple[int, str]]:
    with pytest.raises(TaskListError) as caught:
        TaskList.parse(text)
    return [(problem.line, problem.message) for problem in caught.value.problems]


def test_given_an_unknown_dependency_then_the_line_naming_it_is_reported():
    text = (
        "Phase 1: A (Dependencies: [])\n\n- 1.1 X (Dependencies: [])\n"
        "- 1.2 Y (Dependencies: [1.1, 9.9])\n  - 1.2.1 step\n"
    )

    assert problems_of(text) == [(4, "task 1.2 depends on unknown task 9.9")]


def test_given_an_unknown_dependency_in_a_section_then_the_field_line_is_reported():
    text = '#### 1.1 A\n- **Status**: pending\n- **Dependencies**: ["1.0"]\n'

    assert problems_of(text) == [(3, "task 1.1 depends on unknown task 1.0")]


def test_given_a_dependency_on_a_task_hidden_in_a_plain_comment_then_it_is_unknown():
    text = "<!--\n- [ ] 1.1 Old\n-->\n- [ ] 1.2 New (Dependencies: [1.1])\n"

    assert problems_of(text) == [(4, "task 1.2 depends on unknown task 1.1")]


def test_given_a_duplicate_id_then_the_second_occurrence_is_reported():
    text = "- [ ] 1.1 A\n- [ ] 1.2 B\n\n- [ ] 1.1 C\n"

    assert problems_of(text) == [(4, "duplicate task id 1.1 (first defined on line 1)")]


def test_given_two_tasks_waiting_on_each_other_then_the_cycle_is_reported():
    text = "- [ ] 1.1 A\n- [ ] 1.2 B (Dependencies: [1.3])\n- [ ] 1.3 C (Dependencies: [1.2])\n"

    assert problems_of(text) == [(2, "dependency cycle: 1.2 -> 1.3 -> 1.2")]


def test_given_a_task_depending_on_itself_then_it_is_reported():
    assert problems_of("- [ ] 1.1 A (Dependencies: [1.1])\n") == [(1, "task 1.1 depends on itself")]


@pytest.mark.parametrize(
    ("text", "line"),
    [
        # a group waiting for one of its own steps
        (
            (
                "Phase 1: P (Dependencies: [])\n- 1.1 G (Dependencies: [1.1.2])\n"
                "  - 1.1.1 a\n  - 1.1.2 b\n"
            ),
            2,
        ),
        # a step waiting for its own group
        (
            (
                "Phase 1: P (Dependencies: [])\n- 1.1 G (Dependencies: [])\n"
                "  - 1.1.1 a\n  - 1.1.2 b (Dependencies: [1.1])\n"
            ),
            4,
        ),
        # a phase waiting for a later phase whose task waits for the first phase's task
        (
            (
                "Phase 1: P (Dependencies: [2])\n- 1.1 G (Dependencies: [])\n"
                "Phase 2: Q (Dependencies: [])\n- 2.1 H (Dependencies: [1.1])\n"
            ),
            1,
        ),
        # a step waiting for a later step of its group (steps run in order)
        (
            (
                "Phase 1: P (Dependencies: [])\n- 1.1 G\n"
                "  - 1.1.1 a (Dependencies: [1.1.2])\n  - 1.1.2 b\n"
            ),
            3,
        ),
    ],
)
def test_given_a_cycle_through_ancestors_then_it_is_reported_at_its_dependency(text, line):
    problems = problems_of(text)

    assert len(problems) == 1
    assert problems[0][0] == line
    assert problems[0][1].startswith("dependency cycle: ")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- [ ] 1.0 B\n- [ ] 1.1 A (Dependencies: [1.0\n", "unclosed bracket"),
        ("- [ ] 1.0 B\n- [ ] 1.1 A (Dependencies: [1.0)\n", "unclosed bracket"),
        ("- [ ] 1.0 B\n- [ ] 1.1 A (Dependencies: 1.0])\n", "unclosed bracket"),
        ("- [ ] 1.0 B\n- [ ] 1.1 A (Dependencies: [1.0]\n", "missing ')'"),
        ("- [ ] 1.0 B\n- [ ] 1.1 A (Dependencies: [a b])\n", "'a b' is not a task id"),
        ("- [ ] 1.0 B\n- [ ] 1.1 A (Dependencies: [1.0 1.2])\n", "'1.0 1.2' is not a task id"),
        ("- [ ] 1.0 B\n#### 1.1 A\n- **Dependencies**: [1.0,, 2]\n", "'' is not a task id"),
    ],
)
def test_given_a_malformed_dependency_list_then_its_line_is_reported(text, message):
    ((line, reported),) = problems_of(text)

    assert line == text.count("\n")
    assert "malformed dependency list" in reported
    assert message in reported


def test_given_an_unknown_section_status_then_it_is_reported():
    assert problems_of("\n#### 1.1 A\n- **Status**: finished\n") == [
        (
            3,
            (
                "task 1.1: unknown status 'finished' "
                "(expected pending, in_progress, completed, done or blocked)"
            ),
        )
    ]


def test_given_an_unclosed_comment_then_it_is_reported_where_it_opens():
    assert problems_of("- [ ] 1.1 A\n\n<!-- oops\n- [ ] 1.2 B\n") == [
        (3, "comment '<!--' is never closed with '-->'")
    ]


def test_given_several_problems_then_all_are_reported_in_line_order():
    text = "- [ ] 1.3 C (Dependencies: [x])\n- [ ] 1.1 A (Dependencies: [7])\n- [ ] 1.1 B\n"

    assert problems_of(text) == [
        (1, "task 1.3: malformed dependency list: 'x' is not a task id"),
        (2, "task 1.1 depends on unknown task 7"),
        (3, "duplicate task id 1.1 (first defined on line 2)"),
    ]


def test_given_a_broken_list_then_the_error_is_a_config_error_listing_lines():
    with pytest.raises(TaskListError) as caught:
        TaskList.parse("- [ ] 1.1 A (Dependencies: [2])\n", source="repo/tasks_list.md")

    error = caught.value
    assert error.classification is Classification.CONFIG
    assert str(error) == "line 1: task 1.1 depends on unknown task 2"
    assert error.problems == [Problem(1, "task 1.1 depends on unknown task 2")]
    assert error.details["source"] == "repo/tasks_list.md"


# -- ids too long or too deep: stored in columns of 200 characters and named in branches ---

TEN_LEVELS = ".".join(["1"] * 10)  # the deepest id allowed
ELEVEN_LEVELS = TEN_LEVELS + ".1"
LONG = "1." * 50 + "1"  # 51 levels, 101 characters


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (f"- [ ] {ELEVEN_LEVELS} A\n", 1,
         f"task id {ELEVEN_LEVELS} is too deep (11 levels; at most 10)"),
        (f"- [ ] 1 A\n#### {ELEVEN_LEVELS} Section\n- **Status**: pending\n", 2,
         f"task id {ELEVEN_LEVELS} is too deep (11 levels; at most 10)"),
        (f"- [ ] 1 A\n- [ ] {LONG} B\n", 2,
         f"task id {LONG[:40]}... is too long (101 characters; at most 100)"),
        ("Phase " + "9" * 101 + ": P\n", 1,
         f"task id {'9' * 40}... is too long (101 characters; at most 100)"),
        ("- [ ] " + "7" * 101 + " A\n", 1,
         f"task id {'7' * 40}... is too long (101 characters; at most 100)"),
        # qualified by its parent: "2." under a ten-level section is an eleventh level
        (f"#### {TEN_LEVELS} S\n- [ ] 2. A\n", 2,
         f"task id {TEN_LEVELS}.2 is too deep (11 levels; at most 10)"),
        # generated under a ten-level section; the items under it are not reported again
        (f"#### {TEN_LEVELS} S\n- [ ] A\n  - [ ] B\n  - [ ] 3. C\n", 2,
         f"task id {TEN_LEVELS}.1 is too deep (11 levels; at most 10)"),
        # qualified by a generated parent
        (f"#### {'1.' * 8}1 S\n- [ ] A\n  - [ ] 4. B\n", 3,
         f"task id {TEN_LEVELS}.4 is too deep (11 levels; at most 10)"),
    ],
)
def test_given_an_id_too_long_or_too_deep_then_its_line_is_reported(text, line, message):
    assert problems_of(text) == [(line, message)]


def test_given_ids_at_the_limits_then_they_are_tasks():
    nine = TEN_LEVELS[:-2]
    text = f"- [ ] {'1' * 100} A\n- [ ] 9.{'9' * 98} B\n#### {nine} S\n#### {TEN_LEVELS} T\n"

    tasks = TaskList.parse(text)

    assert [(task.id, task.parent) for task in tasks.tasks] == [
        ("1" * 100, None), ("9." + "9" * 98, None), (nine, None), (TEN_LEVELS, nine)]
    assert max(len(task.id) for task in tasks.tasks) == 100


def test_given_an_id_as_long_as_its_line_then_the_problem_quotes_its_start_only():
    text = "#### " + ".".join(["1"] * 100_000) + " Deep\n- [ ] 1. A\n- **Status**: odd\n"

    problems = problems_of(text)

    assert problems == [
        (1, f"task id {'1.' * 20}... is too long (199999 characters; at most 100)")]
