"""What stages hand on to later stages, typed: encoded into ``stage_runs.result`` at the
boundary, decoded when a later stage reads it (no string keys in between).

The wire names stay those of the stored results (camelCase, as the status API and
``task_context.nodes`` show them). A reader declares only what it uses: other keys of a
stored result (the whole Operation Artifact, the Verification Result) are ignored.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from pipeline.lifecycle import Stage
from pipeline.outcome import StageContext
from pipeline.stages.common import result_of
from runner.errors import InfrastructureError


class _Result(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    def wire(self) -> dict[str, Any]:
        """The stored form (``stage_runs.result``)."""
        value: dict[str, Any] = msgspec.to_builtins(self)
        return value


class PrepArtifacts(_Result, frozen=True, kw_only=True):
    cloned: bool
    branch_created: bool


class Prepared(_Result, frozen=True, kw_only=True):
    """PREP's result: the task's branch, the commit it starts from, its container."""

    task_id: str
    branch: str
    base_commit: str
    repo_path: str
    artifacts: PrepArtifacts
    container: str


class Implemented(_Result, frozen=True, kw_only=True):
    """What later stages read of an IMPLEMENT round: the round's commit (a round that
    committed), the feedback a failed round leaves for the next."""

    commit: str | None = None
    branch: str | None = None
    feedback: str | None = None


class Check(msgspec.Struct, frozen=True, kw_only=True):
    passed: bool = False
    actual: Any = None


class Verified(_Result, frozen=True, kw_only=True):
    """What later stages read of a VERIFY round: each criterion's result, the feedback
    for the next round (absent when the round stopped before its checks)."""

    results: dict[str, Check] = {}
    feedback: str | None = None


class Merged(_Result, frozen=True, kw_only=True):
    commit: str | None = None


R = TypeVar("R", bound=_Result)


async def stage_result(
    ctx: StageContext, stage: Stage, kind: type[R], *, attempt: int | None = None
) -> R | None:
    """The latest recorded result of ``stage`` for this task and pass, decoded."""
    value = await result_of(ctx, stage, attempt=attempt)
    return None if value is None else msgspec.convert(value, kind)


async def prepared(ctx: StageContext) -> Prepared:
    """PREP's result for this task and pass (every stage after PREP has one)."""
    found = await stage_result(ctx, Stage.PREP, Prepared)
    if found is None:
        raise InfrastructureError(f"{ctx.command.stage}: task {ctx.task_id} has no PREP result")
    return found


__all__ = [
    "Check",
    "Implemented",
    "Merged",
    "PrepArtifacts",
    "Prepared",
    "Verified",
    "prepared",
    "stage_result",
]
