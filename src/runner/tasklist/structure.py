"""From drafts to tasks: resolve the hierarchy, derive statuses, check the whole list.

Every problem is collected before anything is returned, so a broken list is reported in
full and never half-used.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import itemgetter

from runner.tasklist.draft import Draft
from runner.tasklist.graph import Node, find_cycles
from runner.tasklist.model import Problem, Task, TaskListError, TaskStatus, TaskType
from runner.tasklist.parse import LineParser

_NEW = object.__new__
_FIRST = itemgetter(0)


@dataclass(frozen=True)
class Structure:
    """The checked tasks of a list (file order) and what the writer needs of their drafts."""

    tasks: list[Task]
    by_id: dict[str, Task]
    leaves: list[Task]  # the atomic tasks, in file order
    drafts: dict[str, Draft]
    children: dict[str, list[str]]  # only tasks that have children are keys
    open_leaves: dict[str, int]  # per task: its leaves not done yet (a leaf: 1 or 0)


def build(parser: LineParser, source: str) -> Structure:
    """Resolve and check what ``parser`` read; raise ``TaskListError`` listing all problems."""
    drafts = parser.drafts
    if parser.has_duplicates:
        drafts = [draft for draft in drafts if not draft.duplicate]
    by_id = parser.by_id  # the drafts kept, by id, in file order
    problems = list(parser.problems)
    ordered = _resolve_parents(drafts, by_id, problems)
    children: dict[str, list[str]] = {}
    dependent: list[Draft] = []  # the drafts that name dependencies
    for draft in drafts:
        parent = draft.parent
        if parent is not None:
            siblings = children.get(parent)
            if siblings is None:
                children[parent] = [draft.id]
            else:
                siblings.append(draft.id)
        if draft.dependencies:
            dependent.append(draft)
            for dependency, line in draft.dependencies:
                if dependency not in by_id:
                    problems.append(Problem(
                        line + 1, f"task {draft.id} depends on unknown task {dependency}"))
    if not (ordered and _dependencies_point_back(drafts, dependent)):
        problems.extend(find_cycles(_nodes(drafts, by_id, children)))
    if problems:
        raise TaskListError(problems, source=source)
    statuses, open_leaves = _statuses(drafts, by_id, children, ordered)
    tasks, tasks_by_id, leaves = _tasks(drafts, children, statuses)
    return Structure(tasks, tasks_by_id, leaves, by_id, children, open_leaves)


def _tasks(drafts: list[Draft], children: dict[str, list[str]],
           statuses: dict[str, TaskStatus]) -> tuple[list[Task], dict[str, Task], list[Task]]:
    """The frozen tasks (file order), by id, and the leaves. ``Task``'s generated
    ``__init__`` costs several times more than filling its ``__dict__`` in place, which
    matters for lists of thousands of tasks (a dictionary built apart and then set as the
    ``__dict__`` costs a third more again); the draft's containers are handed over, not
    copied (drafts never change after parsing)."""
    tasks: list[Task] = []
    by_id: dict[str, Task] = {}
    leaves: list[Task] = []
    phase, group, atomic = TaskType.PHASE, TaskType.GROUP, TaskType.ATOMIC
    for draft in drafts:
        task_id = draft.id
        kind = phase if draft.kind == "phase" else group if task_id in children else atomic
        description = ""
        if draft.description:
            description = "\n".join(line.text for line in draft.description).strip("\n")
        dependencies = draft.dependencies
        task = _NEW(Task)
        fields = task.__dict__
        fields["id"] = task_id
        fields["title"] = draft.title
        fields["description"] = description
        fields["type"] = kind
        fields["parent"] = draft.parent
        fields["dependencies"] = tuple(map(_FIRST, dependencies)) if dependencies else ()
        fields["files"] = tuple(draft.files) if draft.files else ()
        fields["criteria"] = draft.criteria or {}
        fields["notes"] = tuple(draft.notes) if draft.notes else ()
        fields["status"] = statuses[task_id]
        fields["line"] = draft.line + 1
        tasks.append(task)
        by_id[task_id] = task
        if kind is atomic:
            leaves.append(task)
    return tasks, by_id, leaves


def _resolve_parents(drafts: list[Draft], by_id: dict[str, Draft],
                     problems: list[Problem]) -> bool:
    """Give headings their parent by id prefix; report loops. True when every parent
    comes before its children in the file (then no loop is possible).

    The prefixes are tried longest first, each cut at the dot before the last; ids have at
    most ``syntax.MAX_ID_LEVELS`` levels (the parser reports deeper ones), so that is a
    handful of short look-ups per heading.
    """
    ordered = True
    for draft in drafts:
        if draft.by_prefix:
            task_id = draft.id
            draft.parent = None
            end = task_id.rfind(".")
            while end > 0:
                candidate = task_id[:end]
                if candidate in by_id:
                    draft.parent = candidate
                    break
                end = task_id.rfind(".", 0, end)
        if draft.parent is not None and by_id[draft.parent].line >= draft.line:
            ordered = False
    if ordered:
        return True
    state: dict[str, int] = {}  # 1 being walked, 2 known to reach the top
    for draft in drafts:
        walked: list[Draft] = []
        current: Draft | None = draft
        while current is not None and current.id not in state:
            state[current.id] = 1
            walked.append(current)
            current = by_id[current.parent] if current.parent is not None else None
        if current is not None and state[current.id] == 1:
            problems.append(Problem(
                current.line + 1, f"task {current.id} is nested inside itself "
                "(check the numbering of the tasks around it)"))
            current.parent = None
        for seen in walked:
            state[seen.id] = 2
    return False


def _dependencies_point_back(drafts: list[Draft], dependent: list[Draft]) -> bool:
    """Whether every dependency ends (with all its subtree) before the task naming it
    (``dependent``: the drafts that name dependencies).

    With parents before children, that orders the whole waiting graph by line, so there
    is no cycle and the full search is skipped (it is the common case).
    """
    subtree_end = {draft.id: draft.line for draft in drafts}
    for draft in reversed(drafts):
        parent = draft.parent
        if parent is not None and subtree_end[draft.id] > subtree_end[parent]:
            subtree_end[parent] = subtree_end[draft.id]
    for draft in dependent:
        for dependency, _ in draft.dependencies or ():
            end = subtree_end.get(dependency)
            if end is not None and end >= draft.line:
                return False
    return True


def _nodes(drafts: list[Draft], by_id: dict[str, Draft],
           children: dict[str, list[str]]) -> list[Node]:
    index = {draft.id: number for number, draft in enumerate(drafts)}
    previous: dict[str | None, int] = {}
    nodes: list[Node] = []
    for number, draft in enumerate(drafts):
        is_leaf = draft.kind != "phase" and draft.id not in children
        previous_leaf = None
        if is_leaf and draft.parent is not None:
            previous_leaf = previous.get(draft.parent)
            previous[draft.parent] = number
        nodes.append(Node(
            id=draft.id,
            parent=index[draft.parent] if draft.parent is not None else None,
            dependencies=tuple((index[dep], line) for dep, line in draft.dependencies or ()
                               if dep in by_id),
            children=tuple(index[child] for child in children.get(draft.id, ())),
            previous_leaf=previous_leaf,
            is_leaf=is_leaf,
        ))
    return nodes


def _statuses(drafts: list[Draft], by_id: dict[str, Draft], children: dict[str, list[str]],
              ordered: bool) -> tuple[dict[str, TaskStatus], dict[str, int]]:
    """Leaves: their own token (done inside a completed block); others: from their leaves.
    Also how many leaves under each task are not done (a leaf: 1 or 0).

    ``ordered`` (every parent comes before its children): a leaf counts at its parent only,
    and then the groups, last first, pass their totals on to their own parents; otherwise
    each leaf counts at every one of its ancestors.
    """
    done, pending, is_blocked = TaskStatus.DONE, TaskStatus.PENDING, TaskStatus.BLOCKED
    statuses: dict[str, TaskStatus] = {}
    open_leaves: dict[str, int] = {}
    started: set[str] = set()  # groups with a leaf done or in progress
    blocked: set[str] = set()
    groups: list[Draft] = []  # the tasks that are not leaves, in file order
    for draft in drafts:
        task_id = draft.id
        if draft.kind == "phase" or task_id in children:
            open_leaves.setdefault(task_id, 0)
            groups.append(draft)
            continue
        status = done if draft.in_done_block else draft.status
        statuses[task_id] = status
        is_open = status is not done
        open_leaves[task_id] = is_open
        parent = draft.parent
        if ordered:
            if parent is not None:
                open_leaves[parent] += is_open
                if status is not pending:
                    (blocked if status is is_blocked else started).add(parent)
            continue
        if status is pending:
            while parent is not None:
                open_leaves[parent] = open_leaves.get(parent, 0) + 1
                parent = by_id[parent].parent
            continue
        while parent is not None:
            open_leaves[parent] = open_leaves.get(parent, 0) + is_open
            (blocked if status is is_blocked else started).add(parent)
            parent = by_id[parent].parent
    if ordered:
        for group in reversed(groups):  # its subtree, all after it, is counted already
            parent = group.parent
            if parent is not None:
                task_id = group.id
                open_leaves[parent] += open_leaves[task_id]
                if task_id in started:
                    started.add(parent)
                if task_id in blocked:
                    blocked.add(parent)
    for group in groups:
        task_id = group.id
        if open_leaves[task_id] == 0:
            statuses[task_id] = done
        elif task_id in started:
            statuses[task_id] = TaskStatus.IN_PROGRESS
        elif task_id in blocked:
            statuses[task_id] = is_blocked
        else:
            statuses[task_id] = pending
    return statuses, open_leaves
