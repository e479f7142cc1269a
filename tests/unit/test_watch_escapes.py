"""``devteam watch`` shows control characters from a frame as escapes: a log line cannot
erase the operator's screen (``ESC[2K``), write their clipboard (OSC 52), ring the bell or
fake a line of its own, in plain mode or in the live view."""

from __future__ import annotations

import io

from rich.console import Console

from gateway.watch import Output, WatchState, render, visible

HOSTILE = "ok\x1b[2K\r\x1b[1Afake\x1b]52;c;cm0gLXJmIH4=\x07\nacme/web #9 completed"
SHOWN = ("ok\\x1b[2K\\x0d\\x1b[1Afake\\x1b]52;c;cm0gLXJmIH4=\\x07\\x0aacme/web #9 completed")


def _frames() -> list[dict]:
    base = {"customerId": "acme", "projectId": "acme/web", "executionId": "e1",
            "ts": "2026-01-01T00:00:00.000Z"}
    return [
        {**base, "id": "1", "seq": 1, "type": "execution-update", "payload": {
            "status": "running", "stage": "IMPLEMENT", "taskId": "1.1\x1b[31m",
            "branch": "[red]b\x9b2J", "progress": 10}},
        {**base, "id": "2", "seq": 2, "type": "execution-log", "payload": {
            "level": "info", "stage": "IMPLEMENT", "taskId": "1.1", "lines": [HOSTILE]}},
        {**base, "id": "3", "seq": 3, "type": "error", "payload": {
            "stage": "IMPLEMENT", "classification": "tool", "message": "\x1b]0;title\x07x"}},
    ]


def _raw_controls(text: str) -> set[str]:
    return {c for c in text if (ord(c) < 0x20 and c != "\n") or 0x7f <= ord(c) <= 0x9f}


def test_plain_mode_prints_escapes_and_no_control_character() -> None:
    state = WatchState()
    file = io.StringIO()
    out = Output(Console(file=file, force_terminal=False), state, live=False)
    for frame in _frames():
        out.lines(state.apply(frame))
    out.notice("closed: \x1b[2Kbye\x07")

    printed = file.getvalue()
    assert _raw_controls(printed) == set()
    lines = printed.splitlines()
    assert len(lines) == 4  # the newline in the log line made no line of its own
    assert lines[1] == f"acme/web #2 info IMPLEMENT 1.1 | {SHOWN}"
    assert lines[2] == "acme/web #3 ERROR IMPLEMENT tool: \\x1b]0;title\\x07x"
    assert lines[3] == "# closed: \\x1b[2Kbye\\x07"


def test_the_live_view_on_a_terminal_draws_no_control_sequence_of_the_frames() -> None:
    state = WatchState()
    for frame in _frames():
        state.apply(frame)
    file = io.StringIO()
    console = Console(file=file, force_terminal=True, color_system="truecolor", width=400)

    console.print(render(state, "connected\x1b]52;c;eA==\x07"))

    drawn = file.getvalue()
    # rich styles with SGR (ESC[...m) only; nothing else the frames carried gets through
    assert "\x07" not in drawn and "\x1b]" not in drawn and "\x1b[2K" not in drawn
    assert "\x1b[1A" not in drawn and "\x9b" not in drawn and "\x1b[31m" not in drawn
    assert "\\x1b[2K" in drawn and "\\x1b]52;c;cm0gLXJmIH4=\\x07" in drawn
    assert "[red]b\\x9b2J" in drawn  # shown as written, not taken for markup
    assert "1.1\\x1b[31m" in drawn


def test_visible_leaves_text_and_escapes_every_control_character() -> None:
    assert visible("plain é 中文") == "plain é 中文"
    assert visible("\x00\t\n\x1b\x7f\x85") == "\\x00\\x09\\x0a\\x1b\\x7f\\x85"


def test_visible_escapes_bidirectional_overrides() -> None:
    # "done.txt\u202egnp.exe" would show as "done.txtexe.png": the override reorders the rest
    assert visible("done.txt\u202egnp.exe") == "done.txt\\u202egnp.exe"
    assert visible("\u200e\u200f\u202a\u2066\u2069 עברית") == (
        "\\u200e\\u200f\\u202a\\u2066\\u2069 עברית")
