"""PREP, IMPLEMENT and VERIFY: a branch and a container, the change, and its proof
(SETUP, between PREP and IMPLEMENT, is in ``setup.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from pipeline.lifecycle import PauseReason, Stage, StageStatus
from pipeline.outcome import Outcome, StageContext
from pipeline.stages.baseline import base_config, floor
from pipeline.stages.common import (
    blocking,
    checkout,
    current_task,
    drop_task_containers,
    next_select,
    result_of,
)
from pipeline.stages.results import (
    Implemented,
    Prepared,
    PrepArtifacts,
    Verified,
    prepared,
    stage_result,
)
from pipeline.stages.rounds import failed_round, fresh_branch
from pipeline.stages.setup import (
    RESETUP_ATTEMPT,
    environment,
    environment_pause,
    recorded,
    trusted_plan,
)
from pipeline.stages.tasklist_io import outcomes_path
from pipeline.usage import containers_usage, round_usage
from runner.errors import (
    CancelledError,
    Classification,
    EnvironmentFailure,
    InfrastructureError,
    RunnerError,
)
from runner.git import Checkout
from runner.ports import ContainerSpec, ImplementRequest
from runner.sandbox import classify
from runner.setup import SetupResult, nothing_to_install
from runner.tasklist import Task
from runner.verify.environment import environment_problem, project_modules
from runner.verify.guard import (
    measures_of,
    patch_of,
    protected_changes,
    split_patterns,
    weakening,
)


def _spec(ctx: StageContext, attempt: int) -> ContainerSpec:
    return ctx.services.container_spec(
        project=ctx.project,
        execution_id=str(ctx.execution.id),
        task_id=ctx.task_id,
        attempt=attempt,
    )


async def prep(ctx: StageContext) -> Outcome:
    """Branch ``task/<id>-<title>`` from the up-to-date default branch; start the task's
    container and check its health."""
    task = await current_task(ctx)
    co = await blocking(ctx.services.git.refresh, await checkout(ctx))
    branch = await blocking(ctx.services.git.create_task_branch, co, task.id, task.title)
    ctx.log.line(
        f"branch {branch.branch} from {branch.base_commit[:10]}"
        + (" (new)" if branch.created else " (reused)")
    )
    session = await blocking(ctx.services.sandbox.session, _spec(ctx, 1),
                             on_wait=ctx.log.sink("warning"))
    ctx.log.line(f"container {session.name} is healthy")
    return Outcome(
        result=Prepared(
            task_id=task.id,
            branch=branch.branch,
            base_commit=branch.base_commit,
            repo_path=str(co.path),
            artifacts=PrepArtifacts(cloned=co.cloned, branch_created=branch.created),
            container=session.name,
        ).wire(),
        next=ctx.then(Stage.SETUP),
        execution={"branch": branch.branch},
        task_summary={"branch": branch.branch, "status": "in_progress"},
    )


async def implement(ctx: StageContext) -> Outcome:
    """One Aider round on the task's files, committed as the branch's single commit."""
    task = await current_task(ctx)
    prep = await prepared(ctx)
    branch, base = prep.branch, prep.base_commit
    start, feedback = base, None
    if ctx.attempt > 1:
        previous = await stage_result(ctx, Stage.IMPLEMENT, Implemented, attempt=ctx.attempt - 1)
        verified = await stage_result(ctx, Stage.VERIFY, Verified, attempt=ctx.attempt - 1)
        feedback = ((verified.feedback if verified else None)
                    or (previous.feedback if previous else None))
        for earlier in range(ctx.attempt - 1, 0, -1):  # start from the last round's commit
            done = await stage_result(ctx, Stage.IMPLEMENT, Implemented, attempt=earlier)
            if done is not None and done.commit:
                start = done.commit
                break
    co = await checkout(ctx)
    await blocking(ctx.services.git.reset_branch, co, branch, start)
    request = ImplementRequest.for_task(task, co.path, attempt=ctx.attempt, feedback=feedback)
    artifact = await blocking(
        ctx.services.tool.implement, request, on_line=ctx.log.sink(), cancel=ctx.cancel
    )
    wire: dict[str, Any] = msgspec.to_builtins(artifact)
    used = round_usage(artifact.outputs.usage_lines)
    if not artifact.success:
        error = artifact.error or {}
        kind = Classification(error.get("classification", "tool"))
        message = str(error.get("message") or "the coding tool failed")
        if kind is Classification.CANCELLED:
            raise CancelledError(message)
        if kind is not Classification.TOOL:
            raise RunnerError(message, classification=kind, details={"artifact": _short(wire)})
        return _used(await failed_round(
            ctx,
            task,
            result=wire,
            message=message,
            classification=kind,
            feedback=f"The previous attempt failed: {message}. Make the change the task asks for.",
        ), used)
    commit = await blocking(
        ctx.services.git.commit_task,
        co,
        branch,
        base,
        f"{task.id}: {task.title}",
        {"Task-Id": task.id, "Execution-Id": str(ctx.execution.id)},
    )
    if commit is None:
        return _used(await failed_round(
            ctx,
            task,
            result=wire,
            message="the change was empty",
            classification=Classification.TOOL,
            feedback="The previous attempt changed nothing.",
        ), used)
    ctx.log.line(
        f"committed {commit[:10]}: {len(artifact.outputs.files_modified)} files, "
        f"{artifact.outputs.lines_changed} lines"
    )
    return Outcome(
        result={**wire, "commit": commit, "branch": branch},
        next=ctx.then(Stage.VERIFY, attempt=ctx.attempt),
        task_summary={"attempts": ctx.attempt, "filesModified": artifact.outputs.files_modified},
        usage=used,
    )


def _used(outcome: Outcome, usage: dict[str, Any] | None) -> Outcome:
    """``outcome`` recording ``usage`` (what its round or containers consumed)."""
    outcome.usage = usage
    return outcome


async def verify(ctx: StageContext) -> Outcome:
    """Copy the change into a fresh container for this round, with the project's installed
    dependencies mounted read-only and no network, and run the project's checks.

    A change that touched the dependencies (a lockfile, a manifest) gets its own setup
    first, with egress, cached like any other. A failure that is clearly the environment's
    (a module or command missing, no network, no disk) pauses for a person instead of
    spending another round."""
    task = await current_task(ctx)
    implemented = await stage_result(ctx, Stage.IMPLEMENT, Implemented, attempt=ctx.attempt)
    prep = await prepared(ctx)
    if implemented is None or not implemented.commit:
        raise InfrastructureError(f"VERIFY: round {ctx.attempt} of task {ctx.task_id} "
                                  "has no committed IMPLEMENT result")
    co = await checkout(ctx)
    base, head = prep.base_commit, implemented.commit
    config = await base_config(ctx, co, prep.branch, base, head)
    changed = await blocking(ctx.services.git.diff_paths, co, base, head)
    patterns = (*split_patterns(ctx.services.settings.verify.protected),
                *split_patterns(config.protected))
    touched = protected_changes(changed, patterns, _task_list_files(ctx))
    if touched:
        return await _protected(ctx, task, co, base, head, touched)
    try:
        installed = await _environment(ctx, co, base)
    except EnvironmentFailure as exc:
        return await environment_pause(
            ctx, EnvironmentFailure(f"task {task.id}: {exc.message}", details=exc.details),
            result={"setup": {"failed": True}}, summary={"attempts": ctx.attempt})
    spec = msgspec.structs.replace(_spec(ctx, ctx.attempt), mounts=installed.mounts())
    if ctx.claims > 1:
        # A worker died mid-check: its command may still run in the container. Start clean.
        await blocking(ctx.services.sandbox.remove, spec)
    session = await blocking(ctx.services.sandbox.session, spec, on_wait=ctx.log.sink("warning"))
    try:
        await blocking(session.copy_in, co.path)
        result = await blocking(
            ctx.services.verifier.verify,
            task.id,
            dict(task.criteria),
            config,
            session,
            changed,
            on_line=ctx.log.sink(),
            cancel=ctx.cancel,
            env=installed.env,
        )
    finally:
        box = await blocking(ctx.services.sandbox.remove, spec)
    used = containers_usage([*([installed.container] if installed.container else []), box])
    measures = measures_of(result.commands, config.test, result.results, commit=head)
    weaker = weakening(await floor(ctx), measures)
    if weaker:
        lines = "\n".join(f"- {name}: {r.detail}" for name, r in weaker.items())
        result = msgspec.structs.replace(
            result, success=False, results={**result.results, **weaker},
            feedback=f"{result.feedback or 'Verification failed:'}\n{lines}")
    wire: dict[str, Any] = msgspec.to_builtins(result)
    wire["measures"] = msgspec.to_builtins(measures)
    checks = {name: r["passed"] for name, r in wire["results"].items()}
    ctx.log.line(
        "verification: " + ", ".join(f"{n} {'ok' if ok else 'FAILED'}" for n, ok in checks.items())
    )
    summary = {"verification": wire["results"], "attempts": ctx.attempt}
    if result.success:
        return Outcome(result=wire, next=ctx.then(Stage.MERGE), task_summary=summary, usage=used)
    limited = [c for c in result.commands if classify(c) is Classification.RESOURCE_LIMIT]
    if not limited:
        own = await blocking(project_modules, Path(co.path))
        problem = environment_problem(result.commands, own)
        if problem is not None:
            error = EnvironmentFailure(
                f"task {task.id}: verification failed because of its environment: {problem}",
                details={"taskId": task.id, "attempt": ctx.attempt,
                         "feedback": result.feedback or ""},
            )
            return _used(await environment_pause(ctx, error, result=wire, summary=summary), used)
    kind = Classification.RESOURCE_LIMIT if limited else Classification.VERIFICATION
    failed = [n for n, ok in checks.items() if not ok]
    message = f"verification failed: {', '.join(failed) or 'checks did not pass'}" + (
        " (sandbox limit reached)" if limited else ""
    )
    return _used(await failed_round(
        ctx,
        task,
        result=wire,
        message=message,
        classification=kind,
        feedback=result.feedback or message,
        summary=summary,
    ), used)


def _task_list_files(ctx: StageContext) -> tuple[str, ...]:
    """The project's own task list and its outcomes document (the path INIT found or the
    project configured, ``planning/TODO.md`` say): UPDATE_TASKLIST writes them, no task."""
    path = ctx.project.get("task_list_path")
    return (path, outcomes_path(path)) if path else ()


async def _protected(ctx: StageContext, task: Task, co: Checkout, base: str, head: str,
                     touched: list[str]) -> Outcome:
    """The change edits what no task may (the task list, ``.devteam.toml``, protected
    paths): never merged; the task waits for a person, who sees the diff."""
    patch = patch_of(await blocking(ctx.services.git.diff_text, co, base, head), touched)
    error = RunnerError(
        f"task {task.id}: the change edits protected paths ({', '.join(touched)}); "
        "it is not merged: a person must review it",
        classification=Classification.VERIFICATION,
        details={"taskId": task.id, "attempt": ctx.attempt, "protectedPaths": touched,
                 "diff": patch},
    )
    await fresh_branch(ctx)
    await drop_task_containers(ctx)
    ctx.log.line(error.message, "error")
    for line in patch.splitlines()[:200]:
        ctx.log.line(line)
    return Outcome(
        status=StageStatus.FAILED,
        result={"protectedPaths": touched, "commit": head},
        error=error,
        record_error=True,
        pause_reason=PauseReason.HUMAN_REVIEW,
        next=await next_select(ctx),
        task_summary={"attempts": ctx.attempt, "status": "blocked",
                      "protectedPaths": touched},
    )


async def _environment(ctx: StageContext, co: Checkout, base: str) -> SetupResult:
    """The installed dependencies this round is verified with: SETUP's, unless the change
    altered what setup would install (then set up again, as its own cached entry)."""
    installed = recorded(await result_of(ctx, Stage.SETUP))
    plan = await trusted_plan(ctx, co, base)
    if not plan.needed:
        return nothing_to_install(plan)  # no volumes, but the toolchain's PATH
    key = await blocking(ctx.services.installer.key, plan, Path(co.path))
    if key == installed.key:
        # SETUP's environment: its container was SETUP's usage, not this round's
        return msgspec.structs.replace(installed, container=None)
    ctx.log.line("the change alters the project's dependencies: setting them up again")
    return await environment(ctx, plan, Path(co.path), attempt=RESETUP_ATTEMPT + ctx.attempt)


def _short(wire: dict[str, Any]) -> dict[str, Any]:
    outputs = dict(wire.get("outputs") or {})
    return {"success": wire.get("success"), "stdout": str(outputs.get("stdout", ""))[-4000:]}
