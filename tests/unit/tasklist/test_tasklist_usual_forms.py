"""Task lists written the usual way: unnumbered checkboxes under phase headings, items
numbered within their phase, dependencies in prose and bold ids (issue 17, item 5).

Each of these was misread silently before: a list of unnumbered checkboxes read as
``0 tasks``, numbered items clashed with their phases, prose dependencies were dropped.
"""

from __future__ import annotations

import pytest

from runner.tasklist import TaskList, TaskListError, TaskStatus, TaskType, select_next

UNNUMBERED = """# Roadmap

## Phase 1 — Setup

- [ ] Create the repository
- [x] Add CI

## Phase 2 — API

- [ ] Add the health endpoint
- [ ] Document it
"""


def shape(tasks: TaskList) -> list[tuple[str, str, str | None, str]]:
    return [(t.id, str(t.type), t.parent, t.title) for t in tasks.tasks]


def test_given_unnumbered_checkboxes_under_phase_headings_then_each_is_a_task():
    tasks = TaskList.parse(UNNUMBERED)

    assert shape(tasks) == [
        ("1", "phase", None, "Setup"),
        ("1.1", "atomic", "1", "Create the repository"),
        ("1.2", "atomic", "1", "Add CI"),
        ("2", "phase", None, "API"),
        ("2.1", "atomic", "2", "Add the health endpoint"),
        ("2.2", "atomic", "2", "Document it"),
    ]
    assert tasks.get("1.2").status is TaskStatus.DONE
    assert tasks.progress() == (1, 4)
    assert select_next(tasks).id == "1.1"
    assert tasks.generated_ids() == ["1.1", "1.2", "2.1", "2.2"]


def test_given_generated_ids_when_items_are_marked_done_then_only_the_box_changes_and_ids_stay():
    tasks = TaskList.parse(UNNUMBERED)
    order = []
    while (task := select_next(tasks)) is not None:
        order.append(task.id)
        tasks = tasks.with_status(task.id, TaskStatus.DONE)

    assert order == ["1.1", "2.1", "2.2"]
    assert tasks.render() == UNNUMBERED.replace("- [ ] ", "- [x] ")  # no id written in
    again = TaskList.parse(tasks.render())
    assert shape(again) == shape(TaskList.parse(UNNUMBERED))
    assert again.progress() == (4, 4)


def test_given_unnumbered_items_beside_explicit_ids_then_generated_ids_never_collide():
    text = ("Phase 1: Base\n- [ ] First, unnumbered\n- [ ] 1.1 Explicit\n"
            "- [ ] Third, unnumbered\n- [ ] 1.4 Explicit too\n- [ ] Fifth (depends on 1.1)\n")
    tasks = TaskList.parse(text)

    assert [(t.id, t.title) for t in tasks.tasks] == [
        ("1", "Base"),
        ("1.2", "First, unnumbered"),  # its position (1.1) is written on another item
        ("1.1", "Explicit"),
        ("1.3", "Third, unnumbered"),
        ("1.4", "Explicit too"),
        ("1.5", "Fifth"),
    ]
    assert tasks.get("1.5").dependencies == ("1.1",)


def test_given_unnumbered_checkboxes_without_any_heading_then_they_are_numbered_in_order():
    tasks = TaskList.parse("# Todo\n\n- [ ] Write the parser\n- [ ] Test it\n")

    assert [(t.id, t.title) for t in tasks.tasks] == [("1", "Write the parser"), ("2", "Test it")]


def test_given_nested_unnumbered_checkboxes_then_they_are_steps_of_the_item_above():
    text = ("## Phase 1 — Setup\n- [ ] Create the repository\n  - [x] git init\n"
            "  - [ ] Add a README\n- [ ] 1.2 Add CI\n  - [ ] Lint\n")
    tasks = TaskList.parse(text)

    assert [(t.id, t.type, t.parent) for t in tasks.tasks] == [
        ("1", TaskType.PHASE, None),
        ("1.1", TaskType.GROUP, "1"),
        ("1.1.1", TaskType.ATOMIC, "1.1"),
        ("1.1.2", TaskType.ATOMIC, "1.1"),
        ("1.2", TaskType.GROUP, "1"),
        ("1.2.1", TaskType.ATOMIC, "1.2"),
    ]
    assert select_next(tasks).id == "1.1.2"


def test_given_checkboxes_inside_a_criteria_field_then_they_stay_criteria():
    text = ("#### 1.1 Add the API\n- **Status**: pending\n- **Criteria**:\n"
            "  - [ ] build: passes\n  - [ ] Docs are clear\n#### 1.2 Next\n")
    tasks = TaskList.parse(text)

    assert [t.id for t in tasks.tasks] == ["1.1", "1.2"]
    assert tasks.get("1.1").criteria == {"build": "passes", "criterion 2": "Docs are clear"}


