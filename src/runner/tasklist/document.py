"""A parsed task list that remembers its file, byte for byte.

``TaskList.parse(text).render() == text`` always. Edits (``with_status``, ``with_fields``)
return a new list whose file differs from this one only in the bytes of that change, and
which has been parsed again, so what is written is always what is read back. An edit that
would read back as more than that change (a title ``Phase 2: z`` that turns an item into
a heading, a description line that reads as a new task) is refused with ``ValueError``.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from runner.tasklist import edit, syntax
from runner.tasklist.draft import Draft
from runner.tasklist.model import Task, TaskListError, TaskStatus, TaskType
from runner.tasklist.parse import LineParser
from runner.tasklist.source import read_source
from runner.tasklist.structure import Structure, build


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a list is parsed.

    Parsing creates tens of thousands of small objects that all stay alive; the collector
    would walk them again and again for nothing (about a fifth of the parse time of a
    5,000-task list). It is switched back on afterwards, only if it was on before.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class TaskList:
    """The tasks of one task-list file.

    ``tasks`` holds every task in file order (phases, groups and leaves); ``source`` names
    the file in problems. A ``TaskList`` is never changed in place: edits return a new one.
    """

    def __init__(self, lines: list[str], structure: Structure, source: str) -> None:
        """Use ``TaskList.parse``; this constructor is the parser's."""
        self._lines = lines
        self.tasks = structure.tasks
        self.source = source
        self._drafts = structure.drafts
        self._children = structure.children
        self._open_leaves = structure.open_leaves
        self._by_id = structure.by_id
        self._leaves = structure.leaves

    @classmethod
    def parse(cls, text: str, *, source: str = "tasks_list.md") -> TaskList:
        """Read a task list in any of the three formats (mixed if need be).

        Raises ``TaskListError`` listing every problem (with its line) when the list is
        broken: unknown or malformed dependencies, cycles, duplicate ids, unknown status
        values, an unclosed comment. Nothing of a broken list is returned.
        """
        with _collector_paused():
            lines = read_source(text)
            parser = LineParser(lines)
            parser.run()
            structure = build(parser, source)
            return cls(lines.raw, structure, source)

    def render(self) -> str:
        """The file's text; identical to the parsed text when nothing was changed."""
        return "\n".join(self._lines)

    def get(self, task_id: str) -> Task:
        """The task with this id; ``KeyError`` when there is none."""
        try:
            return self._by_id[task_id]
        except KeyError:
            raise KeyError(f"unknown task {task_id!r}") from None

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._by_id

    def __len__(self) -> int:
        return len(self.tasks)

    def leaves(self) -> list[Task]:
        """The atomic tasks, in file order: the ones that are actually executed."""
        return list(self._leaves)

    def children(self, task_id: str) -> list[Task]:
        """The direct children of a task, in file order."""
        self.get(task_id)
        return [self._by_id[child] for child in self._children.get(task_id, ())]

    def is_done(self, task_id: str) -> bool:
        """A leaf: its status is done. A group or phase: all its leaves are done."""
        self.get(task_id)
        return self._open_leaves[task_id] == 0

    @property
    def open_leaf_counts(self) -> Mapping[str, int]:
        """For every task id, how many of its leaves are not done (a leaf: 1 or 0)."""
        return self._open_leaves

    def progress(self) -> tuple[int, int]:
        """``(done leaves, total leaves)``."""
        done = sum(1 for leaf in self._leaves if leaf.status is TaskStatus.DONE)
        return done, len(self._leaves)

    def generated_ids(self) -> list[str]:
        """The ids made up for checkboxes written without one, in file order.

        They follow from each item's position (README, "Your own repository"), so they stay the
        same while only statuses change; ``with_ids_written`` writes them into the file.
        """
        return [task.id for task in self.tasks if self._drafts[task.id].generated]

    def with_ids_written(self) -> TaskList:
        """A new list in which every generated id is written before its item's title
        (``- [ ] Add CI`` becomes ``- [ ] 1.2 Add CI``); every id stays what it was.

        Nothing else changes (items inside a completed comment block are left as they
        are, like every edit there); the list itself when there is nothing to write.
        Never done unless asked (``devteam tasks normalize``).
        """
        drafts = [self._drafts[task_id] for task_id in self.generated_ids()]
        drafts = [draft for draft in drafts if not draft.in_done_block]
        if not drafts:
            return self
        updated = self._reparse(edit.write_ids(self._lines, drafts))
        left = [task_id for task_id in updated.generated_ids()
                if not updated._drafts[task_id].in_done_block]
        if left or [(t.id, t.parent, t.line) for t in updated.tasks] != [
            (t.id, t.parent, t.line) for t in self.tasks
        ]:
            raise ValueError("writing the generated ids would change what the list means")
        return updated

    def with_status(self, task_id: str, status: TaskStatus | str) -> TaskList:
        """A new list where the leaf ``task_id`` has ``status``; only its token changes.

        ``ValueError`` for a group or phase (their status follows their leaves) and for a
        task inside a completed comment block (only ``done`` fits there).
        """
        task = self.get(task_id)
        status = TaskStatus(status)
        if task.type is not TaskType.ATOMIC:
            raise ValueError(
                f"task {task_id} is a {task.type}: only atomic tasks have a status of their "
                "own; a group or phase is done when all its leaves are")
        if task.status is status:
            return self
        draft = self._drafts[task_id]
        self._refuse_done_block(draft, f"set its status to {status}")
        updated = self._reparse(edit.set_status(self._lines, draft, status))
        # statuses of the groups above the leaf change with it; nothing else may
        if [_shape(t) for t in updated.tasks] != [_shape(t) for t in self.tasks]:
            raise ValueError(f"writing status {status} for task {task_id} would change "
                             "what the list means")
        if updated.get(task_id).status is not status:
            raise ValueError(f"cannot write status {status} for task {task_id}")
        return updated

    def with_fields(self, task_id: str, *, title: str | None = None,
                    description: str | None = None) -> TaskList:
        """A new list where ``task_id`` has this title and/or description.

        The title stays one line; ``ValueError`` when the new text would read back as
        something else (for instance a title holding ``(Dependencies: ...)``), or would
        change any other task or field of the list (ids, types, nesting, dependencies,
        files, criteria, statuses): the list is compared before and after, line numbers
        aside, as ``with_ids_written`` does.
        """
        task = self.get(task_id)
        draft = self._drafts[task_id]
        lines = self._lines
        if title is not None and title.strip() != task.title:
            title = title.strip()
            if not title or "\n" in title or "\r" in title:
                raise ValueError("a title is one non-empty line")
            if syntax.DEPS_START_RE.search(title):
                raise ValueError("a title cannot hold a dependency list")
            self._refuse_done_block(draft, "change its title")
            lines = edit.set_title(lines, draft, title)
        if description is not None:
            description = "\n".join(line.rstrip() for line in description.split("\n"))
            description = description.strip("\n")
            if "\r" in description:
                raise ValueError("a description must not contain carriage returns")
            if description != task.description:
                self._refuse_done_block(draft, "change its description")
                lines = edit.set_description(lines, draft, description)
        if lines is self._lines:
            return self
        updated = self._reparse(lines)
        edited = tuple(name for name, value in (("title", title), ("description", description))
                       if value is not None)
        if [_meaning(t, edited if t.id == task_id else ()) for t in updated.tasks] != [
            _meaning(t, edited if t.id == task_id else ()) for t in self.tasks
        ]:
            raise ValueError(
                f"task {task_id}: the new {' and '.join(edited)} would change more than that "
                "when the list is read back (another task, its kind, nesting or fields)")
        changed = updated.get(task_id)
        if (title is not None and changed.title != title) or (
            description is not None and changed.description != description
        ):
            raise ValueError(f"task {task_id}: the new text would not read back unchanged")
        return updated

    def _refuse_done_block(self, draft: Draft, action: str) -> None:
        if draft.in_done_block:
            raise ValueError(
                f"task {draft.id} is inside a completed comment block (line {draft.line + 1}); "
                f"cannot {action}: edit the block by hand to reopen it")

    def _reparse(self, lines: list[str]) -> TaskList:
        try:
            return TaskList.parse("\n".join(lines), source=self.source)
        except TaskListError as error:
            raise ValueError(f"the change would break the task list: {error}") from error


def _shape(task: Task) -> tuple[str, str | None, TaskType]:
    """What a status edit must leave alone: a task's id, parent and kind."""
    return task.id, task.parent, task.type


def _meaning(task: Task, ignored: tuple[str, ...]) -> tuple[object, ...]:
    """Everything the list says about ``task`` except its line and the ``ignored`` fields."""
    return (
        task.id, task.type, task.parent, task.dependencies, task.files,
        tuple(task.criteria.items()), task.notes, task.status,
        None if "title" in ignored else task.title,
        None if "description" in ignored else task.description,
    )
