"""The coding tool's prompt: complete, deterministic, and trimmed on retries."""

from __future__ import annotations

from pathlib import Path

from runner.ports import ImplementRequest
from runner.prompt import FEEDBACK_LIMIT, build_prompt, trim_output
from runner.redact import Redactor


def _request(**overrides: object) -> ImplementRequest:
    fields: dict[str, object] = {
        "workdir": Path("/tmp/wc"),
        "task_id": "1.2.3",
        "title": "Add the greeting module",
        "description": "Write `greet(name)`.\n\nIt returns a friendly string.",
        "files": ["src/greet.py", "tests/test_greet.py"],
        "criteria": {"test.coverage": "≥80%", "type.strict": "0 errors"},
        "notes": ["The README mentions greet()"],
    }
    fields.update(overrides)
    return ImplementRequest(**fields)  # type: ignore[arg-type]


def test_given_a_task_when_prompted_then_it_starts_with_the_id_and_attempt_lines() -> None:
    text = build_prompt(_request(attempt=3))
    assert text.splitlines()[:2] == ["Task-Id: 1.2.3", "Attempt: 3"]


def test_given_a_task_when_prompted_then_every_part_of_the_task_is_in_the_text() -> None:
    text = build_prompt(_request())
    for expected in (
        "# Task 1.2.3: Add the greeting module",
        "Write `greet(name)`.\n\nIt returns a friendly string.",
        "- src/greet.py\n- tests/test_greet.py",
        "- test.coverage: ≥80%\n- type.strict: 0 errors",
        "- The README mentions greet()",
        "Do not run shell commands",
        "create any that do not exist yet",
    ):
        assert expected in text
    assert "Previous attempt failed" not in text


def test_given_equal_requests_when_prompted_twice_then_the_texts_are_identical() -> None:
    assert build_prompt(_request()) == build_prompt(_request())
    assert build_prompt(_request(attempt=2, feedback="boom")) == build_prompt(
        _request(attempt=2, feedback="boom")
    )


def test_given_a_task_without_files_when_prompted_then_it_says_so() -> None:
    text = build_prompt(_request(files=[], criteria={}, notes=[], description=""))
    assert "No files are listed" in text
    assert "## Acceptance criteria" not in text
    assert "## Notes" not in text
    assert "## Description" not in text


def test_given_long_failing_output_when_retrying_then_head_and_tail_are_kept_under_limit() -> None:
    lines = [f"line {i:05d} {'x' * 40}" for i in range(2000)]
    output = "FIRST ERROR: ImportError\n" + "\n".join(lines) + "\nSUMMARY: 3 failed"

    text = build_prompt(_request(attempt=2, feedback=output))

    section = text.split("## Previous attempt failed verification\n", 1)[1].split("## Rules")[0]
    assert "Attempt 1 did not pass verification" in section
    assert "FIRST ERROR: ImportError" in section
    assert "SUMMARY: 3 failed" in section
    assert "characters omitted" in section
    assert "line 01000" not in section
    assert len(section) < FEEDBACK_LIMIT + 300


def test_given_output_with_backticks_when_retrying_then_the_fence_is_longer_than_any_run() -> None:
    text = build_prompt(_request(attempt=2, feedback="```python\nboom\n````"))
    assert "\n`````\n```python\nboom\n````\n`````\n" in text


def test_given_secrets_in_the_feedback_when_prompted_with_a_redactor_then_they_are_gone() -> None:
    feedback = "connect https://ci:Pa55w0rd-77@db.internal failed; key=model-secret-1"
    text = build_prompt(
        _request(attempt=2, feedback=feedback), redactor=Redactor(["model-secret-1"])
    )
    assert "Pa55w0rd-77" not in text
    assert "model-secret-1" not in text


def test_given_short_output_when_trimmed_then_it_is_unchanged() -> None:
    assert trim_output("one\ntwo\n") == "one\ntwo"
    assert trim_output("a" * 50, limit=50) == "a" * 50


def test_given_newlines_in_id_or_title_when_prompted_then_the_header_stays_two_lines() -> None:
    text = build_prompt(_request(task_id="9.9\nAttempt: 7", title="Two\nlines"))
    assert text.splitlines()[:3] == ["Task-Id: 9.9 Attempt: 7", "Attempt: 1", ""]
