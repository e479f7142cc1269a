"""The small grammars inside one line: ids, checkboxes, dependency lists, fields, bullets.

Each function reads one piece of a line and either returns what it means or, for the pieces
that can be malformed (dependency lists, status words), a message the parser reports with
the line number.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from runner.tasklist.model import TaskStatus

ID = r"\d+(?:\.\d+)*"
ID_RE = re.compile(ID)
# "Phase 2: Title", optionally as a heading; the title may carry "(Dependencies: [..])".
PHASE_RE = re.compile(r"(?:#{1,6}[ \t]+)?phase[ \t]+(\d+)[ \t]*(?::|[-\u2013\u2014][ \t])[ \t]*",
                      re.IGNORECASE)
HEADING_RE = re.compile(r"(#{1,6})[ \t]+")
# An id opening a task title: "1.2 Title", "1.2. Title", "Task 1.2: Title".
ANY_ID_RE = re.compile(r"(?:task[ \t]+)?(" + ID + r")[.:]?(?:[ \t]+|$)", re.IGNORECASE)
# A list item that may be a task: "- 1.2 Title", "- [x] 3 Title", "* [~] Task 2.1: Title".
ITEM_RE = re.compile(
    r"[-*+][ \t]+(?:\[(?P<box>[ xX~!])\](?:[ \t]+|$))?"
    r"(?P<head>(?:(?i:task)[ \t]+)?(?P<id>" + ID + r")[.:]?(?:[ \t]+|$))?"
)
DEPS_START_RE = re.compile(r"\([ \t]*(?:dependencies|depends on|deps)[ \t]*:", re.IGNORECASE)
FIELD_RE = re.compile(
    r"(?:[-*+][ \t]+)?\*\*(status|dependencies|files|criteria|description|notes)"
    r"(?:\*\*[ \t]*:|[ \t]*:\*\*)[ \t]*",
    re.IGNORECASE,
)
PLAIN_FILES_RE = re.compile(r"files[ \t]*:[ \t]*", re.IGNORECASE)
_DEP_ITEM_RE = re.compile(r"""(?:phase[ \t]+)?(["'`]?)(""" + ID + r")\1", re.IGNORECASE)
_LABEL_RE = re.compile(r"([A-Za-z][\w.\-]*(?: [\w.\-]+){0,3})[ \t]*:[ \t]+(\S.*)")
_MACHINE_RE = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)+|build|test|lint|coverage")
_PLAIN_DEPS_RE = re.compile(r"\[[ \t]*(?:" + ID + r"(?:[ \t]*,[ \t]*" + ID + r")*)?[ \t]*\]")
_NO_DEPS = frozenset({"", "none", "-", "\u2014", "n/a", "[]"})

CHECKBOX_STATUS = {" ": TaskStatus.PENDING, "x": TaskStatus.DONE, "X": TaskStatus.DONE,
                   "~": TaskStatus.IN_PROGRESS, "!": TaskStatus.BLOCKED}
STATUS_CHECKBOX = {TaskStatus.PENDING: " ", TaskStatus.DONE: "x",
                   TaskStatus.IN_PROGRESS: "~", TaskStatus.BLOCKED: "!"}
STATUS_WORD = {TaskStatus.PENDING: "pending", TaskStatus.DONE: "completed",
               TaskStatus.IN_PROGRESS: "in_progress", TaskStatus.BLOCKED: "blocked"}
_WORD_STATUS = {
    "pending": TaskStatus.PENDING, "todo": TaskStatus.PENDING, "open": TaskStatus.PENDING,
    "in_progress": TaskStatus.IN_PROGRESS, "in-progress": TaskStatus.IN_PROGRESS,
    "in progress": TaskStatus.IN_PROGRESS, "completed": TaskStatus.DONE,
    "complete": TaskStatus.DONE, "done": TaskStatus.DONE, "blocked": TaskStatus.BLOCKED,
}


def indent_width(text: str) -> int:
    """Columns of leading whitespace, a tab counting as four."""
    width = 0
    for char in text:
        if char == " ":
            width += 1
        elif char == "\t":
            width += 4
        else:
            break
    return width


