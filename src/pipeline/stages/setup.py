"""SETUP: the project's dependencies, installed with allowlisted egress or found cached.

Runs after PREP for every task (a cache hit, well under a second, unless the dependencies
changed). What to install comes from the working copy at the task's base commit, and
``.devteam.toml`` is read from that commit too, never from a change the model made. A
failing setup is an ``environment`` error: the execution pauses for a person with an error
record that says what failed and what to configure; no model call is spent on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from pipeline import metrics
from pipeline.lifecycle import PauseReason, Stage, StageStatus
from pipeline.outcome import Outcome, StageContext
from pipeline.stages.baseline import base_config, baseline, refusal
from pipeline.stages.common import (
    blocking,
    checkout,
    current_task,
    drop_task_containers,
    next_select,
)
from pipeline.stages.results import prepared
from pipeline.stages.rounds import fresh_branch
from pipeline.usage import containers_usage
from runner.errors import EnvironmentFailure, RunnerError
from runner.git import Checkout
from runner.sandbox.usage import ContainerUsage
from runner.setup import NOTHING, SetupPlan, SetupResult, nothing_to_install, plan_setup
from runner.verify.config import CONFIG_FILE, MAX_FILE_BYTES, parse_project_file

SETUP_ATTEMPT = 0
"""Container attempt number of the SETUP stage's container (task containers count from 1)."""
RESETUP_ATTEMPT = 100
"""VERIFY's own setup (a change touched the dependencies) uses ``100 + round``."""


async def trusted_plan(ctx: StageContext, co: Checkout, base_commit: str) -> SetupPlan:
    """The setup of the working copy as it is now, configured by ``.devteam.toml`` as it
    was at ``base_commit`` (the task cannot change how its dependencies are installed),
    with the Node.js line and Python chosen from what the sandbox image offers.
    Raises EnvironmentFailure when the project asks for a version the image lacks."""
    raw = await blocking(ctx.services.git.read_file, co, CONFIG_FILE, base_commit,
                         limit=MAX_FILE_BYTES)
    project = parse_project_file(raw) if raw is not None else None
    offered = await blocking(ctx.services.installer.offered)
    return await blocking(plan_setup, Path(co.path), project, offered)


async def environment(ctx: StageContext, plan: SetupPlan, workdir: Path, *,
                      attempt: int) -> SetupResult:
    """``plan``'s environment for this task: from the cache, or installed in a setup
    container (container attempt ``attempt``). Raises EnvironmentFailure."""
    if not plan.needed:
        return nothing_to_install(plan)
    spec = ctx.services.container_spec(
        project=ctx.project, execution_id=str(ctx.execution.id), task_id=ctx.task_id,
        attempt=attempt,
    )
    result = await blocking(ctx.services.installer.ensure, spec, plan, workdir,
                            on_line=ctx.log.sink(), cancel=ctx.cancel)
    ctx.log.line(describe(result))
    if result.key:
        metrics.setup_cache(result.cached)
    return result


def plan_lines(plan: SetupPlan) -> list[str]:
    """What the log says of a plan before it runs: the toolchain chosen, and whether
    there is anything to install."""
    lines = [choice.describe() for choice in plan.toolchain]
    if not plan.needed:
        lines.append("setup: nothing to install (no lockfile, requirements or dependencies)")
    return lines


def describe(result: SetupResult) -> str:
    mib = result.bytes / (1024 * 1024)
    held = ", ".join(sorted(result.volumes))
    if result.cached:
        return f"setup: cache hit ({result.tool}: {held}, {mib:.0f} MiB) in {result.seconds:.2f} s"
    return (f"setup: installed with {result.tool} in {result.seconds:.1f} s; cached {held} "
            f"({mib:.0f} MiB)")


def summary(result: SetupResult) -> dict[str, Any]:
    """What the status API and the per-task table show of a setup."""
    return {"tool": result.tool, "cached": result.cached, "seconds": result.seconds,
            "bytes": result.bytes}


