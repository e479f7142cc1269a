"""The generated lists used by the benchmark: exact sizes, valid (speed: bench/runner.py)."""

from __future__ import annotations

import pytest

from runner.tasklist import TaskList, TaskStatus, TaskType, generate_task_list, select_next


@pytest.mark.parametrize(("leaves", "fraction"), [(0, 0.0), (1, 1.0), (37, 0.3), (500, 0.5)])
def test_given_a_size_and_fraction_then_the_list_has_exactly_that_many_leaves(leaves, fraction):
    tasks = TaskList.parse(generate_task_list(leaves, seed=7, done_fraction=fraction))

    assert tasks.progress() == (round(leaves * fraction), leaves)
    done = [leaf.status is TaskStatus.DONE for leaf in tasks.leaves()]
    assert done == sorted(done, reverse=True)  # the done ones come first


def test_given_a_seed_then_the_list_is_the_same_every_time():
    assert generate_task_list(300, seed=3) == generate_task_list(300, seed=3)
    assert generate_task_list(300, seed=3) != generate_task_list(300, seed=4)


def test_given_a_generated_list_then_it_has_phases_groups_steps_and_dependencies():
    tasks = TaskList.parse(generate_task_list(400, seed=1))
    kinds = {task.type for task in tasks.tasks}

    assert kinds == {TaskType.PHASE, TaskType.GROUP, TaskType.ATOMIC}
    assert any(task.dependencies for task in tasks.tasks if task.type is TaskType.GROUP)
    assert any(task.criteria for task in tasks.leaves())
    assert any(task.type is TaskType.ATOMIC and task.parent is not None
               and tasks.get(task.parent).type is TaskType.PHASE for task in tasks.tasks)


def test_given_5000_leaves_half_done_then_the_first_pending_leaf_is_selected():
    # (how fast: bench/runner.py)
    text = generate_task_list(5000, seed=0, done_fraction=0.5)

    tasks = TaskList.parse(text)
    chosen = select_next(tasks)

    assert chosen is not None
    assert chosen.id == tasks.leaves()[2500].id
