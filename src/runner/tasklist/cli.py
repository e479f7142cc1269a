"""``devteam tasks``: read, check and edit a task list from the command line.

FILE may be the task list or a directory holding ``tasks_list.md`` / ``task_lists.md``.
Exit codes: 0 done, 1 the list is broken (or holds no task) or the request does not fit
it, 2 the file cannot be found or read. Errors are one clear line each, never a traceback.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from runner.tasklist.document import TaskList
from runner.tasklist.find import TASK_LIST_NAMES, find_task_list
from runner.tasklist.model import Task, TaskListError, TaskStatus
from runner.tasklist.select import select_next

app = typer.Typer(
    name="tasks",
    help="Read, check and edit a task list (tasks_list.md).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

FileArgument = Annotated[
    Path, typer.Argument(help="The task list, or a directory holding tasks_list.md.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
_MARKS = {TaskStatus.PENDING: "[ ]", TaskStatus.DONE: "[x]",
          TaskStatus.IN_PROGRESS: "[~]", TaskStatus.BLOCKED: "[!]"}
_STATUS_NAMES = {"pending": TaskStatus.PENDING, "in_progress": TaskStatus.IN_PROGRESS,
                 "done": TaskStatus.DONE, "completed": TaskStatus.DONE,
                 "blocked": TaskStatus.BLOCKED}


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _locate(path: Path) -> Path:
    if path.is_dir():
        found = find_task_list(path)
        if found is None:
            _fail(f"no {' or '.join(TASK_LIST_NAMES)} in {path}", 2)
        return found
    if not path.is_file():
        _fail(f"{path} does not exist", 2)
    return path


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        _fail(f"{path} is not UTF-8 text", 2)
    except OSError as error:
        _fail(f"cannot read {path}: {error.strerror}", 2)


def _load(file: Path, *, report: bool = False) -> tuple[Path, TaskList]:
    """The list at ``file``; a broken one prints ``FILE:LINE: problem`` lines and exits 1
    (on stdout when the problems are the report asked for, else on stderr)."""
    path = _locate(file)
    try:
        return path, TaskList.parse(_read(path), source=str(path))
    except TaskListError as error:
        for problem in error.problems:
            typer.echo(f"{path}:{problem.line}: {problem.message}", err=not report)
        raise typer.Exit(1) from None


def _echo_json(value: object) -> None:
    typer.echo(json.dumps(value, ensure_ascii=False, indent=2))


def _line(tasks: TaskList, task: Task) -> str:
    depth, parent = 0, task.parent
    while parent is not None:
        depth, parent = depth + 1, tasks.get(parent).parent
    return f"{'  ' * depth}{_MARKS[task.status]} {task.id} {task.title}"


@app.command("list")
def list_tasks(file: FileArgument, as_json: JsonOption = False) -> None:
    """Print every task in file order (with --json: {"tasks": [Task Definition, ...]})."""
    _, tasks = _load(file)
    if as_json:
        _echo_json({"tasks": [task.to_wire() for task in tasks.tasks]})
        return
    for task in tasks.tasks:
        typer.echo(_line(tasks, task))
    done, total = tasks.progress()
    typer.echo(f"{done}/{total} tasks done")


@app.command("next")
def next_task(file: FileArgument, as_json: JsonOption = False) -> None:
    """Print the next ready task (its Task Definition with --json, or null)."""
    _, tasks = _load(file)
    task = select_next(tasks)
    if as_json:
        _echo_json(task.to_wire() if task is not None else None)
    elif task is not None:
        typer.echo(f"{task.id} {task.title}")
    else:
        done, total = tasks.progress()
        typer.echo("all tasks are done" if done == total
                   else f"no task is ready ({done}/{total} done; the rest wait or are blocked)")


EXPECTED_FORM = ("expected lines like '- [ ] 1.1 Add a health endpoint (Dependencies: [])' "
                 "under a heading such as '## Phase 1: Core' (see the README)")


@app.command("validate")
def validate(file: FileArgument) -> None:
    """Check the list; print FILE:LINE: problem lines and exit 1 when it is broken.

    A list in which no task is found fails too: the service would refuse it.
    """
    path, tasks = _load(file, report=True)
    if not tasks.leaves():
        typer.echo(f"{path}: no tasks: {EXPECTED_FORM}")
        raise typer.Exit(1)
    generated = tasks.generated_ids()
    note = (f" ({len(generated)} without an id in the file: "
            "'devteam tasks normalize' writes them in)") if generated else ""
    typer.echo(f"valid: {len(tasks.tasks)} tasks{note}")


@app.command("normalize")
def normalize(
    file: FileArgument,
    check: Annotated[bool, typer.Option(
        "--check", help="Only list the items without an id; exit 1 when there are some.")
    ] = False,
) -> None:
    """Write the ids the reader gives unnumbered checkboxes into the file (in place).

    Every id stays what it was; only the items without one change. The service itself
    never writes them in.
    """
    path, tasks = _load(file)
    try:
        updated = tasks.with_ids_written()
    except ValueError as error:
        _fail(str(error), 1)
    kept = updated.generated_ids()  # inside completed comment blocks: left as they are
    written = [task_id for task_id in tasks.generated_ids() if task_id not in set(kept)]
    note = f" ({len(kept)} inside completed comment blocks left as they are)" if kept else ""
    if not written:
        typer.echo(f"every task has its id in the file{note}")
        return
    if check:
        for task_id in written:
            task = tasks.get(task_id)
            typer.echo(f"{path}:{task.line}: {task.title!r} has no id (reads as {task_id})")
        raise typer.Exit(1)
    _write_atomically(path, updated.render())
    typer.echo(f"wrote {len(written)} ids: {', '.join(written)}{note}")


@app.command("set-status")
def set_status(
    file: FileArgument,
    task_id: Annotated[str, typer.Argument(metavar="ID", help="The task id, e.g. 1.2.3.")],
    status: Annotated[str, typer.Argument(
        metavar="STATUS", help="pending, in_progress, done (or completed), blocked.")],
) -> None:
    """Set a leaf task's status in the file, in place (written atomically)."""
    new_status = _STATUS_NAMES.get(status.strip().lower())
    if new_status is None:
        _fail(f"unknown status {status!r}: use one of pending, in_progress, done, blocked", 1)
    path, tasks = _load(file)
    try:
        old_status = tasks.get(task_id).status
        updated = tasks.with_status(task_id, new_status)
    except KeyError:
        _fail(f"{path}: no task {task_id!r}", 1)
    except ValueError as error:
        _fail(str(error), 1)
    if updated is not tasks:
        _write_atomically(path, updated.render())
    typer.echo(f"{task_id}: {old_status} -> {new_status}")


def _write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so a reader sees the old file or the new, never half."""
    mode = path.stat().st_mode & 0o7777
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(text.encode("utf-8"))
            stream.flush()
            os.fsync(stream.fileno())
        Path(temporary).chmod(mode)
        Path(temporary).replace(path)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        _fail(f"cannot write {path}: {error.strerror}", 2)
