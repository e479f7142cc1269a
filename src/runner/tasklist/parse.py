"""Reading the lines of a task list into drafts, one line kind at a time.

Three formats, mixed freely: phases (``Phase N: Title (Dependencies: [..])``) holding list
items (``- 1.2 Title`` or GitHub ``- [ ] 1.2 Title``) nested by indentation; and sections
(``#### 1.1.1 Title`` followed by ``- **Status**:``, ``- **Dependencies**:`` fields and free
text). Bullets, fields and indented text belong to the task above them.
"""

from __future__ import annotations

from runner.tasklist import syntax
from runner.tasklist.draft import DescriptionLine, Draft, TokenKind
from runner.tasklist.model import Problem
from runner.tasklist.source import SourceLines


class LineParser:
    """Turns masked lines into drafts (file order) and problems found on single lines."""

    def __init__(self, source: SourceLines) -> None:
        self.source = source
        self.drafts: list[Draft] = []
        self.by_id: dict[str, Draft] = {}
        self.problems: list[Problem] = list(source.problems)
        self._stack: list[Draft] = []  # open list items, innermost last
        self._container: Draft | None = None  # current phase or section heading
        self._owner: Draft | None = None  # receives fields, bullets and description
        self._sublist: str | None = None  # "files" | "criteria" after an empty field
        self._blanks = 0

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
            self._blanks, blanks = blanks, 0
            column = len(text) - len(stripped)
            first = stripped[0]
            if first in "-*+" and stripped[1:2] in (" ", "\t"):
                list_item(index, column, text)
            elif first == "#":
                self._heading(index, column, stripped)
            elif first == "\u2022":
                self._bullet(stripped[1:], any_label=True)
            elif (phase := phase_match(stripped)) is not None:
                self._new_phase(index, column + phase.end(), phase.group(1))
            else:
                self._text(index, column, stripped)

    # -- task lines -------------------------------------------------------------------

    def _register(self, draft: Draft, title_text: str, title_col: int) -> None:
        line = draft.line
        if "(" in title_text:
            title, dependencies, error = syntax.split_title(title_text)
            if error is not None:
                self.problems.append(Problem(line + 1, f"task {draft.id}: {error}"))
            if dependencies:
                draft.add_dependencies(dependencies, line)
        else:
            title = title_text.rstrip()
        draft.title = title
        draft.title_span = (title_col, title_col + len(title))
        if line in self.source.done_lines:
            draft.in_done_block = True
        first = self.by_id.get(draft.id)
        if first is None:
            self.by_id[draft.id] = draft
        else:
            draft.duplicate = True
            self.problems.append(Problem(
                line + 1, f"duplicate task id {draft.id} (first defined on line {first.line + 1})"))
        self.drafts.append(draft)
        self._owner = draft
        self._sublist = None

    def _new_phase(self, index: int, title_col: int, phase_id: str) -> None:
        draft = Draft(phase_id, "phase", index, 0)
        self._register(draft, self.source.text[index][title_col:], title_col)
        self._container = draft
        self._stack = []

    def _heading(self, index: int, column: int, stripped: str) -> None:
        if (phase := syntax.PHASE_RE.match(stripped)) is not None:
            self._new_phase(index, column + phase.end(), phase.group(1))
            return
        marks = syntax.HEADING_RE.match(stripped)
        found = None
        if marks is not None and len(marks.group(1)) >= 2:
            found = syntax.ANY_ID_RE.match(stripped, marks.end())
        self._stack = []
        if marks is None or found is None:
            self._owner = None
            self._sublist = None
            return
        draft = Draft(found.group(1), "heading", index, 0)
        draft.by_prefix = True
        title_col = column + found.end()
        self._register(draft, self.source.text[index][title_col:], title_col)
        draft.token_kind = TokenKind.NEW_LINE
        self._container = draft

    def _list_item(self, index: int, column: int, text: str) -> None:
        indent = syntax.indent_width(text) if "\t" in text[:column] else column
        item = syntax.ITEM_RE.match(text, column)
        assert item is not None  # the caller saw a marker followed by a blank
        box, task_id = item.group("box", "id")
        if task_id is None or (box is None and "." not in task_id):
            field = syntax.FIELD_RE.match(text, column) if "**" in text else None
            if field is not None:
                self._field(index, field.group(1).lower(), field.end())
                return
            at = item.start("head") if item.group("head") is not None else item.end()
            phase = syntax.PHASE_RE.match(text, at)
            if phase is not None:  # "- [x] Phase 2: Title": a phase written as a list item
                self._new_phase(index, phase.end(), phase.group(1))
            else:
                self._sub_item(index, indent, text[at:])
            return
        stack = self._stack
        while stack and stack[-1].indent >= indent:
            stack.pop()
        parent, by_prefix = None, False
        if stack:
            parent = stack[-1].id
        elif (container := self._container) is not None:
            if container.kind == "phase" or task_id.startswith(container.id + "."):
                parent = container.id
            else:
                by_prefix = True
        if box is None:
            at = item.start("head")
            draft = Draft(task_id, "item", index, indent, parent=parent,
                          token_kind=TokenKind.INSERT, token_start=at, token_end=at)
        else:
            start, end = item.span("box")
            draft = Draft(task_id, "item", index, indent, parent=parent,
                          token_kind=TokenKind.CHECKBOX, token_start=start, token_end=end,
                          status=syntax.CHECKBOX_STATUS[box])
        if by_prefix:
            draft.by_prefix = True
        stack.append(draft)
        end = item.end()
        rest = text[end:]
        if "(" in rest or task_id in self.by_id or self.source.done_lines:
            self._register(draft, rest, end)
            return
        # The common case, inlined: no dependency suffix, a new id, no completed block.
        title = rest.rstrip()
        draft.title = title
        draft.title_span = (end, end + len(title))
        self.by_id[task_id] = draft
        self.drafts.append(draft)
        self._owner = draft
        self._sublist = None

    # -- lines that belong to the task above ------------------------------------------

    def _sub_item(self, index: int, indent: int, text: str) -> None:
        owner = self._owner
        if owner is None or (owner.kind == "item" and indent <= owner.indent):
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
            self._bullet(text, any_label=False)

    def _bullet(self, text: str, *, any_label: bool) -> None:
        owner = self._owner
        if owner is None:
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

    def _text(self, index: int, column: int, stripped: str) -> None:
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
        if owner is not None and (owner.kind != "item" or indent > owner.indent):
            owner.add_description(DescriptionLine(index, column, stripped.rstrip()), self._blanks)
            return
        self._owner = None
        self._sublist = None
        self._stack = []
