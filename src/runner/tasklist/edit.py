"""Line edits that change one task's status, title or description and nothing else.

Each function takes the raw lines of the file (split on ``\\n``, ``\\r`` kept) and returns a
new list; every line it does not mean to touch is returned as it was.
"""

from __future__ import annotations

from runner.tasklist import syntax
from runner.tasklist.draft import Draft, TokenKind
from runner.tasklist.model import TaskStatus


def set_status(lines: list[str], draft: Draft, status: TaskStatus) -> list[str]:
    """Write ``status`` at the draft's token: the checkbox mark, the field value, an
    inserted ``[x] `` checkbox (format 1), or a new ``- **Status**:`` line under a heading."""
    result = list(lines)
    at, start, end = draft.token_line, draft.token_start, draft.token_end
    line = lines[at]
    kind = draft.token_kind
    if kind is TokenKind.CHECKBOX:
        result[at] = line[:start] + syntax.STATUS_CHECKBOX[status] + line[end:]
    elif kind is TokenKind.INSERT:
        result[at] = line[:start] + f"[{syntax.STATUS_CHECKBOX[status]}] " + line[start:]
    elif kind is TokenKind.FIELD:
        word = syntax.STATUS_WORD[status]
        result[at] = line[:start] + (word.capitalize() if draft.capitalized else word) + line[end:]
    elif kind is TokenKind.NEW_LINE:
        ending = "\r" if line.endswith("\r") else ""
        result.insert(at + 1, f"- **Status**: {syntax.STATUS_WORD[status]}{ending}")
    else:
        raise ValueError(f"task {draft.id} has no status of its own")
    return result


def write_ids(lines: list[str], drafts: list[Draft]) -> list[str]:
    """Write each draft's (generated) id where its title starts: ``- [ ] 1.2 Title``."""
    result = list(lines)
    for draft in drafts:
        line, at = result[draft.line], draft.id_at
        gap = "" if line[at - 1 : at] in (" ", "\t") else " "
        result[draft.line] = f"{line[:at]}{gap}{draft.id} {line[at:]}"
    return result


def set_title(lines: list[str], draft: Draft, title: str) -> list[str]:
    """Replace the title text of ``draft`` (its id, checkbox and dependencies stay)."""
    result = list(lines)
    start, end = draft.title_span
    line = lines[draft.line]
    result[draft.line] = line[:start] + title + line[end:]
    return result


def set_description(lines: list[str], draft: Draft, description: str) -> list[str]:
    """Replace the description lines of ``draft`` with ``description``.

    The first existing description line keeps its prefix (indentation, or a
    ``**Description**:`` field) and takes the first new line; the other old lines are
    removed; further new lines follow it at the task's body indentation. A task without a
    description gets the new lines right after its title and fields.
    """
    new_lines = description.split("\n")
    old = [line for line in draft.description or () if line.line >= 0]
    ending = "\r" if lines[draft.line].endswith("\r") else ""
    indent = ""
    if draft.kind == "item":
        title_line = lines[draft.line]
        indent = title_line[: len(title_line) - len(title_line.lstrip())] + "  "
    body: list[str | None] = [(indent + text if text else "") + ending for text in new_lines]
    if not description:
        body = []
    result: list[str | None] = list(lines)
    if old:
        first = old[0]
        raw = lines[first.line]
        tail = "\r" if raw.endswith("\r") else ""
        if body:
            body[0] = raw[: first.start] + new_lines[0] + tail
        for line in old:
            result[line.line] = None
        result[first.line : first.line + 1] = body or [None]
    else:
        at = draft.header_end + 1
        result[at:at] = body
    return [line for line in result if line is not None]
