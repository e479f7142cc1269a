"""The lines of a task-list file as the parser reads them.

The file is split on ``\\n`` only, so joining the raw lines with ``\\n`` gives the file back
byte for byte (``\\r`` of CRLF files stays at the end of its raw line). The parser reads a
second, *masked* copy of each line in which:

- a trailing ``\\r`` is dropped and a leading byte-order mark is blanked;
- fenced code blocks (```` ``` ```` / ``~~~``) and HTML comments are blanked with spaces, so
  columns of what remains stay those of the raw line;
- a comment followed (next non-blank line) by ``PHASE N COMPLETED`` is *kept*: only its
  delimiters are removed, its lines are marked done, and the marker line is skipped.

Masking is linear in the size of the file, however the comments are laid out: the line
after each comment is found by one forward scan shared by all comments, and a line is
rebuilt once, from all the comments on it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from runner.tasklist.model import Problem

_COMPLETED_MARKER = re.compile(r"\s*phase\s+\d+\s+completed\b", re.IGNORECASE)
_OPEN, _CLOSE = "<!--", "-->"


@dataclass
class SourceLines:
    """Raw lines, masked lines, and which lines a completed comment block covers."""

    raw: list[str]
    text: list[str]
    done_lines: set[int] = field(default_factory=set)
    skip_lines: set[int] = field(default_factory=set)
    problems: list[Problem] = field(default_factory=list)


@dataclass
class _Region:
    start_line: int
    start_col: int
    end_line: int
    end_col: int  # column just after "-->" (the end of the file when never closed)


def read_source(text: str) -> SourceLines:
    """Split ``text`` into raw and masked lines (see the module docstring)."""
    raw = text.split("\n")
    if "\r" in text:
        masked = [line[:-1] if line.endswith("\r") else line for line in raw]
    else:
        masked = list(raw)
    if masked[0].startswith("\ufeff"):
        masked[0] = " " + masked[0][1:]
    source = SourceLines(raw=raw, text=masked)
    if "<!--" not in text and "```" not in text and "~~~" not in text:
        return source
    regions = _comment_regions(masked, source)
    if regions:
        _mask(masked, regions, source)
    return source


def _comment_regions(lines: list[str], source: SourceLines) -> list[_Region]:
    """Find the comments outside code fences; blank the fences themselves."""
    regions: list[_Region] = []
    fence: str | None = None
    current: _Region | None = None
    for index, line in enumerate(lines):
        if current is None:
            stripped = line.lstrip()
            if fence is not None or stripped.startswith(("```", "~~~")):
                if fence is None:
                    fence = stripped[:3]
                elif stripped.startswith(fence):
                    fence = None
                lines[index] = " " * len(line)
                continue
            if _OPEN not in line:
                continue
        position = 0
        while True:
            if current is None:
                found = line.find(_OPEN, position)
                if found < 0:
                    break
                current = _Region(index, found, -1, -1)
                position = found + len(_OPEN)
            else:
                found = line.find(_CLOSE, position)
                if found < 0:
                    break
                current.end_line, current.end_col = index, found + len(_CLOSE)
                regions.append(current)
                current = None
                position = found + len(_CLOSE)
    if current is not None:
        source.problems.append(
            Problem(current.start_line + 1, "comment '<!--' is never closed with '-->'")
        )
        current.end_line, current.end_col = len(lines) - 1, len(lines[-1])
        regions.append(current)
    return regions


_BLANK, _OPEN_KEPT, _CLOSE_KEPT = 0, 1, 2  # edits: blank a span; drop a kept delimiter
_Edit = tuple[int, int, int]  # kind, start column, end column


def _mask(lines: list[str], regions: list[_Region], source: SourceLines) -> None:
    """Blank ``regions`` in ``lines``, or keep those a completed marker follows."""
    # Which comments are completed: decided on the lines as they are before any masking
    # (what follows a comment is never changed by the comments before it).
    count = len(lines)
    following = 0  # the first non-blank line after the comment's last line
    completed: list[int | None] = []  # per comment: its marker line, or None
    for region in regions:
        following = max(following, region.end_line + 1)
        while following < count and not lines[following].strip():
            following += 1
        # (A comment never closed runs to the end of the file: nothing follows it.)
        if following < count and _COMPLETED_MARKER.match(lines[following]) is not None:
            completed.append(following)
        else:
            completed.append(None)
    edits: dict[int, list[_Edit]] = {}
    for region, marker in zip(regions, completed, strict=True):
        first, last = region.start_line, region.end_line
        if marker is None:
            end = region.end_col if first == last else len(lines[first])
            edits.setdefault(first, []).append((_BLANK, region.start_col, end))
            for index in range(first + 1, last):
                lines[index] = " " * len(lines[index])
            if last > first:
                edits.setdefault(last, []).append((_BLANK, 0, region.end_col))
            continue
        opening = region.start_col
        edits.setdefault(first, []).append((_OPEN_KEPT, opening, opening + len(_OPEN)))
        edits.setdefault(last, []).append(
            (_CLOSE_KEPT, region.end_col - len(_CLOSE), region.end_col))
        source.done_lines.update(range(first + 1, last + 1))
        source.skip_lines.add(marker)
    for index, line_edits in edits.items():
        lines[index], opens_line = _edited(lines[index], line_edits)
        if opens_line:
            source.done_lines.add(index)


def _edited(line: str, edits: list[_Edit]) -> tuple[str, bool]:
    """``line`` with ``edits`` (in column order) made, and whether a kept comment opens it.

    A blanked span and a kept comment's delimiters become spaces, so columns stay those of
    the raw line; but a kept comment with only blanks before it on its first line starts
    that line: what comes before it, its ``<!--`` and the blanks after are dropped (then
    the line is one of the comment's, marked done; otherwise it is not).
    """
    pieces: list[str] = []
    cursor = 0
    has_text = opens_line = False
    for kind, start, end in edits:
        kept = line[cursor:start]
        if kept:
            pieces.append(kept)
            has_text = has_text or not kept.isspace()
        cursor = end
        if kind == _OPEN_KEPT and not has_text:
            pieces.clear()
            opens_line = True
        else:
            pieces.append(" " * (end - start))
    pieces.append(line[cursor:])
    text = "".join(pieces)
    return (text.lstrip(" \t") if opens_line else text), opens_line