def test_given_an_empty_checkbox_then_it_is_not_a_task():
    tasks = TaskList.parse("## Phase 1 — Setup\n- [ ] Real\n- [ ]\n")

    assert [t.id for t in tasks.tasks] == ["1", "1.1"]


NUMBERED = """## Phase 1 — Setup

- [ ] 1. Create the repository
- [ ] 2. Add CI (depends on 1)

## Phase 2 — API

- [ ] 1. Add the endpoint (depends on 1.2)
- [ ] 2. Document it
  Depends on: 1
"""


def test_given_items_numbered_within_numbered_phases_then_their_ids_are_qualified():
    tasks = TaskList.parse(NUMBERED)

    assert [(t.id, t.parent, t.title, t.dependencies) for t in tasks.tasks] == [
        ("1", None, "Setup", ()),
        ("1.1", "1", "Create the repository", ()),
        ("1.2", "1", "Add CI", ("1.1",)),  # a bare number names a sibling
        ("2", None, "API", ()),
        ("2.1", "2", "Add the endpoint", ("1.2",)),  # a dotted id is taken as written
        ("2.2", "2", "Document it", ("2.1",)),
    ]
    assert tasks.generated_ids() == []  # qualified ids follow from the text: nothing to write


def test_given_numbered_items_when_marked_done_then_ids_stay_and_the_text_keeps_its_numbers():
    tasks = TaskList.parse(NUMBERED).with_status("1.1", TaskStatus.DONE)

    assert tasks.render() == NUMBERED.replace("- [ ] 1. Create", "- [x] 1. Create")
    assert [t.id for t in TaskList.parse(tasks.render()).tasks] == [
        "1", "1.1", "1.2", "2", "2.1", "2.2"]


def test_given_a_bare_number_that_is_no_earlier_sibling_then_it_names_the_task_with_that_id():
    text = ("Phase 1: A\n- [ ] 1.1 One\nPhase 2: B\n- [ ] 2.1 One\n"
            "Phase 3: C\n- [ ] 1. First (depends on 2)\n- [ ] 2. Second (depends on 2)\n"
            "- [ ] 3. Third (depends on 1, 2)\n")
    tasks = TaskList.parse(text)

    assert [(t.id, t.dependencies) for t in tasks.tasks[-3:]] == [
        ("3.1", ("2",)),  # 3.2 comes later: phase 2 is meant
        ("3.2", ("2",)),  # not itself
        ("3.3", ("3.1", "3.2")),
    ]


def test_given_a_numbered_item_whose_qualified_id_is_written_elsewhere_then_it_is_a_duplicate():
    with pytest.raises(TaskListError) as caught:
        TaskList.parse("Phase 1: Base\n- [ ] 1.2 Explicit\n- [ ] 2. Numbered\n")

    assert [str(p) for p in caught.value.problems] == [
        "line 3: duplicate task id 1.2 (written as 2 under 1; first defined on line 2)"]


def test_given_numbered_items_nested_in_numbered_items_then_ids_nest():
    text = ("Phase 3: Ship\n- [ ] 1. Package\n  - [ ] 1. Build the wheel\n"
            "  - [ ] 2. Upload it (requires 1)\n- [ ] Announce\n  - [ ] 1. Write the post\n")
    tasks = TaskList.parse(text)

    assert [(t.id, t.parent, t.dependencies) for t in tasks.tasks] == [
        ("3", None, ()),
        ("3.1", "3", ()),
        ("3.1.1", "3.1", ()),
        ("3.1.2", "3.1", ("3.1.1",)),
        ("3.2", "3", ()),
        ("3.2.1", "3.2", ()),
    ]


