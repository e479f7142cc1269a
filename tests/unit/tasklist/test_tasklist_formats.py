"""The three formats of CONTRACTS.md, alone and mixed, and how each is written back."""

from __future__ import annotations

import pytest

from runner.tasklist import TaskList, TaskStatus, TaskType, select_next

GITHUB = """# Sprint

- [x] 1 Setup
  - [x] 1.1 Create repo
  - [ ] 1.2 Add CI (Dependencies: [1.1])
    - test.coverage: >= 80%
    - remember the cache
- [ ] 2 API (Dependencies: [1])
  - [!] 2.1 Endpoint
  - [X] 2.2 Docs
    Write the docs for the endpoint.
    Files: docs/api.md, `src/api.py`
- [~] 3 Release
"""

SECTIONS = """# Tasks

### 1.1 Setup group

#### 1.1.1 Create the project
- **Status**: completed
- **Dependencies**: []
- **Files**: pyproject.toml, src/app/__init__.py

Create the project skeleton.
It has two lines.

#### 1.1.2 Add the API
- **Status**: In Progress
- **Dependencies**: ["1.1.1"]
- **Criteria**: test.coverage: \u226580%, type.strict: 0 errors

###### 1.1.3 Write docs
- **Status**: pending
- **Dependencies**: ["1.1.2"]
- **Criteria**:
  - doc.updated: docs/api.md
  - Docs are clear
"""

MIXED = """Phase 1: Base (Dependencies: [])

- 1.1 Scaffold (Dependencies: [])
  - [x] 1.1.1 Create layout
  - 1.1.2 Add settings
    \u2022 files: src/settings.py
    \u2022 type.strict: 0 errors
    \u2022 keep defaults safe
- [ ] 1.2 Lint setup (Dependencies: [1.1])

## 2 Service

#### 2.1 Write the handler
- **Status**: pending
- **Dependencies**: ["1.2", "1"]

#### 2.2 Document the handler
- **Status**: blocked
- **Dependencies**: [2.1]
"""


def test_given_a_github_task_list_then_nesting_and_checkboxes_are_read():
    tasks = TaskList.parse(GITHUB)

    assert [(t.id, t.type, t.parent, t.status) for t in tasks.tasks] == [
        ("1", TaskType.GROUP, None, TaskStatus.IN_PROGRESS),
        ("1.1", TaskType.ATOMIC, "1", TaskStatus.DONE),
        ("1.2", TaskType.ATOMIC, "1", TaskStatus.PENDING),
        ("2", TaskType.GROUP, None, TaskStatus.IN_PROGRESS),
        ("2.1", TaskType.ATOMIC, "2", TaskStatus.BLOCKED),
        ("2.2", TaskType.ATOMIC, "2", TaskStatus.DONE),
        ("3", TaskType.ATOMIC, None, TaskStatus.IN_PROGRESS),
    ]
    assert tasks.get("1.2").criteria == {"test.coverage": ">= 80%"}
    assert tasks.get("1.2").notes == ("remember the cache",)
    docs = tasks.get("2.2")
    assert (docs.description, docs.files) == (
        "Write the docs for the endpoint.",
        ("docs/api.md", "src/api.py"),
    )
    assert select_next(tasks).id == "1.2"


def test_given_a_github_list_when_a_box_is_ticked_then_only_its_mark_changes():
    updated = TaskList.parse(GITHUB).with_status("1.2", TaskStatus.DONE)

    assert updated.render() == GITHUB.replace("- [ ] 1.2 Add CI", "- [x] 1.2 Add CI")
    assert select_next(updated).id == "3"  # 2.1 is blocked, so 2 waits


