"""The field task lists of ../shared/fixtures: parsed, selected, written back byte for byte."""

from __future__ import annotations

import dataclasses
import difflib

import pytest

from runner.tasklist import Task, TaskList, TaskStatus, TaskType, select_next
from runner.tasklist.syntax import MAX_ID_LENGTH, MAX_ID_LEVELS


def changed_lines(before: str, after: str) -> list[tuple[str, str]]:
    """Pairs (old line, new line) of a diff where lines were replaced one for one."""
    old, new = before.split("\n"), after.split("\n")
    assert len(old) == len(new)
    return [(a, b) for a, b in zip(old, new, strict=True) if a != b]


def test_given_the_full_list_when_parsed_then_its_tasks_and_hierarchy_are_read(full_text):
    tasks = TaskList.parse(full_text)

    assert [task.id for task in tasks.tasks[:4]] == ["1", "1.1", "1.1.1", "1.1.2"]
    phase = tasks.get("1")
    assert (phase.type, phase.title, phase.parent, phase.line) == (
        TaskType.PHASE,
        "Foundations & Ops Validation",
        None,
        7,
    )
    group = tasks.get("1.2")
    assert (group.type, group.parent, group.dependencies) == (TaskType.GROUP, "1", ("1.1",))
    step = tasks.get("1.1.1")
    assert (step.type, step.parent, step.title, step.status, step.line) == (
        TaskType.ATOMIC,
        "1.1",
        'Build images: run "docker compose build"',
        TaskStatus.PENDING,
        10,
    )
    assert tasks.get("2").dependencies == ("1",)
    assert len([t for t in tasks.tasks if t.type is TaskType.PHASE]) == 9
    assert tasks.progress() == (0, len(tasks.leaves()))


def test_given_the_full_list_then_criterion_bullets_belong_to_the_step_above(full_text):
    step = TaskList.parse(full_text).get("1.1.6")

    assert step.criteria == {
        "criterion 1": "Docker services start within \u226410s (p95) [source: PRD]",
        "criterion 2": "All required services (api, worker, redis, db) are running and "
        "healthy [source: PRD]",
        "criterion 3": "Container cleanup completes within \u226460s after docker compose "
        "down [source: PRD]",
        "criterion 4": "Service availability meets 99.9% uptime target during operation "
        "[source: PRD]",
    }
    assert list(step.criteria) == ["criterion 1", "criterion 2", "criterion 3", "criterion 4"]
    assert step.notes == ()


def test_given_dependencies_without_spaces_or_naming_a_phase_then_all_are_read(in_progress_text):
    tasks = TaskList.parse(in_progress_text)

    assert tasks.get("8.1").dependencies == ("3.3", "5.2")
    assert tasks.get("9.1").dependencies == ("1.1", "1.2", "7.8")
    assert tasks.get("4.4").dependencies == ("4.2", "4.3")
    assert tasks.get("9").dependencies == ("8",)


@pytest.mark.parametrize("fixture", ["full_text", "in_progress_text"])
def test_given_a_fixture_when_rendered_unchanged_then_the_bytes_are_identical(fixture, request):
    text = request.getfixturevalue(fixture)

    assert TaskList.parse(text).render() == text


def test_given_the_full_list_then_the_next_task_is_1_1_1(full_text):
    assert select_next(TaskList.parse(full_text)).id == "1.1.1"


def test_given_the_in_progress_list_then_the_next_task_is_2_1_1(in_progress_text):
    assert select_next(TaskList.parse(in_progress_text)).id == "2.1.1"


def test_given_a_completed_comment_block_then_its_tasks_exist_and_are_done(in_progress_text):
    tasks = TaskList.parse(in_progress_text)

    phase = tasks.get("1")
    assert (phase.line, phase.title) == (7, "Foundations & Ops Validation")
    assert tasks.get("1.3.3").title == (
        'Check aider: run "aider --version" inside API container (or document absence)'
    )
    assert all(tasks.is_done(task.id) for task in tasks.tasks if task.id.split(".")[0] == "1")
    assert tasks.get("1.1.6").status is TaskStatus.DONE
    assert not tasks.is_done("2")
    assert tasks.progress() == (13, len(tasks.leaves()))


@pytest.mark.parametrize("task_id", ["1.1.1", "2.3.5", "5.4.1", "9.2.4"])
def test_given_the_full_list_when_a_step_is_marked_done_then_only_its_checkbox_is_added(
    full_text, task_id
):
    tasks = TaskList.parse(full_text)

    updated = tasks.with_status(task_id, TaskStatus.DONE)

    ((before, after),) = changed_lines(full_text, updated.render())
    assert before.replace("- ", "- [x] ", 1) == after
    line = tasks.get(task_id).line
    assert full_text.split("\n")[line - 1] == before
    assert updated.get(task_id).status is TaskStatus.DONE
    assert [t.id for t in updated.tasks] == [t.id for t in tasks.tasks]


