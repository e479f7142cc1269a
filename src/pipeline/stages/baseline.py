"""The baseline: the unchanged base verified once per execution, before any model call.

A failure that exists before the model touches anything (a broken test, a missing
dependency, the wrong toolchain) is not the model's to fix by accident: SETUP runs the
project's checks on the task's base commit, with the installed dependencies, in a
container of its own; when the base cannot pass, the execution pauses for a person with
that as the headline, and no model call is made. The baseline runs again when the
dependencies change (a different setup key); otherwise later tasks reuse it.

What it measured (tests run, coverage) is the floor every later verification is held to:
a change may not run fewer tests or lower coverage (``runner.verify.guard``). The
verification configuration itself always comes from the base commit, never from the
change being verified.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from pipeline.outcome import StageContext
from pipeline.stages.common import blocking
from runner.errors import Classification, EnvironmentFailure, RunnerError
from runner.git import Checkout
from runner.sandbox import classify
from runner.setup import SetupResult
from runner.tasklist import Task
from runner.verify import KNOWN, ProjectConfig, load_project_config
from runner.verify.environment import environment_problem, project_modules
from runner.verify.guard import Measures, baseline_problems, measures_of

BASELINE_ATTEMPT = 99
"""Container attempt number of the baseline's container (rounds count from 1, VERIFY's
own setups from 100)."""


async def base_config(ctx: StageContext, co: Checkout, branch: str, base: str,
                      head: str | None = None) -> ProjectConfig:
    """The verification configuration as it is at ``base`` (``.devteam.toml`` and what is
    detected from the files), whatever the change did to either; the working copy is left
    at ``head`` when given (else at ``base``)."""
    await blocking(ctx.services.git.reset_branch, co, branch, base)
    try:
        config = await blocking(load_project_config, co.path)
    finally:
        if head is not None:
            await blocking(ctx.services.git.reset_branch, co, branch, head)
    return msgspec.structs.replace(config, setup=[])  # the SETUP stage's, not verification's


async def floor(ctx: StageContext) -> Measures | None:
    """What the latest verified state of this execution measured: the last verification
    that passed, or the baseline when none passed since."""
    async with ctx.services.store.reads() as q:
        value = await q.stage_runs.latest_measures(ctx.execution.id)
    return msgspec.convert(value, Measures) if value else None


async def _earlier(ctx: StageContext, key: str) -> dict[str, Any] | None:
    async with ctx.services.store.reads() as q:
        return await q.stage_runs.baseline(ctx.execution.id, key)


async def baseline(ctx: StageContext, task: Task, co: Checkout, base: str,
                   installed: SetupResult, config: ProjectConfig) -> dict[str, Any] | None:
    """Verify the unchanged working copy (at ``base``) unless this execution already did
    with the same dependencies. Returns the record (``problems`` lists what the base
    cannot pass), or None when the baseline is switched off or there is nothing to run."""
    if not ctx.services.settings.verify.baseline:
        return None
    key = installed.key or "none"
    earlier = await _earlier(ctx, key)
    if earlier is not None:
        ctx.log.line(f"baseline: verified at {str(earlier.get('commit'))[:10]} in this "
                     "execution with the same dependencies; not run again")
        return {"key": key, "reusedFrom": earlier.get("commit"), "problems": []}
    criteria = {name: text for name, text in {**config.criteria, **task.criteria}.items()
                if name != "doc.updated"}
    if not any(name in KNOWN for name in criteria):
        return None
    spec = ctx.services.container_spec(
        project=ctx.project, execution_id=str(ctx.execution.id), task_id=ctx.task_id,
        attempt=BASELINE_ATTEMPT)
    spec = msgspec.structs.replace(spec, mounts=installed.mounts())
    ctx.log.line(f"baseline: verifying the unchanged base {base[:10]} before any change")
    session = await blocking(ctx.services.sandbox.session, spec,
                             on_wait=ctx.log.sink("warning"))
    try:
        await blocking(session.copy_in, co.path)
        result = await blocking(
            ctx.services.verifier.verify, task.id, criteria, config, session, (),
            on_line=ctx.log.sink(), cancel=ctx.cancel, env=installed.env,
        )
    finally:
        container = await blocking(ctx.services.sandbox.remove, spec)
    measures = measures_of(result.commands, config.test, result.results, commit=base)
    problems = baseline_problems(result.results, measures)
    kind = Classification.ENVIRONMENT
    if problems:
        if any(classify(c) is Classification.RESOURCE_LIMIT for c in result.commands):
            kind = Classification.RESOURCE_LIMIT
            problems.append("the sandbox's limits were reached")
        else:
            own = await blocking(project_modules, Path(co.path))
            found = environment_problem(result.commands, own)
            if found is not None:
                problems.append(found)
    shown = [f"{n} {'ok' if r.passed else 'FAILED'}" for n, r in result.results.items()]
    counted = [] if measures.tests_run is None else [f"{measures.tests_run} tests run"]
    if measures.coverage is not None:
        counted.append(f"coverage {measures.coverage:g}%")
    ctx.log.line(f"baseline at {base[:10]}: " + ", ".join(shown + counted or ["nothing run"]))
    return {
        "key": key,
        "commit": base,
        "results": msgspec.to_builtins(result.results),
        "measures": msgspec.to_builtins(measures),
        "problems": problems,
        "classification": kind.value,
        "commands": msgspec.to_builtins(result.commands),
        "feedback": result.feedback,
        "container": msgspec.to_builtins(container),
    }


def refusal(task: Task, base: str, checked: dict[str, Any]) -> RunnerError:
    """The error of a base that cannot pass: what fails before any change, classified
    ``environment`` (or ``resource_limit`` when the base's checks exceed the sandbox)."""
    problems = list(checked["problems"])
    message = (f"task {task.id}: the base {base[:10]} does not pass its own checks before "
               f"any change ({'; '.join(problems)}); fix the default branch (or "
               ".devteam.toml) and resume: no model call was made")
    details = {"taskId": task.id, "baseCommit": base, "problems": problems,
               "feedback": checked.get("feedback") or ""}
    kind = Classification(checked.get("classification") or "environment")
    if kind is Classification.ENVIRONMENT:
        return EnvironmentFailure(message, details=details)
    return RunnerError(message, classification=kind, details=details)
