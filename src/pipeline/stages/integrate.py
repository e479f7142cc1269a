"""MERGE, PUSH and UPDATE_TASKLIST: land the verified change and record it as done.

Each is safe to run twice: an already merged branch gives no new commit, a ref the remote
already has is not pushed again, and a task already marked done (with its outcome entry
present) gives no new commit.

The outcomes document is the customer's file as much as ours: it is handled as bytes and
only appended to, so whatever it holds (text in another encoding, stray bytes) is kept
as it is and never stops the task from being marked done. It is read with a size limit
(``tasklist_io.MAX_OUTCOMES_BYTES``, checked at INIT too): a larger one is a ``config``
error naming it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pipeline.lifecycle import Stage
from pipeline.outcome import Outcome, StageContext
from pipeline.stages.common import blocking, checkout, current_task
from pipeline.stages.results import Merged, Prepared, Verified, prepared, stage_result
from pipeline.stages.tasklist_io import outcomes_path, read_outcomes, read_task_list
from runner.errors import ConfigError
from runner.tasklist import TaskStatus

OUTCOMES_HEADER = "# Task outcomes\n\nWhat DevTeam Runner completed, newest last.\n"


async def merge(ctx: StageContext) -> Outcome:
    prep = await prepared(ctx)
    co = await checkout(ctx)
    merged = await blocking(ctx.services.git.merge, co, prep.branch)
    how = (
        "already merged"
        if merged.already_merged
        else "fast-forward"
        if merged.fast_forward
        else "merge commit"
    )
    ctx.log.line(f"merged {prep.branch} into {co.default_branch} ({how})")
    return Outcome(
        result=merged.to_dict(),
        next=ctx.then(Stage.PUSH),
        task_summary={"mergeCommit": merged.commit},
    )


async def push(ctx: StageContext) -> Outcome:
    prep = await prepared(ctx)
    co = await checkout(ctx)
    pushed = await blocking(ctx.services.git.push, co, [co.default_branch, prep.branch])
    ctx.log.line(
        f"pushed {', '.join(pushed.pushed) or 'nothing new'}"
        + (f"; already there: {', '.join(pushed.skipped)}" if pushed.skipped else "")
    )
    return Outcome(result=pushed.to_dict(), next=ctx.then(Stage.UPDATE_TASKLIST))


async def update_tasklist(ctx: StageContext) -> Outcome:
    """Mark the task done in the list, append to the outcomes document, commit, push.

    The outcomes document's bytes are kept as they are (it need not be UTF-8); one larger
    than ``MAX_OUTCOMES_BYTES`` is a ConfigError naming it (``read_outcomes``)."""
    task = await current_task(ctx)
    co = await checkout(ctx)
    found = await read_task_list(ctx.services.git, co, ctx.project.get("task_list_path"))
    if found is None:
        raise ConfigError("the task list disappeared from the default branch")
    tasks, path = found
    marked = await _file_task(ctx, task.id)
    files: dict[str, str | bytes] = {}
    if marked is not None and marked in tasks and tasks.get(marked).status is not TaskStatus.DONE:
        files[path] = tasks.with_status(marked, TaskStatus.DONE).render()
    outcomes = outcomes_path(path)
    existing = await read_outcomes(ctx.services.git, co, outcomes) or b""
    marker = f"<!-- devteam:{ctx.execution.id}:{task.id} -->"
    if marker.encode() not in existing:
        entry = await _entry(ctx, task.id, task.title, marker)
        files[outcomes] = (existing or OUTCOMES_HEADER.encode()) + entry.encode()
    commit = None
    if files:
        commit = await blocking(
            ctx.services.git.commit_files,
            co,
            files,
            f"Mark task {task.id} done",
            {"Task-Id": task.id, "Execution-Id": str(ctx.execution.id)},
        )
    pushed = await blocking(ctx.services.git.push, co, [co.default_branch])
    ctx.log.line(
        f"{path}: {marked or task.id} done; {outcomes} updated"
        if files
        else f"{path}: already up to date"
    )
    return Outcome(
        result={
            "taskListPath": path,
            "outcomesPath": outcomes,
            "commit": commit,
            "marked": marked,
            "pushed": pushed.pushed,
        },
        next=ctx.then(Stage.DONE),
        complete_injection=task.id if marked != task.id else None,
    )


async def _file_task(ctx: StageContext, task_id: str) -> str | None:
    """The task-list entry to mark done: the task itself, the one a ``replace`` injection
    stands for, or None for other injected tasks (they live only in the database)."""
    async with ctx.services.store.reads() as q:
        injected = await q.projects.injection(ctx.project["project_id"], task_id)
    if injected is None:
        return task_id
    return injected.replace_task_id if injected.injection_type == "replace" else None


async def _entry(ctx: StageContext, task_id: str, title: str, marker: str) -> str:
    verified = await stage_result(ctx, Stage.VERIFY, Verified) or Verified()
    merged = await stage_result(ctx, Stage.MERGE, Merged) or Merged()
    prep = await stage_result(ctx, Stage.PREP, Prepared)
    checks = (
        ", ".join(
            f"{name} {'passed' if r.passed else 'failed'} ({r.actual})"
            for name, r in verified.results.items()
        )
        or "no machine-checked criteria"
    )
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        # blank lines around the heading and the marker: what Prettier and markdownlint
        # accept, so a project that checks its Markdown is not failed by our file
        f"\n## {task_id} {title}\n\n{marker}\n\n"
        f"- Completed: {when}\n"
        f"- Branch: `{prep.branch if prep is not None else '?'}`\n"
        f"- Merge: `{(merged.commit or '?')[:12]}`\n"
        f"- Verification: {checks}\n"
    )
