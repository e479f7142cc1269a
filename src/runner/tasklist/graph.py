"""Finding the dependency cycles that would leave a task list stuck forever.

Each task has two nodes: *start* (its leaves may begin) and *done*. Start of a task needs
its dependencies done and its parent started; a leaf is done after it started; a group is
done after its children are; a leaf starts after the leaf before it in its group is done.
A cycle in this graph is a set of tasks that wait on each other, including through their
ancestors (a step depending on its own group, a phase depending on one of its tasks).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from runner.tasklist.model import Problem

_MAX_REPORTED = 20


@dataclass(frozen=True)
class Node:
    """A task as the cycle search sees it."""

    id: str
    parent: int | None  # index into the node list
    dependencies: tuple[tuple[int, int], ...]  # (task index, 0-based line written on)
    children: tuple[int, ...]
    previous_leaf: int | None  # the leaf just before this one in the same group
    is_leaf: bool


def find_cycles(nodes: Sequence[Node]) -> list[Problem]:
    """Problems naming each dependency cycle, at the line of a dependency that closes it."""
    edges: list[list[int]] = [[] for _ in range(2 * len(nodes))]
    dependency_lines: dict[tuple[int, int], int] = {}
    for index, node in enumerate(nodes):
        start, done = 2 * index, 2 * index + 1
        for target, line in node.dependencies:
            edges[start].append(2 * target + 1)
            dependency_lines.setdefault((index, target), line)
        if node.parent is not None:
            edges[start].append(2 * node.parent)
        if node.is_leaf:
            edges[done].append(start)
            if node.previous_leaf is not None:
                edges[start].append(2 * node.previous_leaf + 1)
        edges[done].extend(2 * child + 1 for child in node.children)
    problems: list[Problem] = []
    seen: set[int] = set()  # one problem per dependency line: cycles through it share a cause
    for cycle in _back_edge_cycles(edges):
        problem = _describe(nodes, cycle, dependency_lines)
        if problem is not None and problem.line not in seen:
            seen.add(problem.line)
            problems.append(problem)
            if len(problems) >= _MAX_REPORTED:
                break
    return problems


def _back_edge_cycles(edges: list[list[int]]) -> list[list[int]]:
    """One cycle (as a node path, first node repeated last) per back edge of a DFS."""
    colour = bytearray(len(edges))  # 0 unseen, 1 on the path, 2 finished
    cycles: list[list[int]] = []
    for root in range(len(edges)):
        if colour[root]:
            continue
        colour[root] = 1
        path = [root]
        position = {root: 0}
        iterators = [iter(edges[root])]
        while iterators:
            for target in iterators[-1]:
                if colour[target] == 0:
                    colour[target] = 1
                    position[target] = len(path)
                    path.append(target)
                    iterators.append(iter(edges[target]))
                    break
                if colour[target] == 1:
                    cycles.append([*path[position[target] :], target])
                    if len(cycles) >= 4 * _MAX_REPORTED:
                        return cycles
            else:
                finished = path.pop()
                del position[finished]
                colour[finished] = 2
                iterators.pop()
    return cycles


def _describe(
    nodes: Sequence[Node], cycle: list[int], dependency_lines: dict[tuple[int, int], int]
) -> Problem | None:
    lines = [
        dependency_lines[(source // 2, target // 2)]
        for source, target in itertools.pairwise(cycle)
        if source % 2 == 0 and target % 2 == 1 and (source // 2, target // 2) in dependency_lines
    ]
    if not lines:
        return None
    names: list[str] = []
    for node in cycle:
        name = nodes[node // 2].id
        if not names or names[-1] != name:
            names.append(name)
    if len(set(names)) == 1:
        return Problem(min(lines) + 1, f"task {names[0]} depends on itself")
    return Problem(min(lines) + 1, "dependency cycle: " + " -> ".join(names))