@pytest.mark.parametrize(
    ("line", "title", "dependencies"),
    [
        ("- [ ] 1.3 Lint (depends on 1.1)", "Lint", ("1.1",)),
        ("- [ ] 1.3 Lint (Depends On 1.1, 1.2)", "Lint", ("1.1", "1.2")),
        ("- [ ] 1.3 Lint \u2014 blocked by 1.2", "Lint", ("1.2",)),
        ("- [ ] 1.3 Lint - Blocked by: tasks 1.1 and 1.2", "Lint", ("1.1", "1.2")),
        ("- [ ] 1.3 Lint _(requires 1.2)_", "Lint", ("1.2",)),
        ("- [ ] 1.3 Lint *(requires: 1.1 & 1.2)*", "Lint", ("1.1", "1.2")),
        ("- [ ] 1.3 Lint (REQUIRES `1.2`)", "Lint", ("1.2",)),
        ("- [ ] 1.3 Lint _(Dependencies: [1.2])_", "Lint", ("1.2",)),
        ("- [ ] 1.3 Lint (depends on 1.2) before release", "Lint (depends on 1.2) before release",
         ("1.2",)),
        ("- [ ] 1.3 Lint\n  Depends on: 1.2", "Lint", ("1.2",)),
        ("- [ ] 1.3 Lint\n  depends on 1.1, 1.2", "Lint", ("1.1", "1.2")),
        ("- [ ] 1.3 Lint\n  _Requires: 1.2_", "Lint", ("1.2",)),
        ("- [ ] 1.3 Lint\n  - Blocked by: 1.2", "Lint", ("1.2",)),
        ("- [ ] 1.3 Lint\n  - **Depends on**: [1.2]", "Lint", ("1.2",)),
        ("- [ ] 1.3 Lint\nDepends on: 1.2", "Lint", ("1.2",)),  # lazy continuation
        ("- [ ] 1.3 Lint\n  Depends on: none", "Lint", ()),
    ],
)
def test_given_dependencies_in_prose_then_they_are_read(line, title, dependencies):
    text = f"## Phase 1 \u2014 Setup\n- [ ] 1.1 One\n- [x] 1.2 Two\n{line}\n"
    task = TaskList.parse(text).get("1.3")

    assert (task.title, task.dependencies, task.description) == (title, dependencies, "")


@pytest.mark.parametrize(
    "line",
    [
        "- [ ] 1.3 Cache (requires Redis)",
        "- [ ] 1.3 Retry \u2014 blocked by flaky network",
        "- [ ] 1.3 Pin deps\n  Depends on: the API being ready",
    ],
)
def test_given_prose_that_names_no_task_then_it_stays_text(line):
    text = f"Phase 1: Base\n- [ ] 1.1 One\n{line}\n"
    task = TaskList.parse(text).get("1.3")

    assert task.dependencies == ()
    assert line.split("\n")[0].endswith(task.title)


def test_given_a_prose_dependency_on_an_unknown_task_then_it_is_reported_with_its_line():
    with pytest.raises(TaskListError) as caught:
        TaskList.parse("Phase 1: Base\n- [ ] 1.1 One\n- [ ] 1.2 Two \u2014 blocked by 4\n")

    assert [str(p) for p in caught.value.problems] == [
        "line 3: task 1.2 depends on unknown task 4"]


@pytest.mark.parametrize("line", ["\nDepends on: 1.1", "- Depends on: 1.1"])
def test_given_a_dependency_line_that_belongs_to_no_task_then_it_is_reported(line):
    text = f"Phase 1: Base\n- [ ] 1.1 One\n- [ ] 1.2 Two\n{line}\n"
    with pytest.raises(TaskListError) as caught:
        TaskList.parse(text)

    [problem] = caught.value.problems
    assert problem.line == text.count("\n")
    assert problem.message == (
        "'Depends on: 1.1' belongs to no task: indent it under the task it belongs to")


def test_given_a_dependency_line_under_a_phase_then_the_phase_depends():
    text = ("## Phase 1 \u2014 Setup\n- [ ] Create\n\n## Phase 2 \u2014 API\n\n"
            "Depends on: 1\n\n- [ ] Endpoint\n")
    tasks = TaskList.parse(text)

    assert tasks.get("2").dependencies == ("1",)
    assert select_next(tasks.with_status("1.1", "done")).id == "2.1"


@pytest.mark.parametrize(
    "line",
    [
        "- [ ] **1.3** Lint",
        "- [ ] **1.3.** Lint",
        "- [ ] **1.3**: Lint",
        "- [ ] **Task 1.3:** Lint",
        "- [ ] __1.3__ Lint",
        "- [ ] **1.3 Lint**",
        "- **1.3** Lint",
    ],
)
def test_given_a_bold_id_then_it_is_the_task_id(line):
    tasks = TaskList.parse(f"Phase 1: Base\n- [ ] 1.1 One\n{line}\n")

    assert [(t.id, t.title) for t in tasks.tasks] == [("1", "Base"), ("1.1", "One"),
                                                      ("1.3", "Lint")]
    done = tasks.with_status("1.3", TaskStatus.DONE)
    assert done.get("1.3").status is TaskStatus.DONE
    renamed = done.with_fields("1.3", title="Lint everything")
    assert renamed.render().split("\n")[2].count("Lint everything") == 1
    assert renamed.get("1.3").title == "Lint everything"


