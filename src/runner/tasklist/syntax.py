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
MAX_ID_LENGTH = 100
"""Characters a task id may have (real lists use ids like ``1.1.1``). Ids are stored in
columns of 200 characters and are part of branch names; a longer id is a problem."""
MAX_ID_LEVELS = 10
"""Levels a task id may have (``1.2.3`` has three). A heading's parent is looked up by each
prefix of its id, and generated ids grow by one number per level of nesting."""
_SHOWN_ID = 40  # characters of an over-long id quoted in its problem
# "Phase 2: Title", optionally as a heading; the title may carry "(Dependencies: [..])".
PHASE_RE = re.compile(r"(?:#{1,6}[ \t]+)?phase[ \t]+(\d+)[ \t]*(?::|[-\u2013\u2014][ \t])[ \t]*",
                      re.IGNORECASE)
HEADING_RE = re.compile(r"(#{1,6})[ \t]+")
# An id opening a task title: "1.2 Title", "1.2. Title", "2) Title", "Task 1.2: Title"; in
# bold: "**1.2** Title", "**Task 1.2:** Title", "**1.2 Title**" (``close`` is then unset).
_HEAD = (r"(?P<bold>\*\*|__)?(?:(?i:task)[ \t]+)?(?P<id>" + ID + r")[.:)]?"
         r"(?(bold)(?P<close>(?P=bold))?)[.:]?(?:[ \t]+|$)")
ANY_ID_RE = re.compile(_HEAD)
# A list item that may be a task: "- 1.2 Title", "- [x] 3 Title", "* [~] Task 2.1: Title".
ITEM_RE = re.compile(r"[-*+][ \t]+(?:\[(?P<box>[ xX~!])\](?:[ \t]+|$))?(?P<head>" + _HEAD + ")?")
DEPS_START_RE = re.compile(r"\([ \t]*(?:dependencies|depends on|deps)[ \t]*:", re.IGNORECASE)
FIELD_RE = re.compile(
    r"(?:[-*+][ \t]+)?\*\*(status|dependencies|depends on|blocked by|requires|files|criteria"
    r"|description|notes)(?:\*\*[ \t]*:|[ \t]*:\*\*)[ \t]*",
    re.IGNORECASE,
)
# Dependencies in prose: "(depends on 2.1)", "_(requires 1.2)_", "— blocked by 4", and a
# line of its own "Depends on: 2". Only a list of task ids counts ("requires Redis" is text).
_KEYWORD = (r"(?:depends[ \t]+(?:on|upon)|dependent[ \t]+on|dependencies|deps|blocked[ \t]+by"
            r"|requires)")
_REF = r"(?:(?:tasks?|phases?|steps?)[ \t]+)?[\"'`*]{0,2}" + ID + r"[\"'`*]{0,2}"
_SEP = r"[ \t]*(?:,(?:[ \t]*and(?=[ \t]))?|&|/|and(?=[ \t]))[ \t]*"
_REFS = r"(?:\[[ \t]*)?" + _REF + r"(?:" + _SEP + _REF + r")*(?:[ \t]*\])?"
_END = r"(?:[ \t]*[_*]{1,2})?(?:[ \t]*\.)?"
# Linear on any line: no pattern starts with a repeated blank (a search would walk a run of
# blanks again from each of its positions), and no two repeated blanks can share a run
# (a failing match would try every split of it).
_PROSE_PAREN_RE = re.compile(
    r"[_*]{0,2}\([ \t]*" + _KEYWORD + r"(?:[ \t]*:)?[ \t]*(?P<ids>" + _REFS
    + r")(?:[ \t]*\))[_*]{0,2}", re.IGNORECASE)
_PROSE_TAIL_RE = re.compile(
    r"[-\u2013\u2014,;:.|][ \t]*[_*]{0,2}" + _KEYWORD + r"(?:[ \t]*:)?[ \t]*(?P<ids>" + _REFS
    + r")" + _END + r"$", re.IGNORECASE)
_DEPS_LINE_RE = re.compile(
    r"[_*]{0,2}" + _KEYWORD + r"(?:[_*]{1,2})?(?:[ \t]*:[_*]{0,2})?[ \t]*"
    r"(?P<ids>" + _REFS + r"|none|n/a|-|\u2014|\[[ \t]*\])" + _END, re.IGNORECASE)
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


