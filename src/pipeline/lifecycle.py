"""Execution statuses, the stage order, and the transitions clients may ask for."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    IDLE = "idle"
    INITIALIZING = "initializing"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPING = "stopping"
    STOPPED = "stopped"
    COMPLETED = "completed"
    ERROR = "error"


ACTIVE = frozenset({Status.INITIALIZING, Status.RUNNING, Status.PAUSED, Status.STOPPING})
TERMINAL = frozenset({Status.STOPPED, Status.COMPLETED, Status.ERROR})


class StageStatus(StrEnum):
    """The status of one stage run (``stage_runs.status``, ``Outcome.status``, the
    ``nodes`` of ``task_context``): the values on the wire and in the database."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    RETRYING = "retrying"
    CANCELLED = "cancelled"


class PauseReason(StrEnum):
    USER = "user"
    STOP_POINT = "stop_point"
    HUMAN_REVIEW = "human_review"


class Stage(StrEnum):
    INIT = "INIT"
    SELECT = "SELECT"
    PREP = "PREP"
    SETUP = "SETUP"
    IMPLEMENT = "IMPLEMENT"
    VERIFY = "VERIFY"
    MERGE = "MERGE"
    PUSH = "PUSH"
    UPDATE_TASKLIST = "UPDATE_TASKLIST"
    DONE = "DONE"
    FINALIZE = "FINALIZE"

    @property
    def actor_name(self) -> str:
        return f"stage_{self.value.lower()}"

    @property
    def node_name(self) -> str:
        """The key of this stage in ``Event.task_context.nodes`` (``UpdateTasklistNode``)."""
        return "".join(part.capitalize() for part in self.value.split("_")) + "Node"


class Action(StrEnum):
    INITIALIZE = "initialize"
    PAUSE = "pause"
    RESUME = "resume"
    STOP = "stop"


# CONTRACTS.md "Statuses and transitions": action -> (allowed from, goes to).
TRANSITIONS: dict[Action, tuple[frozenset[Status], Status]] = {
    Action.INITIALIZE: (
        frozenset({Status.IDLE, Status.STOPPED, Status.COMPLETED, Status.ERROR}),
        Status.INITIALIZING,
    ),
    Action.PAUSE: (frozenset({Status.RUNNING}), Status.PAUSED),
    Action.RESUME: (frozenset({Status.PAUSED}), Status.RUNNING),
    Action.STOP: (
        frozenset({Status.RUNNING, Status.PAUSED, Status.INITIALIZING}),
        Status.STOPPING,
    ),
}


def valid_actions(current: Status) -> list[str]:
    """The actions allowed from ``current``, in a stable order (for 409 bodies)."""
    return [a.value for a, (sources, _) in TRANSITIONS.items() if current in sources]


class TransitionError(Exception):
    """A client asked for an action its execution's status does not allow (HTTP 409)."""

    def __init__(self, action: Action, current: Status) -> None:
        self.action = action
        self.current = current
        self.valid = valid_actions(current)
        super().__init__(
            f"cannot {action.value} an execution that is {current.value}"
            + (f"; allowed now: {', '.join(self.valid)}" if self.valid else "")
        )


def target(action: Action, current: Status) -> Status:
    """The status ``action`` leads to from ``current``, or TransitionError."""
    sources, goes_to = TRANSITIONS[action]
    if current not in sources:
        raise TransitionError(action, current)
    return goes_to