def test_given_a_bold_id_on_a_section_heading_then_it_is_the_task_id():
    tasks = TaskList.parse("### **2.1** Write the handler\n- **Status**: pending\n")

    assert [(t.id, t.title) for t in tasks.tasks] == [("2.1", "Write the handler")]


def test_given_generated_ids_when_written_back_then_the_ids_are_the_same_and_explicit():
    text = UNNUMBERED + "- [ ] 2.4 Explicit\n- [ ] Last\n  - [ ] 1. A step\n"
    tasks = TaskList.parse(text)
    before = shape(tasks)

    written = tasks.with_ids_written()

    assert shape(written) == before
    assert written.generated_ids() == []
    assert written.render() == (
        UNNUMBERED.replace("- [ ] Create", "- [ ] 1.1 Create")
        .replace("- [x] Add CI", "- [x] 1.2 Add CI")
        .replace("- [ ] Add the", "- [ ] 2.1 Add the")
        .replace("- [ ] Document", "- [ ] 2.2 Document")
        + "- [ ] 2.4 Explicit\n- [ ] 2.5 Last\n  - [ ] 1. A step\n"  # 4th item; 2.4 is taken
    )
    assert written.with_ids_written() is written


def test_given_a_list_without_generated_ids_when_written_back_then_nothing_changes(full_text):
    tasks = TaskList.parse(full_text)

    assert tasks.with_ids_written() is tasks
    assert tasks.generated_ids() == []


def test_given_items_numbered_with_a_parenthesis_then_they_are_numbered_items():
    tasks = TaskList.parse("## Phase 1 \u2014 Setup\n- [ ] 1) Create\n- [ ] 2) Add CI\n")

    assert [(t.id, t.title) for t in tasks.tasks] == [
        ("1", "Setup"), ("1.1", "Create"), ("1.2", "Add CI")]


def test_given_unnumbered_items_in_a_completed_block_then_they_are_done_and_left_unwritten():
    text = ("<!--\nPhase 1: Base\n- [ ] Old work\n-->\nPHASE 1 COMPLETED\n\n"
            "Phase 2: Next\n- [ ] New work\n")
    tasks = TaskList.parse(text)
    assert [(t.id, t.status) for t in tasks.leaves()] == [
        ("1.1", TaskStatus.DONE), ("2.1", TaskStatus.PENDING)]

    written = tasks.with_ids_written()

    assert written.render() == text.replace("- [ ] New", "- [ ] 2.1 New")
    assert written.generated_ids() == ["1.1"]
    assert written.with_ids_written() is written


HOSTILE_SIZE = 256 * 1024  # a quarter of the largest list the service reads


