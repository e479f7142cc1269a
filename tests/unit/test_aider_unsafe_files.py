"""Task file names the coding tool is never given: ``unsafe_files`` refuses them all, and
never raises (a NUL byte made ``resolve`` raise ValueError: a 500 on ``POST /implement``)."""

from __future__ import annotations

from pathlib import Path

from runner.aider import unsafe_files


def test_given_a_name_with_a_nul_byte_then_it_is_refused_not_raised(tmp_path: Path) -> None:
    names = ["src/ok.py", "src/a\x00b.py", "\x00"]

    assert unsafe_files(tmp_path, names) == ["src/a\x00b.py", "\x00"]


def test_given_ordinary_and_escaping_names_then_only_the_escaping_ones_are_refused(
    tmp_path: Path,
) -> None:
    names = ["README.md", "src/new/module.py", "../x", "/etc/passwd", ".git/config", ""]

    assert unsafe_files(tmp_path, names) == ["../x", "/etc/passwd", ".git/config", ""]