def split_title(text: str) -> tuple[str, tuple[str, ...], str | None]:
    """Split ``Title (Dependencies: [a, b])`` into the title, its dependency ids, and an
    error when the dependency suffix is malformed. The title starts ``text``."""
    found = DEPS_START_RE.search(text) if "(" in text else None
    if found is None:
        return text.rstrip(), (), None
    title = text[: found.start()].rstrip()
    tail = text[found.end() :].rstrip()
    if not tail.endswith(")"):
        if tail.count("[") > tail.count("]"):
            return title, (), "malformed dependency list: unclosed bracket"
        return title, (), "malformed dependency list: missing ')'"
    dependencies, error = parse_dependencies(tail[:-1])
    return title, dependencies, error


def parse_dependencies(value: str) -> tuple[tuple[str, ...], str | None]:
    """Read ``[1.1, "2.3"]`` (or a bare ``1.1, 2.3``, or ``none``) into ids, or an error."""
    value = value.strip()
    if _PLAIN_DEPS_RE.fullmatch(value):  # the common "[1.1, 2]": no quotes, no junk
        found = ID_RE.findall(value)
        return (tuple(dict.fromkeys(found)) if len(found) > 1 else tuple(found)), None
    if value.lower() in _NO_DEPS:
        return (), None
    if value.startswith("[") or value.endswith("]"):
        if not (value.startswith("[") and value.endswith("]")):
            return (), "malformed dependency list: unclosed bracket"
        value = value[1:-1]
        if "[" in value or "]" in value:
            return (), "malformed dependency list: unexpected bracket"
    parts = [part.strip() for part in value.split(",")]
    if parts and not parts[-1] and len(parts) > 1:
        parts.pop()
    ids: list[str] = []
    for part in parts:
        match = _DEP_ITEM_RE.fullmatch(part)
        if match is None:
            return (), f"malformed dependency list: {part!r} is not a task id"
        if match.group(2) not in ids:
            ids.append(match.group(2))
    return tuple(ids), None


def parse_status_word(value: str) -> TaskStatus | None:
    """The status a section's ``Status`` value names, or None when it names none."""
    word = value.strip().strip("`*_").strip().lower()
    return _WORD_STATUS.get(word)


def status_word_span(line: str, start: int) -> tuple[int, int]:
    """Columns of the status word in ``line`` from ``start`` (without quotes or marks)."""
    end = len(line.rstrip())
    while start < end and line[start] in "`*_ \t":
        start += 1
    while end > start and line[end - 1] in "`*_ \t":
        end -= 1
    return start, end


class Bullet(NamedTuple):
    """What a bullet under a task says: files, a named criterion, or a free note."""

    kind: str  # "files" | "criterion" | "note"
    name: str
    value: str
    files: tuple[str, ...] = ()


def read_bullet(text: str, *, any_label: bool) -> Bullet:
    """Classify a bullet's text. ``any_label`` lets any ``label: text`` be a criterion;
    otherwise only machine names (``test.coverage``, ``build``) are."""
    text = text.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    match = _LABEL_RE.fullmatch(text) if ":" in text else None
    if match is None:
        return _bullet(("note", "", text, ()))
    label, value = match.group(1), match.group(2).strip()
    lowered = label.lower()
    if lowered == "files":
        return _bullet(("files", "", value, split_files(value)))
    if lowered in ("note", "notes"):
        return _bullet(("note", "", value, ()))
    if any_label or _MACHINE_RE.fullmatch(label):
        return _bullet(("criterion", label, value, ()))
    return _bullet(("note", "", text, ()))


def _bullet(fields: tuple[str, str, str, tuple[str, ...]]) -> Bullet:
    # NamedTuple's generated __new__ is slow; bullets are read once per line of a list.
    return tuple.__new__(Bullet, fields)


def split_files(value: str) -> tuple[str, ...]:
    """``a.py, `b.py``` into paths (quotes, backticks and blanks dropped)."""
    paths = (part.strip().strip("`'\"").strip() for part in value.split(","))
    return tuple(path for path in paths if path)


def split_criteria(value: str) -> list[str]:
    """Pieces of an inline ``Criteria`` value: ``a: x; b: y`` or ``a: x, b: y``."""
    pieces = re.split(r";|,(?=[ \t]*[A-Za-z][\w.\-]*[ \t]*:[ \t])", value)
    return [piece.strip() for piece in pieces if piece.strip()]
