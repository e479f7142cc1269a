"""Choosing the next task: the first ready leaf in file order, after priority injections.

A leaf is ready when it is not done (pending or in progress; blocked never is), every
dependency of it and of its ancestors is done, and the leaves before it in its group are
done. A dependency naming a group or phase is done when all its leaves are.

Injected tasks (CONTRACTS: ``POST /api/devteam/tasks/inject``) take part:

- ``priority``: not done ones come first, in the given order, and are always ready;
- ``positional`` with position ``p``: sits before the file's ``p``-th leaf (0-based, in
  file order; ``p == len(leaves)`` is after the last) and is ready once every leaf before
  it is done;
- ``replace``: takes the place of the leaf ``replace_task_id``, which is then skipped; it
  is ready when that leaf's prerequisites are met, and once it is done the replaced leaf
  counts as done.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from runner.errors import ConfigError
from runner.tasklist.document import TaskList
from runner.tasklist.model import Task, TaskStatus, TaskType

InjectionType = Literal["priority", "replace", "positional"]


@dataclass(frozen=True)
class Injection:
    """A task added to a list from outside the file."""

    task: Task
    injection_type: InjectionType
    position: int | None = None
    replace_task_id: str | None = None
    done: bool = False


class InjectionMisfit(ConfigError, ValueError):
    """Injected tasks that do not fit the task list (it changed under them): a ``config``
    error, so the SELECT stage stops with it and ``GET /tasks/next`` answers 422 (and a
    ValueError, as before)."""

    def __init__(self, why: str) -> None:
        super().__init__(f"injected tasks do not fit the task list: {why}")


def select_next(tasks: TaskList, injections: Sequence[Injection] = ()) -> Task | None:
    """The next task to run, or None when nothing is ready (all done, or all waiting).

    ``InjectionMisfit`` (a ``config`` error) for an injection that does not fit the list:
    an unknown type, a positional one without a position in ``0..len(leaves)``, a replace
    one naming no leaf of the list, or two replacing the same leaf.
    """
    leaves = tasks.leaves()
    positional, replacing = _check(tasks, leaves, injections)
    for injection in injections:
        if injection.injection_type == "priority" and not injection.done:
            return injection.task

    open_leaves: Mapping[str, int] = tasks.open_leaf_counts
    replaced_done = [leaf_id for leaf_id, injection in replacing.items()
                     if injection.done and open_leaves[leaf_id] != 0]
    if replaced_done:  # they count as done: 0 open leaves, one fewer in each ancestor
        counts = dict(open_leaves)
        for leaf_id in replaced_done:
            current: str | None = leaf_id
            while current is not None:
                counts[current] -= 1
                current = tasks.get(current).parent
        open_leaves = counts
    prerequisites_met: dict[str, bool] = {}

    def is_done(task_id: str) -> bool:
        return open_leaves[task_id] == 0

    def dependencies_met(task: Task) -> bool:
        chain: list[Task] = []
        current: Task | None = task
        while current is not None and current.id not in prerequisites_met:
            chain.append(current)
            current = tasks.get(current.parent) if current.parent is not None else None
        met = prerequisites_met[current.id] if current is not None else True
        for ancestor in reversed(chain):
            met = met and all(is_done(dependency) for dependency in ancestor.dependencies)
            prerequisites_met[ancestor.id] = met
        return prerequisites_met[task.id]

    group_done_so_far: dict[str, bool] = {}
    all_done_so_far = True
    for index, leaf in enumerate(leaves):
        for injection in positional.get(index, ()):
            if all_done_so_far:
                return injection.task
        siblings_done = leaf.parent is None or group_done_so_far.get(leaf.parent, True)
        leaf_done = open_leaves[leaf.id] == 0
        replacement = replacing.get(leaf.id)
        if replacement is not None:
            if not replacement.done and siblings_done and dependencies_met(leaf):
                return replacement.task
        elif (not leaf_done and leaf.status is not TaskStatus.BLOCKED
              and siblings_done and dependencies_met(leaf)):
            return leaf
        if leaf.parent is not None:
            group_done_so_far[leaf.parent] = siblings_done and leaf_done
        all_done_so_far = all_done_so_far and leaf_done
    for injection in positional.get(len(leaves), ()):
        if all_done_so_far:
            return injection.task
    return None


def _check(
    tasks: TaskList, leaves: list[Task], injections: Sequence[Injection]
) -> tuple[dict[int, list[Injection]], dict[str, Injection]]:
    """Validate the injections; the open positional ones by position, replace ones by leaf."""
    positional: dict[int, list[Injection]] = {}
    replacing: dict[str, Injection] = {}
    for injection in injections:
        kind = injection.injection_type
        if kind == "positional":
            position = injection.position
            if position is None or not 0 <= position <= len(leaves):
                raise InjectionMisfit(
                    f"positional injection {injection.task.id}: position {position} is not "
                    f"in 0..{len(leaves)}")
            if not injection.done:
                positional.setdefault(position, []).append(injection)
        elif kind == "replace":
            target = injection.replace_task_id
            if target is None or target not in tasks:
                raise InjectionMisfit(
                    f"replace injection {injection.task.id}: unknown task {target!r}")
            if tasks.get(target).type is not TaskType.ATOMIC:
                raise InjectionMisfit(
                    f"replace injection {injection.task.id}: {target} is not an atomic task")
            if target in replacing:
                raise InjectionMisfit(f"two injections replace task {target}")
            replacing[target] = injection
        elif kind != "priority":
            raise InjectionMisfit(f"unknown injection type {kind!r}")
    return positional, replacing
