"""Properties: lossless round trips, sound selection, and robustness against any text."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.tasklist import (
    Task,
    TaskList,
    TaskListError,
    TaskStatus,
    TaskType,
    generate_task_list,
    select_next,
)

CHECKBOX = re.compile(r"^(\s*- )\[[ xX~!]\] ")
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
STATUSES = st.sampled_from(list(TaskStatus))


def without_checkbox(line: str) -> str:
    return CHECKBOX.sub(r"\1", line)


def is_ready(tasks: TaskList, leaf: Task) -> bool:
    """The readiness rule of CONTRACTS.md, written independently of the selector."""
    if leaf.status in (TaskStatus.DONE, TaskStatus.BLOCKED):
        return False
    current: Task | None = leaf
    while current is not None:
        if not all(tasks.is_done(dependency) for dependency in current.dependencies):
            return False
        current = tasks.get(current.parent) if current.parent is not None else None
    if leaf.parent is not None:
        for sibling in tasks.children(leaf.parent):
            if sibling.id == leaf.id:
                break
            if sibling.type is TaskType.ATOMIC and sibling.status is not TaskStatus.DONE:
                return False
    return True


def assert_selection_is_sound(tasks: TaskList) -> None:
    chosen = select_next(tasks)
    leaves = tasks.leaves()
    if chosen is None:
        assert not any(is_ready(tasks, leaf) for leaf in leaves)
        return
    assert chosen.type is TaskType.ATOMIC
    assert is_ready(tasks, chosen)
    before = leaves[: [leaf.id for leaf in leaves].index(chosen.id)]
    assert not any(is_ready(tasks, leaf) for leaf in before)


generated = st.builds(
    generate_task_list,
    st.integers(min_value=0, max_value=60),
    seed=st.integers(min_value=0, max_value=10_000),
    done_fraction=st.floats(min_value=0, max_value=1),
)


@FAST
@given(generated)
def test_generated_lists_round_trip_and_select_soundly(text):
    tasks = TaskList.parse(text)

    assert tasks.render() == text
    assert_selection_is_sound(tasks)


@FAST
@given(generated, st.lists(st.tuples(st.integers(min_value=0), STATUSES), max_size=8))
def test_status_edits_change_one_token_and_round_trip(text, edits):
    tasks = TaskList.parse(text)
    leaves = tasks.leaves()
    expected = {leaf.id: leaf.status for leaf in leaves}
    for position, status in edits:
        if not leaves:
            break
        leaf = leaves[position % len(leaves)]
        before = tasks.render()

        tasks = tasks.with_status(leaf.id, status)

        after = tasks.render()
        changed = [
            (a, b) for a, b in zip(before.split("\n"), after.split("\n"), strict=True) if a != b
        ]
        assert len(changed) == (0 if expected[leaf.id] is status else 1)
        for old, new in changed:
            assert without_checkbox(old) == without_checkbox(new)
            assert new.startswith(old[: old.index("- ") + 2])
        expected[leaf.id] = status
        assert TaskList.parse(after).render() == after
    assert {leaf.id: leaf.status for leaf in tasks.leaves()} == expected
    assert_selection_is_sound(tasks)


@FAST
@given(generated)
def test_a_list_with_every_leaf_done_selects_nothing(text):
    tasks = TaskList.parse(text)
    for leaf in tasks.leaves():
        tasks = tasks.with_status(leaf.id, TaskStatus.DONE)

    assert select_next(tasks) is None
    assert tasks.progress() == (len(tasks.leaves()), len(tasks.leaves()))
    assert all(tasks.is_done(task.id) for task in tasks.tasks)


@settings(max_examples=15, deadline=None)
@given(st.integers(min_value=1, max_value=200), st.integers(min_value=0, max_value=99))
def test_generated_lists_fully_done_select_nothing(leaves, seed):
    tasks = TaskList.parse(generate_task_list(leaves, seed=seed, done_fraction=1.0))

    assert select_next(tasks) is None


FRAGMENTS = st.sampled_from(
    [
        "Phase 1: Base (Dependencies: [])",
        "Phase 2: Next (Dependencies: [1])",
        "PHASE 1 COMPLETED",
        "- 1.1 Group (Dependencies: [])",
        "- 1.2 Group (Dependencies: [1.1, 2])",
        "  - 1.1.1 step",
        "  - 1.1.2 step (Dependencies: [1.1.1])",
        "- [ ] 1.3 Box",
        "- [x] 2.1 Done",
        "  - [~] 2.1.1 Going",
        "- [!] 3 Stuck",
        "    \u2022 <criterion 1: ok>",
        "    \u2022 test.coverage: \u226580%",
        "  \u2022 files: a.py, b.py",
        "Files: c.py",
        "#### 1.1.1 Section",
        "### 2 Head",
        "- **Status**: completed",
        "- **Status**: weird",
        '- **Dependencies**: ["1.1"]',
        "- **Dependencies**: [1.1",
        "- **Criteria**:",
        "  - build: make",
        "- **Files**:",
        "  - src/x.py",
        "<!--",
        "-->",
        "<!-- Phase 3: C -->",
        "```",
        "text line",
        "   indented text",
        "",
        "\r",
        "\t- 1.4 tabbed",
        "- [ ] 1.5 (Dependencies: [a b])",
        "\ufeff# title",
        "- 1.1 dup",
        "## 1 One",
    ]
)
LINES = st.lists(st.one_of(FRAGMENTS, st.text(max_size=30)), max_size=25)


@settings(max_examples=300, deadline=None)
@given(LINES, st.sampled_from(["\n", "\r\n"]), st.booleans())
def test_any_text_parses_or_fails_with_line_numbered_problems(lines, newline, final):
    text = newline.join(lines) + (newline if final else "")
    try:
        tasks = TaskList.parse(text)
    except TaskListError as error:
        problems = error.problems
    else:
        problems = []
    if problems:
        line_count = text.count("\n") + 1
        assert all(1 <= problem.line <= line_count for problem in problems)
        return
    assert tasks.render() == text
    assert_selection_is_sound(tasks)
    for leaf in tasks.leaves()[:3]:
        try:
            updated = tasks.with_status(leaf.id, TaskStatus.DONE)
        except ValueError:
            continue  # inside a completed block, or a change that would not read back
        assert updated.get(leaf.id).status is TaskStatus.DONE
        assert TaskList.parse(updated.render()).render() == updated.render()