@pytest.mark.timeout(120)  # a guard only: before, the first of these ran for hours
@pytest.mark.parametrize(
    ("prefix", "unit", "suffix"),
    [
        ("- [ ] 1.1 deps", " ", "x"),  # blanks after a keyword, searched from each blank
        ("- [ ] 1.1 deps", " ", "(x"),
        ("- [ ] 1.1 x \u2014 deps ", "1, ", "x"),  # a long id list that fails at its end
        ("- [ ] 1.1 x \u2014 deps 1", ", and 1", " x"),
        ("- [ ] 1.1 x \u2014 deps 1", " ", "x"),  # blanks that two patterns could share
        ("- [ ] 1.1 x (deps 1", " ", "x"),
        ("- [ ] 1.1 x\n  Depends on: ", "1, ", "x"),
        ("- [ ] 1.1 x\n  Depends on:", " ", "x"),
        ("- [ ] 1.1 x deps", " \u2014", ""),
        ("- [ ] **1.1 x", "*", ""),
    ],
)
def test_given_hostile_lines_of_prose_dependencies_then_they_parse_without_hanging(
    prefix, unit, suffix
):
    text = prefix + unit * (HOSTILE_SIZE // len(unit)) + suffix + "\n"

    task = TaskList.parse(text).get("1.1")

    assert task.dependencies == ()  # none of them is a complete dependency statement


# -- layouts whose cost grew with the square of their size: at these sizes the old parser
# ran for tens of seconds to minutes (for every comment, dependency line or item, it walked
# again what the ones before had walked); each is read here in a fraction of a second. ---


@pytest.mark.timeout(120)  # a guard only
@pytest.mark.parametrize("completed", [False, True])
def test_given_many_comments_on_a_line_then_blank_lines_then_it_is_read_once(completed):
    count = HOSTILE_SIZE // 14
    marker = "PHASE 1 COMPLETED\n" if completed else ""
    text = ("<!-- - [x] 1.1 Old -->" + "<!---->" * count + "\n" * (7 * count) + marker
            + "- [ ] 2.1 New\n")

    tasks = TaskList.parse(text)

    expected = [("2.1", TaskStatus.PENDING)]
    if completed:  # the comments are kept, the marker line is skipped
        expected.insert(0, ("1.1", TaskStatus.DONE))
    assert [(task.id, task.status) for task in tasks.tasks] == expected
    assert tasks.render() == text


@pytest.mark.timeout(120)
def test_given_a_task_with_thousands_of_dependency_lines_then_each_is_read_once():
    count = HOSTILE_SIZE // 12
    text = "- [ ] 1 A\n" + "".join(f"  deps {n}\n" for n in range(2, count + 2)) + "  deps 2\n"

    with pytest.raises(TaskListError) as caught:
        TaskList.parse(text)

    assert [(p.line, p.message) for p in caught.value.problems] == [
        (n, f"task 1 depends on unknown task {n}") for n in range(2, count + 2)]


@pytest.mark.timeout(120)
def test_given_a_long_dependency_list_in_quotes_then_each_id_is_read_once():
    count = HOSTILE_SIZE // 8
    names = ["1", *map(str, range(3, count + 3)), "1"]
    text = "- [ ] 1 A\n- [ ] 2 B\n  - **Dependencies**: [" + ", ".join(
        f'"{name}"' for name in names) + "]\n"

    with pytest.raises(TaskListError) as caught:
        TaskList.parse(text)

    assert [(p.line, p.message) for p in caught.value.problems] == [
        (3, f"task 2 depends on unknown task {n}") for n in range(3, count + 3)]


@pytest.mark.timeout(120)
def test_given_a_title_full_of_prose_dependencies_then_it_is_read_once():
    count = 4 * HOSTILE_SIZE // 15  # the largest list the service reads
    title = "B" + " (depends on 1)" * count + " and more"

    task = TaskList.parse(f"- [ ] 1 A\n- [ ] 2 {title}\n").get("2")

    assert (task.title, task.dependencies) == (title, ("1",))


@pytest.mark.timeout(120)
def test_given_unnumbered_items_whose_numbers_are_all_written_later_then_each_is_tried_once():
    count = HOSTILE_SIZE // 19
    text = "- [ ] x\n" * count + "".join(f"- [ ] {n}\n" for n in range(1, count + 1))

    tasks = TaskList.parse(text)

    generated = [str(n) for n in range(count + 1, 2 * count + 1)]
    assert [task.id for task in tasks.tasks] == generated + [
        str(n) for n in range(1, count + 1)]
    assert tasks.generated_ids() == generated


@pytest.mark.timeout(120)
def test_given_many_parents_with_the_same_id_then_free_numbers_are_found_once():
    count = HOSTILE_SIZE // 54
    text = ("- [ ] x\n" + "  - [ ] 1. a\n    - [ ] y\n" * count
            + "".join(f"- [ ] 1.1.{n} t\n" for n in range(1, 2 * count)))

    with pytest.raises(TaskListError) as caught:
        TaskList.parse(text)

    assert [(p.line, p.message) for p in caught.value.problems] == [
        (2 * n + 2, "duplicate task id 1.1 (written as 1 under 1; first defined on line 2)")
        for n in range(1, count)]


@pytest.mark.timeout(120)
def test_given_a_heading_id_with_thousands_of_levels_then_it_is_reported_once():
    deep = ".".join(["1"] * (HOSTILE_SIZE // 2))
    text = f"## 1 Top\n## {deep} Deep\n- [ ] 1. A\n- **Status**: odd\n"

    with pytest.raises(TaskListError) as caught:
        TaskList.parse(text)

    assert [(p.line, p.message) for p in caught.value.problems] == [
        (2, f"task id {deep[:40]}... is too long ({len(deep)} characters; at most 100)")]


@pytest.mark.timeout(120)
def test_given_thousands_of_unnamed_criteria_after_named_ones_then_each_is_named_once():
    count = HOSTILE_SIZE // 38
    text = ("- [ ] 1 A\n  - **Criteria**:\n"
            + "".join(f"    - criterion {n}: named\n" for n in range(count + 1, 2 * count + 1))
            + "    - plain\n" * count)

    criteria = TaskList.parse(text).get("1").criteria

    assert list(criteria.items()) == [
        (f"criterion {n}", "named") for n in range(count + 1, 2 * count + 1)] + [
        (f"criterion {n}", "plain") for n in range(2 * count + 1, 3 * count + 1)]
