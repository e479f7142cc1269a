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


# -- the usual forms: phase headings, checkboxes with or without ids, section headings ----

TITLES = st.sampled_from(["Add the endpoint", "Write the docs", "Refactor the parser",
                          "Set up CI", "Fix the cache", "Ship it"])
BOXES = st.sampled_from([" ", " ", "x", "~", "!"])


@st.composite
def usual_lists(draw: st.DrawFn) -> tuple[str, set[int], dict[str, tuple[str, ...]]]:
    """A list in the forms people write, mixed at random; also the 1-based lines that hold
    a task, and the dependencies some phases were given."""
    lines: list[str] = []
    task_lines: set[int] = set()
    phase_dependencies: dict[str, tuple[str, ...]] = {}

    def task(line: str) -> None:
        lines.append(line)
        task_lines.add(len(lines))

    def items(parent: str, indent: int, depth: int, tail: str) -> None:
        numbers = iter(draw(st.permutations(range(1, 9))))
        for _ in range(draw(st.integers(0, 4 if depth == 0 else 2))):
            form = draw(st.sampled_from(["plain", "plain", "bare", "explicit", "bold"]))
            box, title = draw(BOXES), draw(TITLES)
            head = "" if form == "plain" else {
                "bare": "{n}. ", "explicit": "{p}.{n} ", "bold": "**{p}.{n}** "
            }[form].format(p=parent, n=next(numbers))
            suffix = tail if draw(st.booleans()) else ""
            task(f"{' ' * indent}- [{box}] {head}{title}{suffix}")
            if depth < 2 and draw(st.integers(0, 3)) == 0:
                # a nested item's parent is this one; only explicit ids can be known here,
                # so the nested items use the forms that do not name their parent
                nested_forms(indent + 2)

    def nested_forms(indent: int) -> None:
        numbers = iter(draw(st.permutations(range(1, 6))))
        for _ in range(draw(st.integers(1, 3))):
            head = draw(st.sampled_from(["", f"{next(numbers)}. "]))
            task(f"{' ' * indent}- [{draw(BOXES)}] {head}{draw(TITLES)}")

    for _ in range(draw(st.integers(0, 2))):  # loose checkboxes before any phase
        task(f"- [{draw(BOXES)}] {draw(TITLES)}")
    for phase in range(1, draw(st.integers(1, 4)) + 1):
        lines.append("")
        style = draw(st.sampled_from(["## Phase {n} \u2014 {t}", "Phase {n}: {t}",
                                      "### Phase {n} - {t}"]))
        task(style.format(n=phase, t=draw(TITLES)))
        tail = ""
        if phase > 1:
            previous = str(phase - 1)
            form = draw(st.sampled_from(["none", "line", "item"]))
            if form == "line":
                lines.append(draw(st.sampled_from(["Depends on: {p}", "_Requires: {p}_",
                                                   "Blocked by {p}"])).format(p=previous))
                phase_dependencies[str(phase)] = (previous,)
            elif form == "item":  # items of this phase wait for the previous one
                tail = draw(st.sampled_from([" (depends on {p})", " \u2014 blocked by {p}",
                                             " _(requires {p})_"])).format(p=previous)
        lines.append("")
        items(str(phase), 0, 0, tail)
        section_numbers = iter(draw(st.permutations(range(10, 14))))
        for _ in range(draw(st.integers(0, 2))):  # sections close the phase
            section = f"{phase}.{next(section_numbers)}"
            lines.append("")
            task(draw(st.sampled_from(["### {s} {t}", "#### **{s}** {t}"])).format(
                s=section, t=draw(TITLES)))
            if draw(st.booleans()):
                lines.append("- **Status**: pending")
            items(section, 0, 1, "")
    return "\n".join(lines) + "\n", task_lines, phase_dependencies


def identities(tasks: TaskList) -> list[tuple[str, str | None, str]]:
    return [(task.id, task.parent, task.title) for task in tasks.tasks]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(usual_lists(), st.randoms(use_true_random=False))
def test_usual_forms_read_every_task_once_with_unique_ids_that_status_edits_keep(
    made, random
):
    text, task_lines, phase_dependencies = made
    tasks = TaskList.parse(text)

    ids = [task.id for task in tasks.tasks]
    assert len(ids) == len(set(ids))
    assert {task.line for task in tasks.tasks} == task_lines  # every task line, no other
    for task in tasks.tasks:
        if task.parent is not None:
            assert task.id.startswith(task.parent + ".")
            assert task.parent in tasks
    for phase, dependencies in phase_dependencies.items():
        assert tasks.get(phase).dependencies == dependencies
    assert tasks.render() == text

    before = identities(tasks)
    edited = tasks
    for leaf in random.sample(tasks.leaves(), min(3, len(tasks.leaves()))):
        edited = edited.with_status(leaf.id, random.choice(list(TaskStatus)))
        assert identities(TaskList.parse(edited.render())) == before
    assert edited.generated_ids() == tasks.generated_ids()

    written = tasks.with_ids_written()
    assert [(t.id, t.parent, t.title, t.line) for t in written.tasks] == [
        (t.id, t.parent, t.title, t.line) for t in tasks.tasks]
    assert written.generated_ids() == []
    assert written.with_ids_written() is written
    changed = [n + 1 for n, (old, new) in
               enumerate(zip(text.split("\n"), written.render().split("\n"), strict=True))
               if old != new]
    assert changed == [tasks.get(task_id).line for task_id in tasks.generated_ids()]
