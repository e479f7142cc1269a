"""Reading the project's task list from the default branch, and its injected tasks."""

from __future__ import annotations

import contextlib
import posixpath
from collections.abc import Iterator

from pipeline.db import Store
from pipeline.stages.common import blocking, task_from_wire
from runner.errors import ConfigError
from runner.git import Checkout, GitWorkspace
from runner.tasklist import TASK_LIST_NAMES, Injection, TaskList, TaskListError
from runner.verify.guard import OUTCOMES_NAME

TEMPLATE = """# Task list

Tasks for DevTeam Runner, one per line, in any of these forms (see the README):

<!--
## Example

- [ ] 1.1 Add a health endpoint (Dependencies: [])
  • files: src/app.py, tests/test_app.py
  • test.coverage: ≥80%
- [ ] 1.2 Document the endpoint (Dependencies: [1.1])
  • doc.updated: README.md
-->
"""


OUTCOMES_FILE = OUTCOMES_NAME
"""What the service completed, kept beside the task list (UPDATE_TASKLIST appends to it)."""


def outcomes_path(task_list_path: str) -> str:
    """``task_outcomes.md`` in the task list's directory."""
    return posixpath.join(posixpath.dirname(task_list_path), OUTCOMES_FILE)


MAX_OUTCOMES_BYTES = 8 * 1024 * 1024
"""The largest outcomes document UPDATE_TASKLIST reads and rewrites (an entry is a few
hundred bytes: tens of thousands of tasks); a larger one must be trimmed by hand."""


async def read_outcomes(git: GitWorkspace, checkout: Checkout, path: str) -> bytes | None:
    """The outcomes document's bytes at the tip of the default branch (None: absent). One
    over ``MAX_OUTCOMES_BYTES`` is a ConfigError naming it and what to do."""
    with _outcomes_limit(path):
        return await blocking(git.read_file, checkout, path, limit=MAX_OUTCOMES_BYTES)


async def check_outcomes(git: GitWorkspace, checkout: Checkout, path: str) -> None:
    """``read_outcomes``' size check alone, without reading the file: INIT runs it before
    any task's work, so no task is merged that could not then be marked done."""
    with _outcomes_limit(path):
        await blocking(git.check_size, checkout, path, MAX_OUTCOMES_BYTES)


@contextlib.contextmanager
def _outcomes_limit(path: str) -> Iterator[None]:
    try:
        yield
    except ConfigError as exc:
        raise ConfigError(
            f"{path} is larger than {MAX_OUTCOMES_BYTES} bytes: a task's outcome could not "
            "be recorded in it; trim it by hand (older entries can go: the task list keeps "
            "what is done)", details={**exc.details, "limit": MAX_OUTCOMES_BYTES}) from exc


MAX_TASK_LIST_BYTES = 1024 * 1024
"""A task list larger than this is refused (``config``): a real one is tens of kilobytes,
and parsing tens of megabytes would hold a worker (or the gateway) for minutes."""


def problems_text(exc: TaskListError, path: str) -> list[str]:
    return [f"{path}:{p.line}: {p.message}" for p in exc.problems]


async def read_task_list(
    git: GitWorkspace, checkout: Checkout, configured: str | None
) -> tuple[TaskList, str] | None:
    """The task list at the tip of the default branch and its path; None when absent.

    Raises ConfigError (with every problem and its line number) when it does not parse.
    """
    for name in [configured] if configured else list(TASK_LIST_NAMES):
        data = await blocking(git.read_file, checkout, name)
        if data is None:
            continue
        if len(data) > MAX_TASK_LIST_BYTES:
            raise ConfigError(
                f"{name} is larger than {MAX_TASK_LIST_BYTES} bytes; split the task list",
                details={"path": name, "bytes": len(data)},
            )
        try:
            return await blocking(TaskList.parse, data.decode("utf-8"), source=name), name
        except UnicodeDecodeError:
            raise ConfigError(f"{name} is not UTF-8 text", details={"path": name}) from None
        except TaskListError as exc:
            problems = problems_text(exc, name)
            raise ConfigError(
                f"{name} is not a valid task list: " + "; ".join(problems[:5]),
                details={"path": name, "problems": problems},
            ) from None
    return None


async def injections(store: Store, project_id: str) -> list[Injection]:
    """The project's injected tasks, oldest first (done ones too: they count as done)."""
    async with store.reads() as q:
        rows = await q.projects.injections(project_id)
    return [
        Injection(
            task=task_from_wire({**row.task, "id": row.task_id}),
            injection_type=row.injection_type,
            position=row.position,
            replace_task_id=row.replace_task_id,
            done=row.status != "pending",
        )
        for row in rows
    ]


async def injected_progress(store: Store, project_id: str) -> tuple[int, int]:
    """``(done, total)`` of the injected tasks that add work (not ``replace`` ones): only a
    task that was completed is done, and one that failed for good or was set aside after
    review is not counted at all (it is no progress, and no work left either)."""
    async with store.reads() as q:
        return await q.projects.injected_progress(project_id)