def test_given_sections_then_fields_description_and_hierarchy_by_id_are_read():
    tasks = TaskList.parse(SECTIONS)

    assert [(t.id, t.type, t.parent, t.status, t.line) for t in tasks.tasks] == [
        ("1.1", TaskType.GROUP, None, TaskStatus.IN_PROGRESS, 3),
        ("1.1.1", TaskType.ATOMIC, "1.1", TaskStatus.DONE, 5),
        ("1.1.2", TaskType.ATOMIC, "1.1", TaskStatus.IN_PROGRESS, 13),
        ("1.1.3", TaskType.ATOMIC, "1.1", TaskStatus.PENDING, 18),
    ]
    first = tasks.get("1.1.1")
    assert first.files == ("pyproject.toml", "src/app/__init__.py")
    assert first.description == "Create the project skeleton.\nIt has two lines."
    assert tasks.get("1.1.2").criteria == {"test.coverage": "\u226580%", "type.strict": "0 errors"}
    assert tasks.get("1.1.3").dependencies == ("1.1.2",)
    assert tasks.get("1.1.3").criteria == {
        "doc.updated": "docs/api.md",
        "criterion 2": "Docs are clear",
    }
    assert select_next(tasks).id == "1.1.2"


@pytest.mark.parametrize(
    ("task_id", "status", "before", "after"),
    [
        ("1.1.2", TaskStatus.DONE, "- **Status**: In Progress", "- **Status**: Completed"),
        ("1.1.3", TaskStatus.BLOCKED, "- **Status**: pending", "- **Status**: blocked"),
        ("1.1.1", TaskStatus.PENDING, "- **Status**: completed", "- **Status**: pending"),
    ],
)
def test_given_sections_when_a_status_is_set_then_only_the_field_value_changes(
    task_id, status, before, after
):
    tasks = TaskList.parse(SECTIONS)
    line = next(
        n
        for n, text in enumerate(SECTIONS.split("\n"))
        if n > tasks.get(task_id).line - 1 and text.startswith("- **Status**")
    )

    updated = tasks.with_status(task_id, status)

    expected = SECTIONS.split("\n")
    assert expected[line] == before
    expected[line] = after
    assert updated.render() == "\n".join(expected)
    assert updated.get(task_id).status is status


def test_given_a_section_without_status_when_marked_done_then_a_status_line_is_added():
    text = "## 4.1 Lone task\nSome words.\n"
    tasks = TaskList.parse(text)
    assert tasks.get("4.1").status is TaskStatus.PENDING

    updated = tasks.with_status("4.1", TaskStatus.DONE)

    assert updated.render() == "## 4.1 Lone task\n- **Status**: completed\nSome words.\n"
    assert updated.get("4.1").status is TaskStatus.DONE
    assert updated.get("4.1").description == "Some words."


def test_given_a_mixed_file_then_phases_lists_and_sections_form_one_hierarchy():
    tasks = TaskList.parse(MIXED)

    assert [(t.id, t.type, t.parent) for t in tasks.tasks] == [
        ("1", TaskType.PHASE, None),
        ("1.1", TaskType.GROUP, "1"),
        ("1.1.1", TaskType.ATOMIC, "1.1"),
        ("1.1.2", TaskType.ATOMIC, "1.1"),
        ("1.2", TaskType.ATOMIC, "1"),
        ("2", TaskType.GROUP, None),
        ("2.1", TaskType.ATOMIC, "2"),
        ("2.2", TaskType.ATOMIC, "2"),
    ]
    settings = tasks.get("1.1.2")
    assert settings.files == ("src/settings.py",)
    assert settings.criteria == {"type.strict": "0 errors"}
    assert settings.notes == ("keep defaults safe",)
    assert tasks.get("2.1").dependencies == ("1.2", "1")
    assert select_next(tasks).id == "1.1.2"


def test_given_a_mixed_file_when_the_work_advances_then_selection_follows_dependencies():
    tasks = TaskList.parse(MIXED)
    order = []
    while (task := select_next(tasks)) is not None:
        order.append(task.id)
        tasks = tasks.with_status(task.id, TaskStatus.DONE)

    assert order == ["1.1.2", "1.2", "2.1"]  # 2.2 stays blocked
    assert tasks.render().count("[x]") == 3  # 1.1.1 was already ticked; 1.1.2 and 1.2 added
    assert tasks.render().count("completed") == 1  # 2.1
    assert TaskList.parse(tasks.render()).get("2.1").status is TaskStatus.DONE


