"""Reading the lines of a task list into drafts, one line kind at a time.

Three formats, mixed freely: phases (``Phase N: Title (Dependencies: [..])``) holding list
items (``- 1.2 Title`` or GitHub ``- [ ] 1.2 Title``) nested by indentation; and sections
(``#### 1.1.1 Title`` followed by ``- **Status**:``, ``- **Dependencies**:`` fields and free
text). Bullets, fields and indented text belong to the task above them.

Ids as people write them (see ``_finish_ids``): a checkbox without an id gets one from its
position under its parent (``1.2`` for the second item of phase 1, the next free number
when that one is written elsewhere); a bare number on a checkbox inside a phase, a section
or another item counts within it (``- [ ] 2. Title`` under phase 1 is ``1.2``), and a bare
number among its dependencies names an earlier sibling when there is one.

An id longer than ``syntax.MAX_ID_LENGTH`` characters or deeper than
``syntax.MAX_ID_LEVELS`` levels, as written or once qualified by its parent, is a problem
on its line. That line is not a task, and what belongs to it is skipped (its fields, the
items nested in it; under a phase or heading, the items up to the next heading): no id is
ever built from a longer one, so a line costs the same however long its id.
"""

from __future__ import annotations

import re

from runner.tasklist import syntax
from runner.tasklist.draft import DescriptionLine, Draft, TokenKind
from runner.tasklist.model import Problem
from runner.tasklist.numbering import FreeNumbers
from runner.tasklist.source import SourceLines


