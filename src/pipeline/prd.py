"""The product requirements' flat view of an execution, as stream frames carry it.

Pure functions: frames keep their detailed ``payload`` and also carry, at the top level,
the fields the requirements name (``taskId``; on ``execution-update`` also ``status`` as
an execution state and ``progress`` as a number 0-100 with one decimal). Both the
gateway's frames (live and replayed) and ``pipeline.stream.append`` use these, so the
mapping lives in one place (README "Live frames").

``status`` from the lifecycle status and the current stage:

==============  ==========================  =======================
lifecycle       stage                       status
==============  ==========================  =======================
initializing    any                         ``INITIALIZING``
running         INIT / none yet             ``INITIALIZING``
running         SELECT                      ``SELECTING``
running         PREP                        ``PREPARING``
running         SETUP                       ``SETTING_UP``
running         IMPLEMENT                   ``IMPLEMENTING``
running         VERIFY                      ``VERIFYING``
running         MERGE                       ``MERGING``
running         PUSH                        ``PUSHING``
running         UPDATE_TASKLIST, DONE       ``UPDATING_TASKLIST``
running         FINALIZE                    ``FINALIZING``
paused          any                         ``PAUSED``
stopping        any                         ``STOPPING``
stopped         any                         ``STOPPED``
completed       any                         ``COMPLETED``
error           any                         ``ERROR``
idle            any                         ``IDLE``
==============  ==========================  =======================

``progress`` = 100 * (finished tasks + the current task's share) / total tasks, one
decimal, capped at 100; 100.0 once completed, 0.0 while the total is unknown. The current
task's share is how far its stages have come when the stage starts (``STAGE_SHARE``); it
counts only while there is a current task, so when DONE counts the task as finished (and
the task stops being current) the figure does not step back.
"""

from __future__ import annotations

from pipeline.lifecycle import Stage, Status

INITIALIZING = "INITIALIZING"

STATES = (
    "IDLE", INITIALIZING, "SELECTING", "PREPARING", "SETTING_UP", "IMPLEMENTING",
    "VERIFYING", "MERGING", "PUSHING", "UPDATING_TASKLIST", "FINALIZING", "PAUSED",
    "STOPPING", "STOPPED", "COMPLETED", "ERROR",
)
"""Every value ``status`` takes on an ``execution-update`` frame."""

_BY_STATUS = {
    Status.IDLE: "IDLE",
    Status.INITIALIZING: INITIALIZING,
    Status.PAUSED: "PAUSED",
    Status.STOPPING: "STOPPING",
    Status.STOPPED: "STOPPED",
    Status.COMPLETED: "COMPLETED",
    Status.ERROR: "ERROR",
}

_BY_STAGE = {
    Stage.INIT: INITIALIZING,
    Stage.SELECT: "SELECTING",
    Stage.PREP: "PREPARING",
    Stage.SETUP: "SETTING_UP",
    Stage.IMPLEMENT: "IMPLEMENTING",
    Stage.VERIFY: "VERIFYING",
    Stage.MERGE: "MERGING",
    Stage.PUSH: "PUSHING",
    Stage.UPDATE_TASKLIST: "UPDATING_TASKLIST",
    Stage.DONE: "UPDATING_TASKLIST",
    Stage.FINALIZE: "FINALIZING",
}

STAGE_SHARE = {
    Stage.PREP: 0.05,
    Stage.SETUP: 0.10,
    Stage.IMPLEMENT: 0.20,
    Stage.VERIFY: 0.60,
    Stage.MERGE: 0.80,
    Stage.PUSH: 0.85,
    Stage.UPDATE_TASKLIST: 0.90,
    Stage.DONE: 0.95,
}
"""The share of a task done when each of its stages starts (the rest count nothing)."""


def state(status: str | None, stage: str | None) -> str:
    """The requirements' execution state for a lifecycle ``status`` and ``stage``."""
    try:
        lifecycle = Status(status or Status.INITIALIZING)
    except ValueError:
        lifecycle = Status.INITIALIZING
    if lifecycle is not Status.RUNNING:
        return _BY_STATUS[lifecycle]
    try:
        return _BY_STAGE[Stage(stage or Stage.INIT)]
    except ValueError:
        return INITIALIZING


def progress(
    status: str | None,
    stage: str | None,
    *,
    has_task: bool,
    completed: int,
    total: int,
) -> float:
    """Percent done, 0.0-100.0 with one decimal (see the module docstring)."""
    if status == Status.COMPLETED:
        return 100.0
    if total <= 0:
        return 0.0
    share = 0.0
    if has_task:
        try:
            share = STAGE_SHARE.get(Stage(stage or ""), 0.0)
        except ValueError:
            share = 0.0
    done = max(0, completed) + share
    return round(min(100.0, 100.0 * done / total), 1)


def task_of(value: object) -> str | None:
    """A frame's ``taskId``: a task's id, or None (no task, or a between-tasks key such
    as SELECT's ``#3``)."""
    if not isinstance(value, str) or not value or value.startswith("#"):
        return None
    return value


def _count(value: object) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return 0


def update_fields(
    status: object, stage: object, task_id: object, completed: object, total: object
) -> tuple[str, float]:
    """``(status, progress)`` of an ``execution-update`` from its payload's values (as
    stored: strings from JSON text, or numbers)."""
    lifecycle = status if isinstance(status, str) else None
    current = stage if isinstance(stage, str) else None
    return state(lifecycle, current), progress(
        lifecycle, current, has_task=task_of(task_id) is not None,
        completed=_count(completed), total=_count(total),
    )
