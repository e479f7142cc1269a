"""Finding a project's task list in its working copy."""

from __future__ import annotations

from pathlib import Path

TASK_LIST_NAMES = ("tasks_list.md", "task_lists.md")
# Where lists are kept when not at the top (the Clarity template keeps it in ai_docs/tasks).
_FOLDERS = ("", "ai_docs/tasks", "docs", "tasks")


def find_task_list(directory: Path, configured: str | None = None) -> Path | None:
    """The task list of the repository checked out at ``directory``, or None.

    With ``configured`` (the project's task-list path, relative to the repository) only that
    file is considered; ``ValueError`` when it is absolute or leads outside ``directory``.
    Without it: ``tasks_list.md`` then ``task_lists.md``, at the top, then in
    ``ai_docs/tasks``, ``docs`` and ``tasks``.
    """
    root = directory.resolve()
    if configured is not None:
        relative = Path(configured)
        if relative.is_absolute() or ".." in relative.parts or not configured.strip():
            raise ValueError(f"task list path {configured!r} must be relative to the repository")
        candidate = (root / relative).resolve()
        if not candidate.is_relative_to(root):
            raise ValueError(f"task list path {configured!r} leads outside the repository")
        return candidate if candidate.is_file() else None
    for folder in _FOLDERS:
        for name in TASK_LIST_NAMES:
            candidate = root / folder / name
            if candidate.is_file():
                resolved = candidate.resolve()
                if resolved.is_relative_to(root):
                    return candidate
    return None