class LineParser:
    """Turns masked lines into drafts (file order) and problems found on single lines."""

    def __init__(self, source: SourceLines) -> None:
        self.source = source
        self.drafts: list[Draft] = []
        self.by_id: dict[str, Draft] = {}  # the first draft of each id, in file order
        self.has_duplicates = False
        self.problems: list[Problem] = list(source.problems)
        self._stack: list[Draft] = []  # open list items, innermost last
        self._container: Draft | None = None  # current phase or section heading
        self._owner: Draft | None = None  # receives fields, bullets and description
        self._sublist: str | None = None  # "files" | "criteria" after an empty field
        self._sublist_indent = 0  # indentation of that field's line
        self._pending: list[Draft] = []  # ids that wait for the whole file (generated ...)
        self._relative: list[Draft] = []  # ... or under a parent that has none yet
        self._skip_below: int | None = None  # items deeper belong to a refused id (-1: all)

    def run(self) -> None:
        skip = self.source.skip_lines
        list_item, phase_match = self._list_item, syntax.PHASE_RE.match
        blanks = 0
        for index, text in enumerate(self.source.text):
            stripped = text.lstrip()
            if not stripped:
                blanks += 1
                continue
            if skip and index in skip:
                continue
            column = len(text) - len(stripped)
            first = stripped[0]
            if first in "-*+" and stripped[1:2] in (" ", "\t"):
                list_item(index, column, text)
            elif first == "#":
                self._heading(index, column, stripped)
            elif first == "\u2022":
                self._bullet(index, stripped[1:], any_label=True)
            elif (phase := phase_match(stripped)) is not None:
                self._new_phase(index, column + phase.end(), phase.group(1))
            else:
                self._text(index, column, stripped, blanks)
            blanks = 0
        if self._pending or self._relative:
            self._finish_ids()

    # -- task lines -------------------------------------------------------------------

    def _register(self, draft: Draft, title_text: str, title_col: int) -> None:
        line = draft.line
        if "(" in title_text or syntax.may_name_dependencies(title_text):
            title, dependencies, error = syntax.split_title(title_text)
            if error is not None:
                self.problems.append(Problem(line + 1, f"task {draft.id}: {error}"))
            if dependencies:
                draft.add_dependencies(dependencies, line)
        else:
            title = title_text.rstrip()
        draft.title = title
        draft.title_start = title_col
        if line in self.source.done_lines:
            draft.in_done_block = True
        first = self.by_id.get(draft.id)
        if first is None:
            self.by_id[draft.id] = draft
        else:
            self._duplicate(draft, first)
        self.drafts.append(draft)
        self._owner = draft
        self._sublist = None

    def _duplicate(self, draft: Draft, first: Draft) -> None:
        draft.duplicate = True
        self.has_duplicates = True
        written = "" if draft.written is None else (
            f"written as {draft.written} under {draft.parent}; ")
        self.problems.append(Problem(
            draft.line + 1,
            f"duplicate task id {draft.id} ({written}first defined on line {first.line + 1})"))

    def _refused(self, index: int, task_id: str, indent: int) -> bool:
        """Report ``task_id`` when it is too long or too deep to be an id. What belongs to
        it is then skipped: its fields and text, and the items deeper than ``indent`` (-1:
        every item until the next heading), which would only be misread without it."""
        problem = syntax.id_problem(task_id)
        if problem is None:
            return False
        self.problems.append(Problem(index + 1, problem))
        self._owner = None
        self._sublist = None
        self._skip_below = indent
        return True

    def _new_phase(self, index: int, title_col: int, phase_id: str) -> None:
        self._skip_below = None
        if self._refused(index, phase_id, -1):
            self._container = None
            self._stack = []
            return
        draft = Draft(phase_id, "phase", index, 0)
        self._register(draft, self.source.text[index][title_col:], title_col)
        self._container = draft
        self._stack = []

    def _heading(self, index: int, column: int, stripped: str) -> None:
        if (phase := syntax.PHASE_RE.match(stripped)) is not None:
            self._new_phase(index, column + phase.end(), phase.group(1))
            return
        self._skip_below = None
        marks = syntax.HEADING_RE.match(stripped)
        found = None
        if marks is not None and len(marks.group(1)) >= 2:
            found = syntax.ANY_ID_RE.match(stripped, marks.end())
        self._stack = []
        if marks is None or found is None:
            self._owner = None
            self._sublist = None
            return
        if self._refused(index, found.group("id"), -1):
            self._container = None
            return
        draft = Draft(found.group("id"), "heading", index, 0)
        draft.by_prefix = True
        title_col = column + found.end()
        self._register(draft, _unbold(found, self.source.text[index][title_col:]), title_col)
        draft.token_kind = TokenKind.NEW_LINE
        self._container = draft

    def _list_item(self, index: int, column: int, text: str) -> None:
        indent = syntax.indent_width(text) if "\t" in text[:column] else column
        item = syntax.ITEM_RE.match(text, column)
        assert item is not None  # the caller saw a marker followed by a blank
        box, task_id, bold = item.group("box", "id", "bold")
        if task_id is None or (box is None and "." not in task_id):
            field = syntax.FIELD_RE.match(text, column) if "**" in text else None
            if field is not None:
                self._field(index, field.group(1).lower(), field.end())
                return
            at = item.start("head") if item.group("head") is not None else item.end()
            phase = syntax.PHASE_RE.match(text, at)
            if phase is not None:  # "- [x] Phase 2: Title": a phase written as a list item
                self._new_phase(index, phase.end(), phase.group(1))
                return
            if box is None or not text[at:].strip() or (
                self._sublist is not None and indent > self._sublist_indent
            ):
                self._sub_item(index, indent, text[at:])
                return
            # A checkbox without an id is a task all the same: it gets one (_finish_ids).
        if self._skip_below is not None:
            if indent > self._skip_below:
                return
            self._skip_below = None
        stack = self._stack
        while stack and stack[-1].indent >= indent:
            stack.pop()
        if task_id is not None and self._refused(index, task_id, indent):
            return
        parent, by_prefix, written = None, False, None
        if stack:
            parent = stack[-1].id
        elif (container := self._container) is not None:
            if (container.kind == "phase" or task_id is None or "." not in task_id
                    or task_id.startswith(container.id + ".")):
                parent = container.id
            else:
                by_prefix = True
        generated = task_id is None
        if generated:
            task_id = _placeholder(len(self._pending))
        elif parent is not None and "." not in task_id:  # "2." under 1: it is 1.2
            written = task_id
            if parent[0] == "\0":
                task_id = _placeholder(len(self._pending))
            else:
                task_id = f"{parent}.{written}"
                if self._refused(index, task_id, indent):
                    return
        # Drafts are made with positional arguments: keywords cost a third of the call.
        if box is None:
            at = item.start("head")
            draft = Draft(task_id, "item", index, indent, parent, TokenKind.INSERT, at, at)
        else:
            start, end = item.span("box")
            draft = Draft(task_id, "item", index, indent, parent, TokenKind.CHECKBOX,
                          start, end, syntax.CHECKBOX_STATUS[box])
        if by_prefix:
            draft.by_prefix = True
        stack.append(draft)
        end = item.end()
        rest = text[end:]
        if written is not None:
            draft.written = written
            (self._pending if task_id[0] == "\0" else self._relative).append(draft)
        elif generated:
            draft.generated = True
            draft.id_at = end
            self._pending.append(draft)
        if bold is not None:
            rest = _unbold(item, rest)
        if ("(" in rest or task_id in self.by_id or self.source.done_lines
                or syntax.may_name_dependencies(rest)):
            self._register(draft, rest, end)
            return
        # The common case, inlined: no dependency suffix, a new id, no completed block.
        title = rest.rstrip()
        draft.title = title
        draft.title_start = end
        self.by_id[task_id] = draft
        self.drafts.append(draft)
        self._owner = draft
        self._sublist = None

    # -- lines that belong to the task above ------------------------------------------

    def _sub_item(self, index: int, indent: int, text: str) -> None:
        owner = self._owner
        if owner is None or (owner.kind == "item" and indent <= owner.indent):
            if owner is not None and syntax.line_dependencies(text) is not None:
                self._orphan_dependencies(index, text)
            while self._stack and self._stack[-1].indent >= indent:
                self._stack.pop()
            self._owner = None
            self._sublist = None
            return
        if self._sublist == "files":
            owner.add_files(syntax.split_files(text))
        elif self._sublist == "criteria":
            self._criterion_piece(owner, text)
        else:
            self._bullet(index, text, any_label=False)

    def _bullet(self, index: int, text: str, *, any_label: bool) -> None:
        owner = self._owner
        if owner is None:
            return
        dependencies = syntax.line_dependencies(text)
        if dependencies is not None:  # "- Depends on: 2", "\u2022 requires 1.2"
            owner.add_dependencies(dependencies, index)
            return
        bullet = syntax.read_bullet(text, any_label=any_label)
        if bullet.kind == "files":
            owner.add_files(bullet.files)
        elif bullet.kind == "criterion":
            owner.add_criterion(bullet.name, bullet.value, text.strip())
        elif bullet.value:
            owner.add_note(bullet.value)

    def _criterion_piece(self, owner: Draft, piece: str) -> None:
        bullet = syntax.read_bullet(piece, any_label=True)
        if bullet.kind == "criterion":
            owner.add_criterion(bullet.name, bullet.value, piece.strip())
        elif bullet.kind == "files":
            owner.add_files(bullet.files)
        elif bullet.value:
            owner.add_unnamed_criterion(bullet.value)

    def _field(self, index: int, name: str, value_col: int) -> None:
        owner = self._owner
        if owner is None:
            return
        line = self.source.text[index]
        value = line[value_col:].strip()
        self._sublist = None
        self._sublist_indent = syntax.indent_width(line)
        if name in ("depends on", "blocked by", "requires"):
            name = "dependencies"
        if not owner.description and index > owner.header_end:
            owner.header_end = index
        if name == "status":
            self._status_field(owner, index, value_col, value)
        elif name == "dependencies":
            dependencies, error = syntax.parse_dependencies(value)
            if error is not None:
                self.problems.append(Problem(index + 1, f"task {owner.id}: {error}"))
            owner.add_dependencies(dependencies, index)
        elif name == "files":
            owner.add_files(syntax.split_files(value))
            self._sublist = None if value else "files"
        elif name == "criteria":
            for piece in syntax.split_criteria(value):
                self._criterion_piece(owner, piece)
            self._sublist = None if value else "criteria"
        elif name == "notes":
            if value:
                owner.add_note(value)
        elif value:
            owner.add_description(DescriptionLine(index, value_col, value))

    def _status_field(self, owner: Draft, index: int, value_col: int, value: str) -> None:
        kind = owner.token_kind
        if kind is TokenKind.NONE or kind is TokenKind.CHECKBOX:
            return  # phases have no status of their own; a checkbox wins over a field
        if kind is TokenKind.FIELD:
            self.problems.append(Problem(index + 1, f"task {owner.id}: second Status field"))
            return
        status = syntax.parse_status_word(value)
        if status is None:
            self.problems.append(Problem(
                index + 1,
                f"task {owner.id}: unknown status {value!r} "
                "(expected pending, in_progress, completed, done or blocked)",
            ))
            return
        line = self.source.text[index]
        start, end = syntax.status_word_span(line, value_col)
        owner.set_token(TokenKind.FIELD, index, start, end, status)
        owner.capitalized = line[start : start + 1].isupper()

    def _text(self, index: int, column: int, stripped: str, blanks: int) -> None:
        """A line of text; ``blanks``: how many blank lines come right before it."""
        owner = self._owner
        field = syntax.FIELD_RE.match(stripped)
        if field is not None:
            self._field(index, field.group(1).lower(), column + field.end())
            return
        files = syntax.PLAIN_FILES_RE.match(stripped)
        if owner is not None and files is not None:
            owner.add_files(syntax.split_files(stripped[files.end() :]))
            return
        indent = syntax.indent_width(self.source.text[index])
        dependencies = syntax.line_dependencies(stripped) if owner is not None else None
        if owner is not None and dependencies is not None:  # "Depends on: 2" on its own line
            if owner.kind != "item" or indent > owner.indent or not blanks:
                owner.add_dependencies(dependencies, index)
                if not owner.description and index > owner.header_end:
                    owner.header_end = index
            else:
                self._orphan_dependencies(index, stripped)
            return
        if owner is not None and (owner.kind != "item" or indent > owner.indent):
            owner.add_description(DescriptionLine(index, column, stripped.rstrip()), blanks)
            return
        self._owner = None
        self._sublist = None
        self._stack = []

    def _orphan_dependencies(self, index: int, text: str) -> None:
        """A dependency line level with the item above it: which task it is for is a guess,
        so it is reported rather than dropped or given to the wrong one."""
        self.problems.append(Problem(
            index + 1, f"{text.strip()!r} belongs to no task: indent it under the task it "
            "belongs to"))

    # -- ids that wait for the whole file ---------------------------------------------

    def _finish_ids(self) -> None:
        """Give generated and qualified ids their final form, once every written id is known.

        A checkbox without an id gets ``<parent>.<k>``, ``k`` its position among its
        parent's items (top level: just ``k``), or the next number not written anywhere
        else. An item written with a bare number under a parent that has a generated id
        gets ``<parent>.<number>``. A bare number among the dependencies of an item
        written with a bare number names an earlier sibling when there is one. A final id
        too long or too deep is reported, and that item and the generated ones under it
        are dropped (the list is refused anyway).
        """
        pending = self._pending
        positions: dict[str, int] = {}
        if pending:
            counts: dict[str | None, int] = {}
            for draft in self.drafts:
                counts[draft.parent] = number = counts.get(draft.parent, 0) + 1
                if draft.id[0] == "\0":
                    positions[draft.id] = number
        reserved: dict[str | None, set[str]] = {}
        for draft in pending:
            if draft.written is not None:
                reserved.setdefault(draft.parent, set()).add(draft.written)
        used = {draft.id for draft in self.drafts if draft.id[0] != "\0"}
        numbers = FreeNumbers(used)
        renamed: dict[str, str] = {}
        refused: dict[str, str] = {}  # a placeholder, and the id problems name it by
        # Per parent, no number below this one is free: what a sibling found taken stays
        # taken, and positions grow in file order (so a reserved number is tried once).
        free_from: dict[str | None, int] = {}
        for draft in pending:
            key = draft.parent
            if key is not None and key in refused:
                refused[draft.id] = refused[key]
                continue
            parent = renamed.get(key, key) if key is not None else None
            prefix = "" if parent is None else parent + "."
            if draft.written is not None:
                new = prefix + draft.written
            else:
                number = max(positions[draft.id], free_from.get(key, 0))
                taken = reserved.get(key, ())
                while str(number := numbers.first_free(prefix, number)) in taken:
                    number += 1
                free_from[key] = number + 1
                new = prefix + str(number)
            problem = syntax.id_problem(new)
            if problem is not None:
                self.problems.append(Problem(draft.line + 1, problem))
                refused[draft.id] = syntax.short_id(new)
                continue
            renamed[draft.id] = new
            draft.id, draft.parent = new, parent
            used.add(new)
        if refused:
            self.drafts = [draft for draft in self.drafts if draft.id not in refused]
        by_id: dict[str, Draft] = {}
        for draft in self.drafts:
            if draft.parent is not None:
                if draft.parent in renamed:
                    draft.parent = renamed[draft.parent]
                elif draft.parent in refused:
                    draft.parent = None
            if draft.duplicate:
                continue
            first = by_id.get(draft.id)
            if first is None:
                by_id[draft.id] = draft
            else:
                self._duplicate(draft, first)
        self.by_id = by_id
        for draft in (*pending, *self._relative):
            if (draft.written is not None and draft.dependencies and draft.parent is not None
                    and draft.id not in refused):
                draft.dependencies = [
                    (_sibling(draft, dep, by_id), line) for dep, line in draft.dependencies]
        names = {**renamed, **refused} if refused else renamed
        if names:
            def final(found: re.Match[str]) -> str:
                return names.get(found.group(), found.group())
            self.problems = [
                Problem(p.line, _PLACEHOLDER_RE.sub(final, p.message)) if "\0" in p.message
                else p for p in self.problems]


def _sibling(draft: Draft, dependency: str, by_id: dict[str, Draft]) -> str:
    """The earlier sibling a bare number names (``depends on 1`` on ``2.`` under phase 3
    is 3.1), or the dependency as written: a later item or the item itself is never meant
    (``depends on 2`` on ``2.`` under phase 3 names phase 2)."""
    if "." in dependency:
        return dependency
    sibling = by_id.get(f"{draft.parent}.{dependency}")
    if sibling is None or sibling.line >= draft.line or sibling.parent != draft.parent:
        return dependency
    return sibling.id


_PLACEHOLDER_RE = re.compile("\0[0-9]+\0")


def _placeholder(number: int) -> str:
    """A stand-in id, until the whole file is read; text never holds NUL in an id."""
    return f"\0{number}\0"


def _unbold(head: re.Match[str], rest: str) -> str:
    """``rest`` without the closing marks of an id and title written in bold together
    (``**1.2 Title**``)."""
    bold = head.group("bold")
    if bold is None or head.group("close") is not None:
        return rest
    trimmed = rest.rstrip()
    return trimmed[: -len(bold)] if trimmed.endswith(bold) else rest
