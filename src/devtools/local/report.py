"""What one execution did, per task, read back from the database after it ended: the
per-task table ``devteam run`` and ``devteam demo`` print, and the fields of the JSON line
``devteam run --json`` ends with.

A task's numbers come from its stage runs (IMPLEMENT rounds, the PREP branch, the last
VERIFY's criteria, whether PUSH landed its merge on the default branch) and from
``Event.task_context.tasks`` (its last recorded status); which tasks there are,
and which were already done, comes from the task list.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from rich.table import Table
from rich.text import Text

from pipeline import executions, history
from pipeline.db import Store
from pipeline.history import StageRunRow
from runner.tasklist import TaskList

SETUP = "SETUP"


@dataclass
class TaskReport:
    """One task as the execution left it."""

    id: str
    status: str = "pending"
    """``done`` (now or already before), ``failed`` (its last round failed), ``in_progress``
    (worked on, not finished), or the task list's own status when untouched."""
    attempts: int = 0
    """IMPLEMENT rounds in this execution (every pass counted)."""
    merged: bool = False
    """Whether this execution pushed the task's change onto the default branch."""
    listed: bool = False
    """Whether the task is in the task list (not an injected one)."""
    branch: str = ""
    checks: str = ""
    """The last VERIFY round's criteria, ``name ✓ actual`` each."""
    seconds: float = 0.0
    touched: bool = field(default=False, repr=False)
    finished: bool = field(default=False, repr=False)

    def wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "attempts": self.attempts,
            "merged": self.merged,
        }


@dataclass(frozen=True)
class SetupReport:
    """The SETUP stage runs of the execution: their seconds summed, and whether every one
    was a cache hit (``cached`` is false when there was none)."""

    seconds: float = 0.0
    cached: bool = False
    runs: int = 0

    def wire(self) -> dict[str, Any]:
        return {"seconds": round(self.seconds, 1), "cached": self.cached}


@dataclass(frozen=True)
class ExecutionReport:
    execution_id: uuid.UUID
    status: str
    pause_reason: str | None
    error: str | None
    """``classification: message`` of the execution's last recorded error, if any."""
    tasks: list[TaskReport]
    setup: SetupReport

    @property
    def completed(self) -> int:
        """Tasks of the task list that are done."""
        return sum(1 for t in self.tasks if t.listed and t.status == "done")

    @property
    def total(self) -> int:
        """Tasks of the task list."""
        return sum(1 for t in self.tasks if t.listed)

    @property
    def attempts(self) -> int:
        return sum(t.attempts for t in self.tasks)

    @property
    def all_done(self) -> bool:
        return self.status == "completed" and self.completed == self.total


async def execution_report(
    store: Store, execution_id: uuid.UUID, listed: TaskList | None
) -> ExecutionReport:
    """Read the execution back. ``listed`` is its task list as it is now (after the run);
    its leaves come first, in file order, then any injected task the execution worked on."""
    async with store.snapshot() as tx:  # one snapshot for the row, its runs and its summaries
        row = await executions.get(tx, execution_id)
        if row is None:
            raise LookupError(f"no execution {execution_id}")
        runs = await history.stage_runs(tx, execution_id)
        summaries = await history.task_summaries(tx, execution_id)
        error = await history.error_line(tx, row.error_id) if row.error_id else None
    return ExecutionReport(
        execution_id=execution_id,
        status=row.status,
        pause_reason=row.pause_reason,
        error=error,
        tasks=task_reports(runs, summaries, listed),
        setup=setup_report(runs),
    )


def task_reports(
    runs: list[StageRunRow], summaries: dict[str, Any], listed: TaskList | None
) -> list[TaskReport]:
    tasks: dict[str, TaskReport] = {}
    for leaf in listed.leaves() if listed is not None else []:
        tasks[leaf.id] = TaskReport(id=leaf.id, status=str(leaf.status), listed=True)
    for run in runs:
        if not run.task_id or run.task_id.startswith("#"):  # execution-level stages
            continue
        task = tasks.setdefault(run.task_id, TaskReport(id=run.task_id))
        _apply(task, run)
    for task in tasks.values():
        summary = summaries.get(task.id)
        summary = summary if isinstance(summary, dict) else {}
        if task.finished:
            task.status = "done"
        elif task.touched:
            # the summary holds the latest pass: "failed" until the task is selected again
            task.status = "failed" if summary.get("status") == "failed" else "in_progress"
    return list(tasks.values())


def _apply(task: TaskReport, run: StageRunRow) -> None:
    task.touched = True
    task.seconds += (run.duration_ms or 0) / 1000
    result = run.result or {}
    if run.stage == "PREP" and result.get("branch"):
        task.branch = str(result["branch"])
    elif run.stage == "IMPLEMENT":
        task.attempts += 1
    elif run.stage == "VERIFY" and isinstance(result.get("results"), dict):
        task.checks = ", ".join(
            f"{name} {'✓' if r.get('passed') else '✗'} {r.get('actual')}"
            for name, r in result["results"].items()
            if isinstance(r, dict)
        )
    elif run.stage == "PUSH" and run.status == "succeeded":
        task.merged = True
    elif run.stage == "DONE" and run.status == "succeeded":
        task.finished = True


def setup_report(runs: list[StageRunRow]) -> SetupReport:
    """Sum the SETUP runs' ``result.seconds`` (their duration when a result lacks it)."""
    setups = [r for r in runs if r.stage == SETUP and r.status not in ("running", "retrying")]
    if not setups:
        return SetupReport()
    seconds = 0.0
    for run in setups:
        value = (run.result or {}).get("seconds")
        if isinstance(value, int | float) and not isinstance(value, bool):
            seconds += float(value)
        else:
            seconds += (run.duration_ms or 0) / 1000
    cached = all((r.result or {}).get("cached") is True for r in setups)
    return SetupReport(seconds=seconds, cached=cached, runs=len(setups))


_STYLES = {"done": "green", "failed": "red", "in_progress": "yellow"}


def task_table(tasks: list[TaskReport], *, title: str = "Per task") -> Table:
    table = Table(
        "task", "status", "attempts", "merged", "branch", "verification (last round)", "seconds",
        title=title,
    )
    for task in tasks:
        table.add_row(
            task.id,
            Text(task.status, style=_STYLES.get(task.status, "")),
            str(task.attempts),
            "yes" if task.merged else "-",
            task.branch,
            task.checks,
            f"{task.seconds:.1f}",
        )
    return table