def test_given_a_marked_step_when_set_to_other_statuses_then_only_the_mark_changes(full_text):
    tasks = TaskList.parse(full_text).with_status("1.1.1", "done")
    text = tasks.render()

    for status, mark in (("in_progress", "~"), ("blocked", "!"), ("pending", " ")):
        updated = tasks.with_status("1.1.1", status)
        ((before, after),) = changed_lines(text, updated.render())
        assert before == '  - [x] 1.1.1 Build images: run "docker compose build"'
        assert after == f'  - [{mark}] 1.1.1 Build images: run "docker compose build"'
        assert updated.get("1.1.1").status == status


def test_given_the_in_progress_list_when_2_1_1_is_done_then_2_1_2_is_next(in_progress_text):
    tasks = TaskList.parse(in_progress_text).with_status("2.1.1", TaskStatus.DONE)

    assert select_next(tasks).id == "2.1.2"
    reparsed = TaskList.parse(tasks.render())
    assert reparsed.get("2.1.1").status is TaskStatus.DONE


def test_given_a_task_in_a_completed_block_when_reopened_then_it_is_refused(in_progress_text):
    tasks = TaskList.parse(in_progress_text)

    with pytest.raises(ValueError, match="completed comment block"):
        tasks.with_status("1.2.2", TaskStatus.PENDING)
    assert tasks.with_status("1.2.2", TaskStatus.DONE) is tasks


@pytest.mark.parametrize("task_id", ["1", "1.1", "2.1"])
def test_given_a_group_or_phase_when_its_status_is_set_then_it_is_refused(full_text, task_id):
    with pytest.raises(ValueError, match="only atomic tasks"):
        TaskList.parse(full_text).with_status(task_id, TaskStatus.DONE)


def test_given_an_unknown_id_then_get_and_with_status_raise_key_error(full_text):
    tasks = TaskList.parse(full_text)

    with pytest.raises(KeyError):
        tasks.get("42.1")
    with pytest.raises(KeyError):
        tasks.with_status("42.1", TaskStatus.DONE)


def test_given_a_step_then_its_wire_form_is_the_task_definition(full_text):
    wire = TaskList.parse(full_text).get("1.1.6").to_wire()

    assert set(wire) == {
        "id",
        "title",
        "description",
        "type",
        "dependencies",
        "files",
        "criteria",
        "notes",
        "status",
        "parent",
    }
    assert (wire["type"], wire["status"], wire["parent"]) == ("atomic", "pending", "1.1")
    assert "parent" not in TaskList.parse(full_text).get("1").to_wire()


def test_given_a_group_when_its_title_and_description_change_then_only_those_bytes_change(
    full_text,
):
    tasks = TaskList.parse(full_text)

    updated = tasks.with_fields(
        "2.1", title="Mount the events router", description="Wire POST /events.\nKeep it small."
    )

    diff = [
        line
        for line in difflib.ndiff(full_text.split("\n"), updated.render().split("\n"))
        if line[:1] in "+-"
    ]
    assert diff == [
        (
            "- - 2.1 Mount events router; validate request schema; persist Event "
            "(Dependencies: [1.2])"
        ),
        "+ - 2.1 Mount the events router (Dependencies: [1.2])",
        "+   Wire POST /events.",
        "+   Keep it small.",
    ]
    task = updated.get("2.1")
    assert (task.title, task.description, task.dependencies) == (
        "Mount the events router",
        "Wire POST /events.\nKeep it small.",
        ("1.2",),
    )
    assert updated.with_fields("2.1", description="").render() == (
        tasks.with_fields("2.1", title="Mount the events router").render()
    )


def test_given_a_parsed_task_then_it_is_an_ordinary_frozen_task(full_text):
    step = TaskList.parse(full_text).get("1.2.5")
    rebuilt = Task(**{field.name: getattr(step, field.name) for field in dataclasses.fields(Task)})

    assert rebuilt == step
    assert dataclasses.replace(step, title="Other").title == "Other"
    with pytest.raises(dataclasses.FrozenInstanceError):
        step.title = "changed"  # type: ignore[misc]
    assert repr(step).startswith("Task(id='1.2.5', title='Verify correctness of Task 1.2")


@pytest.mark.parametrize("name", ["full_text", "in_progress_text"])
def test_the_field_lists_ids_stay_far_below_the_id_limits(name, request):
    tasks = TaskList.parse(request.getfixturevalue(name))

    assert max(len(task.id) for task in tasks.tasks) * 10 <= MAX_ID_LENGTH
    assert max(task.id.count(".") + 1 for task in tasks.tasks) * 3 <= MAX_ID_LEVELS
