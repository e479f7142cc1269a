"""The lines of a task-list file as the parser reads them.

The file is split on ``\\n`` only, so joining the raw lines with ``\\n`` gives the file back
byte for byte (``\\r`` of CRLF files stays at the end of its raw line). The parser reads a
second, *masked* copy of each line in which:

- a trailing ``\\r`` is dropped and a leading byte-order mark is blanked;
- fenced code blocks (```` ``` ```` / ``~~~``) and HTML comments are blanked with spaces, so
  columns of what remains stay those of the raw line;
- a comment followed (next non-blank line) by ``PHASE N COMPLETED`` is *kept*: only its
  delimiters are removed, its lines are marked done, and the marker line is skipped.
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
    end_col: int  # column just after "-->"; -1 when the comment is never closed


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
    for region in regions:
        if _is_completed(masked, region):
            _keep_completed(masked, region, source)
        else:
            _blank(masked, region)
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


def _is_completed(lines: list[str], region: _Region) -> bool:
    if region.end_col < 0:
        return False
    for line in lines[region.end_line + 1 :]:
        if line.strip():
            return _COMPLETED_MARKER.match(line) is not None
    return False


def _blank(lines: list[str], region: _Region) -> None:
    for index in range(region.start_line, region.end_line + 1):
        line = lines[index]
        start = region.start_col if index == region.start_line else 0
        end = region.end_col if index == region.end_line else len(line)
        lines[index] = line[:start] + " " * (end - start) + line[end:]


def _keep_completed(lines: list[str], region: _Region, source: SourceLines) -> None:
    """Drop the delimiters of a completed block; mark its lines done and skip its marker."""
    first, last = region.start_line, region.end_line
    close_at = region.end_col - len(_CLOSE)
    closing = lines[last]
    lines[last] = closing[:close_at] + "   " + closing[region.end_col :]
    opening = lines[first]
    before = opening[: region.start_col]
    after = opening[region.start_col + len(_OPEN) :]
    if before.strip():
        lines[first] = before + "    " + after
        first += 1
    else:
        lines[first] = after.lstrip(" \t")
    source.done_lines.update(range(first, last + 1))
    for index in range(last + 1, len(lines)):
        if lines[index].strip():
            source.skip_lines.add(index)
            break
