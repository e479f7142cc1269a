"""Scripted model answers the end-to-end tests share."""

from __future__ import annotations

ALWAYS_FAILS = '''[tasks."1.1"]
edit_format = "whole"
fail_attempts = 99

[[tasks."1.1".edits]]
path = "src/calc/basic.py"
content = "def add(a: float, b: float) -> float:\\n    return a + b\\n"

[[tasks."1.1".failing]]
path = "src/calc/basic.py"
content = "def add(a: float, b: float) -> float:\\n    return a - b  # attempt @@attempt@@\\n"

[[tasks."1.1".failing]]
path = "tests/test_basic.py"
content = "from calc.basic import add\\n\\n\\ndef test_add() -> None:\\n    assert add(2, 3) == 5\\n"
'''
"""Task 1.1 of the two-task calculator, never right: every round's change subtracts (each a
little different, so each round reaches VERIFY and fails there)."""
