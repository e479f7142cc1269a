"""What the parser records about each task while reading, including where it sits in the
file: the columns of its status token and title, and its description lines.

These records are internal: the writer uses them to change exactly the bytes of one task.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from runner.tasklist.model import TaskStatus


class TokenKind(Enum):
    NONE = "none"  # phases: no status of their own
    CHECKBOX = "checkbox"  # replace the one character between "[" and "]"
    FIELD = "field"  # replace the value of a "**Status**:" field
    INSERT = "insert"  # insert a checkbox before the task id (format 1, no checkbox)
    NEW_LINE = "new_line"  # add a "- **Status**:" line after the heading (sections)


@dataclass(frozen=True)
class DescriptionLine:
    """A description line; its text starts at column ``start`` of the raw line."""

    line: int
    start: int
    text: str


class Draft:
    """A task as read from the file, before the hierarchy is resolved and checked.

    Lists of thousands of tasks create one per task, so the constructor only sets what
    differs per task; everything else is a class-level default (None for the collections,
    made when something is first added) until it is assigned. The status token
    is where the task's own status is written: ``token_kind`` at ``token_line``, columns
    ``token_start`` to ``token_end`` of the raw line.
    """

    title = ""
    title_start = 0  # the column of the title in its line
    dependencies: list[tuple[str, int]] | None = None  # (id, 0-based line written on)
    named: set[str] | None = None  # the ids in dependencies, once a second line adds some
    files: list[str] | None = None
    notes: list[str] | None = None
    description: list[DescriptionLine] | None = None
    criteria: dict[str, str] | None = None
    capitalized = False
    in_done_block = False
    by_prefix = False  # the parent is the longest id prefix that is a task
    duplicate = False
    generated = False  # an unnumbered checkbox: its id is made from its position
    written: str | None = None  # the bare number an item was written with ("2" for 1.2)
    id_at = 0  # the column where an id would be written in (a generated id)
    unnamed_from = 1  # no "criterion N" below this N is free: names only ever get taken

    def __init__(self, task_id: str, kind: str, line: int, indent: int,
                 parent: str | None = None, token_kind: TokenKind = TokenKind.NONE,
                 token_start: int = 0, token_end: int = 0,
                 status: TaskStatus = TaskStatus.PENDING) -> None:
        self.id = task_id
        self.kind = kind  # "phase" | "item" | "heading"
        self.line = line  # 0-based
        self.indent = indent
        self.parent = parent
        self.token_kind = token_kind
        self.token_start = token_start
        self.token_end = token_end
        self.status = status
        self.token_line = line
        self.header_end = line  # last line of the title and the fields right after it

    @property
    def title_span(self) -> tuple[int, int]:
        """Columns of the title in its line (a pair made only when asked for: one per task
        would be thousands of objects for the garbage collector to walk)."""
        return self.title_start, self.title_start + len(self.title)

    def set_token(self, kind: TokenKind, line: int, start: int, end: int,
                  status: TaskStatus) -> None:
        self.token_kind = kind
        self.token_line = line
        self.token_start = start
        self.token_end = end
        self.status = status

    def add_dependencies(self, task_ids: tuple[str, ...], line: int) -> None:
        """Add the ids written on ``line`` (0-based); an id already named is kept once.

        Linear in the ids added, however many lines named some before (a list can give a
        task tens of thousands of dependency lines).
        """
        dependencies = self.dependencies
        if dependencies is None:
            self.dependencies = [(task_id, line) for task_id in dict.fromkeys(task_ids)]
            return
        named = self.named
        if named is None:
            named = self.named = {task_id for task_id, _ in dependencies}
        for task_id in task_ids:
            if task_id not in named:
                named.add(task_id)
                dependencies.append((task_id, line))

    def add_files(self, paths: tuple[str, ...]) -> None:
        if self.files is None:
            self.files = []
        self.files.extend(paths)

    def add_note(self, note: str) -> None:
        if self.notes is None:
            self.notes = []
        self.notes.append(note)

    def add_description(self, line: DescriptionLine, blanks_before: int = 0) -> None:
        """Add a description line; blank lines between description lines are kept."""
        if self.description is None:
            self.description = [line]
            return
        self.description.extend([DescriptionLine(-1, 0, "")] * blanks_before)
        self.description.append(line)

    def add_criterion(self, name: str, value: str, raw: str) -> None:
        """Keep the first criterion of a name; a repeated name is kept as a note."""
        if self.criteria is None:
            self.criteria = {}
        if name in self.criteria:
            self.add_note(raw)
        else:
            self.criteria[name] = value

    def add_unnamed_criterion(self, value: str) -> None:
        """Add ``value`` as ``criterion N``: the first free N from the count of criteria
        plus one. The search starts past the names earlier calls found taken (they stay
        taken), so a task's criteria are named in linear time."""
        if self.criteria is None:
            self.criteria = {}
        criteria = self.criteria
        number = max(len(criteria) + 1, self.unnamed_from)
        while f"criterion {number}" in criteria:
            number += 1
        criteria[f"criterion {number}"] = value
        self.unnamed_from = number + 1