async def setup(ctx: StageContext) -> Outcome:
    """Install (or find cached) what the task's base commit needs before IMPLEMENT."""
    task = await current_task(ctx)
    prep = await prepared(ctx)
    branch, base = prep.branch, prep.base_commit
    co = await checkout(ctx)
    await blocking(ctx.services.git.reset_branch, co, branch, base)
    # PREP's container holds a sandbox slot; SETUP's own containers (the setup container
    # on a cache miss, the baseline's) each need one more. A stage that waits for a slot
    # while it holds one can wait forever: when every slot is held by an execution between
    # PREP and SETUP (more executions than the global or the customer's limit), each waits
    # for the others. So it goes first, and no execution ever holds a slot while it waits
    # for one; VERIFY makes the task's container again.
    await drop_task_containers(ctx)
    plan: SetupPlan | None = None
    try:
        plan = await trusted_plan(ctx, co, base)
        for line in plan_lines(plan):
            ctx.log.line(line)
        result = await environment(ctx, plan, Path(co.path), attempt=SETUP_ATTEMPT)
    except EnvironmentFailure as exc:
        ctx.log.line(exc.message, "error")
        plan = plan or SetupPlan(tool="none")
        return Outcome(
            status=StageStatus.FAILED,
            result={"tool": plan.tool, "cached": False, "commands": plan.commands,
                    "toolchain": msgspec.to_builtins(plan.toolchain)},
            error=EnvironmentFailure(f"task {task.id}: {exc.message}", details=exc.details),
            record_error=True,
            pause_reason=PauseReason.HUMAN_REVIEW,
            next=ctx.then(Stage.SETUP, attempt=ctx.attempt + 1),
            task_summary={"status": "blocked", "setup": {"tool": plan.tool, "failed": True}},
        )
    wire: dict[str, Any] = msgspec.to_builtins(result)
    config = await base_config(ctx, co, branch, base)
    checked = await baseline(ctx, task, co, base, result, config)
    if checked is not None:
        wire["baseline"] = checked
    used = stage_usage(result, checked)
    if checked and checked["problems"]:
        paused = await environment_pause(
            ctx, refusal(task, base, checked), result=wire,
            summary={"setup": summary(result), "baseline": {"problems": checked["problems"]}})
        paused.usage = used
        return paused
    return Outcome(
        result=wire,
        next=ctx.then(Stage.IMPLEMENT, attempt=1),
        task_summary={"setup": summary(result)},
        usage=used,
    )


def stage_usage(result: SetupResult, checked: dict[str, Any] | None) -> dict[str, Any] | None:
    """The usage of SETUP's containers: the setup container (when one ran) and the
    baseline's (when it ran)."""
    ran: list[ContainerUsage | None] = []
    if result.container is not None:
        ran.append(result.container)
    if checked is not None and "container" in checked:
        box = checked["container"]
        ran.append(msgspec.convert(box, ContainerUsage) if isinstance(box, dict) else None)
    return containers_usage(ran)


def recorded(wire: dict[str, Any] | None) -> SetupResult:
    """The SETUP stage's recorded result (nothing installed when there is none)."""
    if not wire or "volumes" not in wire:
        return NOTHING
    return msgspec.convert(wire, SetupResult)


async def environment_pause(ctx: StageContext, error: RunnerError, *,
                            result: dict[str, Any], summary: dict[str, Any]) -> Outcome:
    """Pause for a person after a failure that is not the model's (the environment in
    VERIFY, a base that cannot pass in SETUP): no further round and no error-resolution
    task; resuming selects the task again from its start."""
    await fresh_branch(ctx)
    await drop_task_containers(ctx)
    ctx.log.line(error.message, "error")
    return Outcome(
        status=StageStatus.FAILED,
        result=result,
        error=error,
        record_error=True,
        pause_reason=PauseReason.HUMAN_REVIEW,
        next=await next_select(ctx),
        task_summary={**summary, "status": "blocked"},
    )
