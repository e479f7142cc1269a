"""The scripted model's script: which edits to answer with, per task id and attempt.

A TOML file, for example::

    [tasks."1.2.3"]
    edit_format = "whole"          # or "diff" (Aider's SEARCH/REPLACE blocks)
    reply = "Added the greeting."  # text before the edits
    fail_attempts = 1              # attempts 1..N answer with `failing` instead
    delay_seconds = 0              # wait before answering (timeouts, cancellation)
    http_status = 200              # or an error status, answered with `reply` as message
    prompt_tokens = 400            # usage reported per reply (default: 100)
    completion_tokens = 120        # (default: a quarter of the reply's characters)

    [[tasks."1.2.3".edits]]
    path = "src/greet.py"
    content = "def greet(name):\\n    return f'Hi {name}'\\n"

    [[tasks."1.2.3".failing]]
    path = "src/greet.py"
    content = "def greet(name):\\n    return None\\n"

In the ``diff`` format an edit has ``search`` and ``replace`` instead of ``content``; an
empty ``search`` creates a new file. A task the script does not know gets a reply without
edits (so the tool reports "no change"). ``@@attempt@@`` in an edit's text stands for the
attempt number, so that the same scripted mistake still changes the file on every retry.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

import msgspec

from runner.errors import ConfigError

EditFormat = Literal["whole", "diff"]
ATTEMPT_MARK = "@@attempt@@"
"""Replaced by the attempt number in an edit's text."""


class ScriptError(ConfigError):
    """The script file is missing, is not TOML, or does not follow the format."""


class Edit(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    path: str
    content: str | None = None
    """``whole`` format: the file's complete new content."""
    search: str | None = None
    """``diff`` format: text to find (empty for a new file)."""
    replace: str | None = None
    """``diff`` format: text to put in its place."""


class TaskScript(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    edit_format: EditFormat = "whole"
    edits: list[Edit] = msgspec.field(default_factory=list)
    failing: list[Edit] = msgspec.field(default_factory=list)
    fail_attempts: int = 0
    reply: str = ""
    delay_seconds: float = 0.0
    http_status: int = 200
    """Answer with this HTTP error instead (``reply`` is the error message): 401, 500..."""
    prompt_tokens: int | None = None
    """``usage.prompt_tokens`` reported with each reply (None: 100); any count TOML holds,
    so that a test can reproduce a server's absurd report."""
    completion_tokens: int | None = None
    """``usage.completion_tokens`` reported with each reply (None: a quarter of its length)."""

    def edits_for(self, attempt: int) -> list[Edit]:
        """The edits answered on ``attempt`` (1-based): ``failing`` up to ``fail_attempts``."""
        return self.failing if attempt <= self.fail_attempts else self.edits


class Script(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    tasks: dict[str, TaskScript] = msgspec.field(default_factory=dict)
    unknown_reply: str = "I have no scripted change for this task, so I changed nothing."
    """What a task the script does not know is answered with (no edits)."""


def parse_script(text: str, *, source: str = "<script>") -> Script:
    """Validate TOML ``text`` into a :class:`Script`; raises :class:`ScriptError` naming
    the file and the offending field."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScriptError(f"{source}: not valid TOML: {exc}") from None
    try:
        script = msgspec.convert(raw, Script)
    except msgspec.ValidationError as exc:
        raise ScriptError(f"{source}: {exc}") from None
    for task_id, task in script.tasks.items():
        _check_task(source, task_id, task)
    return script


def load_script(path: Path) -> Script:
    """Read and validate the script file at ``path``."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScriptError(f"{path}: cannot read the script: {exc.strerror}") from None
    return parse_script(text, source=str(path))


def _check_task(source: str, task_id: str, task: TaskScript) -> None:
    where = f"{source}: task {task_id!r}"
    if task.fail_attempts < 0:
        raise ScriptError(f"{where}: fail_attempts must be >= 0")
    if task.delay_seconds < 0:
        raise ScriptError(f"{where}: delay_seconds must be >= 0")
    if task.http_status != 200 and not 400 <= task.http_status <= 599:
        raise ScriptError(f"{where}: http_status must be 200 or an error status (400-599)")
    for name in ("prompt_tokens", "completion_tokens"):
        value = getattr(task, name)
        if value is not None and value < 0:
            raise ScriptError(f"{where}: {name} must be >= 0")
    for kind, edits in (("edits", task.edits), ("failing", task.failing)):
        for i, edit in enumerate(edits):
            problem = _edit_problem(task.edit_format, edit)
            if problem:
                raise ScriptError(f"{where}: {kind}[{i}] ({edit.path!r}): {problem}")


def _edit_problem(edit_format: EditFormat, edit: Edit) -> str | None:
    if not edit.path.strip() or "\n" in edit.path:
        return "path must be one non-empty line"
    if edit_format == "whole":
        if edit.content is None:
            return "the whole format needs `content`"
        if edit.search is not None or edit.replace is not None:
            return "the whole format takes `content`, not `search`/`replace`"
    else:
        if edit.replace is None:
            return "the diff format needs `replace` (and `search`, empty for a new file)"
        if edit.content is not None:
            return "the diff format takes `search`/`replace`, not `content`"
    return None


def render_reply(task: TaskScript, attempt: int, *, fence: tuple[str, str] = ("```", "```")) -> str:
    """The assistant message for ``task`` on ``attempt``, in Aider's edit format.

    ``fence`` is the one Aider asked for in its system prompt (it avoids fences that
    occur in the files being edited).
    """
    parts = [task.reply.strip() or f"Here is the change (attempt {attempt})."]

    def text(value: str | None) -> str:
        return _lines((value or "").replace(ATTEMPT_MARK, str(attempt)))

    for edit in task.edits_for(attempt):
        if task.edit_format == "whole":
            parts.append(f"{edit.path}\n{fence[0]}\n{text(edit.content)}{fence[1]}")
        else:
            parts.append(
                f"{edit.path}\n{fence[0]}\n<<<<<<< SEARCH\n{text(edit.search)}"
                f"=======\n{text(edit.replace)}>>>>>>> REPLACE\n{fence[1]}"
            )
    return "\n\n".join(parts) + "\n"


def _lines(text: str) -> str:
    """``text`` ending with exactly one newline (or empty)."""
    return text if not text or text.endswith("\n") else text + "\n"