def id_problem(task_id: str) -> str | None:
    """Why ``task_id`` cannot be a task id (longer than ``MAX_ID_LENGTH`` characters or
    deeper than ``MAX_ID_LEVELS`` levels), or None when it can. The message quotes the
    start of the id only: an id can be as long as the line that holds it."""
    length = len(task_id)
    if length < 2 * MAX_ID_LEVELS:  # the common case: too short to be too deep
        return None
    levels = task_id.count(".") + 1
    if length <= MAX_ID_LENGTH and levels <= MAX_ID_LEVELS:
        return None
    shown = short_id(task_id)
    if length > MAX_ID_LENGTH:
        return f"task id {shown} is too long ({length} characters; at most {MAX_ID_LENGTH})"
    return f"task id {shown} is too deep ({levels} levels; at most {MAX_ID_LEVELS})"


def short_id(task_id: str) -> str:
    """``task_id`` as a problem quotes it: its first characters when it is too long."""
    return task_id if len(task_id) <= _SHOWN_ID else task_id[:_SHOWN_ID] + "..."


def split_title(text: str) -> tuple[str, tuple[str, ...], str | None]:
    """Split ``Title (Dependencies: [a, b])`` into the title, its dependency ids, and an
    error when the dependency suffix is malformed. The title starts ``text``.

    Dependencies in prose are read too: ``(depends on 2.1)`` or ``_(requires 1.2)_``
    anywhere in the title (cut from it when at its end), and ``— blocked by 4`` at its
    end; these count only when they name task ids, so ``(requires Redis)`` stays text.
    """
    found = DEPS_START_RE.search(text) if "(" in text else None
    if found is None:
        return _split_prose(text)
    start = found.start()
    title = text[:start].rstrip()
    tail = text[found.end() :].rstrip()
    mark = text[start - 1 : start]
    if mark in ("_", "*") and tail.endswith(mark):  # in italics: "_(Dependencies: [1])_"
        title, tail = title[:-1].rstrip(), tail.rstrip(mark)
    if not tail.endswith(")"):
        if tail.count("[") > tail.count("]"):
            return title, (), "malformed dependency list: unclosed bracket"
        return title, (), "malformed dependency list: missing ')'"
    dependencies, error = parse_dependencies(tail[:-1])
    return title, dependencies, error


def may_name_dependencies(text: str) -> bool:
    """Whether ``text`` holds a word that starts dependencies in prose (a quick test: a
    case-insensitive regex search costs several times more, on every task line)."""
    lowered = text.lower()
    # "dep" first: one search rules out both "depend" and "deps" in the usual title.
    if "dep" in lowered and ("depend" in lowered or "deps" in lowered):
        return True
    return "blocked" in lowered or "requires" in lowered


def _split_prose(text: str) -> tuple[str, tuple[str, ...], str | None]:
    title = text.rstrip()
    if not may_name_dependencies(title):
        return title, (), None
    ids: list[str] = []
    last = len(title.rstrip(" \t."))  # a statement ending here ends the title
    for found in _PROSE_PAREN_RE.finditer(title):
        ids.extend(ID_RE.findall(found.group("ids")))
        if found.end() >= last:
            title = title[: found.start()].rstrip()
            break
    tail = _PROSE_TAIL_RE.search(title)
    if tail is not None and title[: tail.start()].strip():
        ids.extend(ID_RE.findall(tail.group("ids")))
        title = title[: tail.start()].rstrip()
    return title, tuple(dict.fromkeys(ids)), None


def line_dependencies(text: str) -> tuple[str, ...] | None:
    """The ids of a line that only states dependencies (``Depends on: 2``, ``_Requires:
    1.2_``, ``Blocked by 4``; ``()`` for ``Depends on: none``), else None."""
    start = text.lstrip(" \t_*")[:1]
    if not start or start not in "dDbBrR" or not may_name_dependencies(text):
        return None
    found = _DEPS_LINE_RE.fullmatch(text.strip())
    if found is None:
        return None
    return tuple(dict.fromkeys(ID_RE.findall(found.group("ids"))))


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
    ids: dict[str, None] = {}  # in order, each once (a set test: lists can be long)
    for part in parts:
        match = _DEP_ITEM_RE.fullmatch(part)
        if match is None:
            return (), f"malformed dependency list: {part!r} is not a task id"
        ids[match.group(2)] = None
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