def test_given_comments_that_are_not_completed_blocks_then_their_tasks_do_not_exist():
    text = (
        "Phase 1: A (Dependencies: [])\n- 1.1 Kept\n"
        "<!-- - 1.2 Hidden\n  - 1.2.1 Hidden step -->\n"
        "- 1.3 Kept too <!-- (Dependencies: [9]) -->\n"
    )
    tasks = TaskList.parse(text)

    assert [t.id for t in tasks.tasks] == ["1", "1.1", "1.3"]
    assert tasks.get("1.3").title == "Kept too"
    assert tasks.render() == text


def test_given_a_code_fence_then_task_lines_inside_it_are_ignored():
    text = "- [ ] 1 Real\n```markdown\n- [ ] 2 Example only\n```\n- [ ] 3 Real too\n"

    assert [t.id for t in TaskList.parse(text).tasks] == ["1", "3"]


def test_given_crlf_bom_and_no_final_newline_then_rendering_keeps_every_byte():
    text = "\ufeff# List\r\n\r\n- [ ] 1.1 First  \r\n- [ ] 1.2 Second (Dependencies: [1.1])"
    tasks = TaskList.parse(text)

    assert tasks.render() == text
    assert tasks.get("1.1").title == "First"
    updated = tasks.with_status("1.2", TaskStatus.DONE)
    assert updated.render() == text.replace("- [ ] 1.2", "- [x] 1.2")


def test_given_a_crlf_section_when_a_status_line_is_added_then_it_ends_with_crlf():
    updated = TaskList.parse("### 7.1 Thing\r\nText\r\n").with_status("7.1", "blocked")

    assert updated.render() == "### 7.1 Thing\r\n- **Status**: blocked\r\nText\r\n"


def test_given_a_title_with_dependencies_when_set_then_it_is_refused():
    tasks = TaskList.parse(GITHUB)

    with pytest.raises(ValueError, match="dependency list"):
        tasks.with_fields("1.2", title="Sneaky (Dependencies: [2.2])")
    with pytest.raises(ValueError, match="one non-empty line"):
        tasks.with_fields("1.2", title="two\nlines")


def test_given_a_section_when_its_description_is_replaced_then_the_old_lines_go():
    tasks = TaskList.parse(SECTIONS)

    updated = tasks.with_fields("1.1.1", description="Only this line.")

    assert updated.get("1.1.1").description == "Only this line."
    assert "It has two lines." not in updated.render()
    assert updated.render().count("\n") == SECTIONS.count("\n") - 1
    assert updated.with_fields("1.1.1", description="Only this line.") is updated


def test_given_a_list_without_tasks_then_it_is_valid_and_selects_nothing():
    tasks = TaskList.parse("# Nothing yet\n\nJust prose.\n")

    assert (tasks.tasks, tasks.progress(), select_next(tasks)) == ([], (0, 0), None)


def test_given_phases_written_as_list_items_then_they_still_hold_their_tasks():
    text = ("- [x] Phase 1: Base (Dependencies: [])\n  - [x] 1.1 Done\n"
            "- [ ] Phase 2: Next (Dependencies: [1])\n  - [ ] 2.1 Open\n")
    tasks = TaskList.parse(text)

    assert [(t.id, t.type, t.parent) for t in tasks.tasks] == [
        ("1", TaskType.PHASE, None), ("1.1", TaskType.ATOMIC, "1"),
        ("2", TaskType.PHASE, None), ("2.1", TaskType.ATOMIC, "2"),
    ]
    assert select_next(tasks).id == "2.1"


def test_given_tabs_and_other_list_markers_then_nesting_follows_indentation():
    text = "* [ ] 1 Group\n\t+ [ ] 1.1 Step one\n\t+ [x] 1.2 Step two\n* [ ] 2 Next\n"
    tasks = TaskList.parse(text)

    assert [(t.id, t.parent, t.status) for t in tasks.tasks] == [
        ("1", None, TaskStatus.IN_PROGRESS), ("1.1", "1", TaskStatus.PENDING),
        ("1.2", "1", TaskStatus.DONE), ("2", None, TaskStatus.PENDING),
    ]
    assert tasks.with_status("1.1", "done").render() == text.replace("+ [ ] 1.1", "+ [x] 1.1")
