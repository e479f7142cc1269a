"""Selection of the next task, and injected tasks (priority, positional, replace)."""

from __future__ import annotations

import pytest

from runner.tasklist import (
    Injection,
    Task,
    TaskList,
    TaskStatus,
    TaskType,
    select_next,
)

LIST = """Phase 1: One (Dependencies: [])
- 1.1 First group (Dependencies: [])
  - [x] 1.1.1 a
  - 1.1.2 b
- 1.2 Second group (Dependencies: [1.1])
  - 1.2.1 c
Phase 2: Two (Dependencies: [1])
- 2.1 Lone task (Dependencies: [])
"""


def injected(task_id: str) -> Task:
    return Task(
        id=task_id,
        title=f"Injected {task_id}",
        description="",
        type=TaskType.ATOMIC,
        parent=None,
        dependencies=(),
        files=(),
        criteria={},
        notes=(),
        status=TaskStatus.PENDING,
        line=0,
    )


def mark(tasks: TaskList, *done: str) -> TaskList:
    for task_id in done:
        tasks = tasks.with_status(task_id, TaskStatus.DONE)
    return tasks


def test_given_a_list_then_the_first_ready_leaf_in_file_order_is_next():
    assert select_next(TaskList.parse(LIST)).id == "1.1.2"


def test_given_a_group_dependency_then_its_steps_wait_until_all_its_leaves_are_done():
    tasks = TaskList.parse(LIST)
    blocked = tasks.with_status("1.1.2", TaskStatus.BLOCKED)

    assert select_next(blocked) is None  # 1.2 waits for 1.1; phase 2 waits for phase 1
    assert select_next(mark(tasks, "1.1.2")).id == "1.2.1"


def test_given_a_phase_dependency_then_its_tasks_wait_for_the_whole_phase():
    tasks = mark(TaskList.parse(LIST), "1.1.2")

    assert select_next(tasks).id == "1.2.1"
    assert select_next(mark(tasks, "1.2.1")).id == "2.1"
    assert (tasks.is_done("1.1"), tasks.is_done("1")) == (True, False)


def test_given_an_earlier_step_blocked_then_later_steps_of_its_group_wait():
    text = "- [ ] 1 G\n  - [!] 1.1 first\n  - [ ] 1.2 second\n- [ ] 2 Other\n  - [ ] 2.1 free\n"

    assert select_next(TaskList.parse(text)).id == "2.1"


def test_given_a_step_in_progress_then_it_is_selected_again():
    text = "- [ ] 1 G\n  - [x] 1.1 first\n  - [~] 1.2 second\n  - [ ] 1.3 third\n"

    assert select_next(TaskList.parse(text)).id == "1.2"


def test_given_only_blocked_leaves_left_then_nothing_is_selected():
    text = "- [x] 1.1 done\n- [!] 1.2 stuck\n"

    assert select_next(TaskList.parse(text)) is None


def test_given_every_leaf_done_then_nothing_is_selected():
    tasks = mark(TaskList.parse(LIST), "1.1.2", "1.2.1", "2.1")

    assert select_next(tasks) is None
    assert tasks.progress() == (4, 4)
    assert all(tasks.is_done(task.id) for task in tasks.tasks)


def test_given_priority_injections_then_the_first_open_one_comes_first():
    tasks = TaskList.parse(LIST)
    injections = [
        Injection(injected("i1"), "priority", done=True),
        Injection(injected("i2"), "priority"),
        Injection(injected("i3"), "priority"),
    ]

    assert select_next(tasks, injections).id == "i2"
    done_too = [*injections[:1], Injection(injected("i2"), "priority", done=True)]
    assert select_next(tasks, done_too).id == "1.1.2"


def test_given_a_priority_injection_then_it_is_ready_even_when_nothing_else_is():
    tasks = TaskList.parse(LIST).with_status("1.1.2", TaskStatus.BLOCKED)

    assert select_next(tasks, [Injection(injected("fix"), "priority")]).id == "fix"


def test_given_a_positional_injection_then_it_runs_once_the_leaves_before_it_are_done():
    tasks = TaskList.parse(LIST)  # leaves: 1.1.1 (done), 1.1.2, 1.2.1, 2.1
    at_start = [Injection(injected("p0"), "positional", position=0)]
    before_c = [Injection(injected("p2"), "positional", position=2)]
    at_end = [Injection(injected("p4"), "positional", position=4)]

    assert select_next(tasks, at_start).id == "p0"
    assert select_next(tasks, before_c).id == "1.1.2"
    assert select_next(mark(tasks, "1.1.2"), before_c).id == "p2"
    assert select_next(mark(tasks, "1.1.2"), at_end).id == "1.2.1"
    assert select_next(mark(tasks, "1.1.2", "1.2.1", "2.1"), at_end).id == "p4"
    done = [Injection(injected("p2"), "positional", position=2, done=True)]
    assert select_next(mark(tasks, "1.1.2"), done).id == "1.2.1"


def test_given_a_replace_injection_then_it_takes_the_leaf_place_and_counts_for_it():
    tasks = TaskList.parse(LIST)
    replace = Injection(injected("r"), "replace", replace_task_id="1.2.1")

    assert select_next(tasks, [replace]).id == "1.1.2"  # 1.2.1 would not be ready yet
    advanced = mark(tasks, "1.1.2")
    assert select_next(advanced, [replace]).id == "r"
    finished = Injection(injected("r"), "replace", replace_task_id="1.2.1", done=True)
    assert select_next(advanced, [finished]).id == "2.1"  # phase 1 counts as done


def test_given_a_replace_injection_of_the_next_leaf_then_the_leaf_is_skipped():
    tasks = TaskList.parse(LIST)
    replace = Injection(injected("r"), "replace", replace_task_id="1.1.2")

    assert select_next(tasks, [replace]).id == "r"


@pytest.mark.parametrize(
    "injection",
    [
        Injection(injected("x"), "replace", replace_task_id="9.9"),
        Injection(injected("x"), "replace", replace_task_id=None),
        Injection(injected("x"), "replace", replace_task_id="1.1"),
        Injection(injected("x"), "positional", position=None),
        Injection(injected("x"), "positional", position=5),
        Injection(injected("x"), "positional", position=-1),
        Injection(injected("x"), "sideways"),  # type: ignore[arg-type]
    ],
)
def test_given_an_injection_that_does_not_fit_the_list_then_it_is_refused(injection):
    with pytest.raises(ValueError):
        select_next(TaskList.parse(LIST), [injection])


def test_given_two_injections_replacing_one_leaf_then_they_are_refused():
    twice = [Injection(injected(name), "replace", replace_task_id="2.1") for name in "ab"]

    with pytest.raises(ValueError, match="two injections"):
        select_next(TaskList.parse(LIST), twice)
