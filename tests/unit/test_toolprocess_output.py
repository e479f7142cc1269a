"""A tool's output is made printable before anyone sees it: control characters (NUL, which
Postgres refuses; ESC and BEL, which a terminal obeys) become U+FFFD, TAB stays."""

from __future__ import annotations

from pathlib import Path

from runner.redact import Redactor
from runner.toolprocess import ToolProcess, printable


def test_given_a_tool_printing_nul_and_escapes_then_sink_and_output_hold_u_fffd(
    tmp_path: Path,
) -> None:
    # Given a real process printing NUL, ESC[2K, an OSC 52 clipboard write, TAB and DEL
    script = r"printf 'a\000b\tc\033[2Kd\n\033]52;c;aGk=\007\177e\n'"
    got: list[str] = []
    proc = ToolProcess(["/bin/sh", "-c", script], {"PATH": "/usr/bin:/bin"}, tmp_path,
                       Redactor(), on_line=got.append)

    # When it ends
    proc.wait(30, None)

    # Then the sink saw each control character (but TAB) as U+FFFD, and so does the output
    want = ["a\ufffdb\tc\ufffd[2Kd", "\ufffd]52;c;aGk=\ufffd\ufffde"]
    assert proc.returncode == 0
    assert got == want
    assert proc.output() == "\n".join(want)


def test_printable_keeps_text_and_tab_and_replaces_c0_del_and_c1() -> None:
    assert printable("plain é 中文 \t tab") == "plain é 中文 \t tab"
    assert printable("\x00\x01\x08\x0b\x0c\x1b\x1f\x7f\x85\x9b") == "\ufffd" * 10
    assert printable("\xa0nbsp") == "\xa0nbsp"
