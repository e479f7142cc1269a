"""The message the coding tool receives for one IMPLEMENT round.

Deterministic: the same request gives byte-identical text, so a retry differs from the
first round only by its attempt number and the verification feedback. The first two
lines, ``Task-Id: <id>`` and ``Attempt: <n>``, are what the scripted model keys its
replies on; a real model reads them as plain context.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from runner.ports import ImplementRequest
from runner.redact import Redactor

FEEDBACK_LIMIT = 4000
"""Most characters of verification output put into a retry prompt (head and tail kept)."""

RULES = (
    "Do not edit files other than those the task needs, and never write outside the repository.",
    "Do not run shell commands and do not suggest any.",
    "Keep the existing style of the code; make the smallest change that does the task.",
)


def trim_output(text: str, limit: int = FEEDBACK_LIMIT) -> str:
    """``text`` cut to about ``limit`` characters, keeping its head and its tail.

    Failures show their cause at the top (the first error) and their summary at the bottom,
    so the middle goes. Cuts fall on line boundaries where possible.
    """
    text = text.strip("\n")
    if len(text) <= limit:
        return text
    head_budget = limit // 3
    tail_budget = limit - head_budget
    head = text[:head_budget]
    if "\n" in head:
        head = head[: head.rindex("\n")]
    tail = text[-tail_budget:]
    if "\n" in tail:
        tail = tail[tail.index("\n") + 1 :]
    omitted = len(text) - len(head) - len(tail)
    return f"{head}\n[... {omitted} characters omitted ...]\n{tail}"


def build_prompt(request: ImplementRequest, *, redactor: Redactor | None = None) -> str:
    """The full instruction text for ``request``; secrets in it are redacted if a redactor
    is given (the prompt goes to the model provider, which must not see them either)."""
    sections = [
        f"Task-Id: {_one_line(request.task_id)}\nAttempt: {request.attempt}",
        f"# Task {_one_line(request.task_id)}: {_one_line(request.title)}",
    ]
    if request.description.strip():
        sections.append("## Description\n" + _block(request.description))
    sections.append("## Files\n" + _files(request.files))
    if request.criteria:
        criteria = (f"{name}: {req}" for name, req in request.criteria.items())
        sections.append(
            "## Acceptance criteria\nThe change is verified automatically against:\n"
            + _bullets(criteria)
        )
    if request.notes:
        sections.append("## Notes\n" + _bullets(request.notes))
    if request.feedback and request.feedback.strip():
        output = trim_output(request.feedback)
        fence = _fence_for(output)
        sections.append(
            f"## Previous attempt failed verification\n"
            f"Attempt {request.attempt - 1} did not pass verification. Fix the cause of "
            f"these failures:\n{fence}\n{output}\n{fence}"
        )
    sections.append("## Rules\n" + _bullets(RULES))
    text = "\n\n".join(sections) + "\n"
    return redactor.redact(text) if redactor is not None else text


def _files(files: Iterable[str]) -> str:
    listed = [_one_line(f) for f in files]
    if not listed:
        return "No files are listed: change as few files as the task needs."
    return "Change only these files (create any that do not exist yet):\n" + _bullets(listed)


def _bullets(items: Iterable[str]) -> str:
    return "\n".join(f"- {_one_line(item)}" for item in items)


def _block(text: str) -> str:
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").strip("\n").split("\n")]
    return "\n".join(lines)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _fence_for(text: str) -> str:
    """A backtick fence longer than any backtick run inside ``text``."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)
