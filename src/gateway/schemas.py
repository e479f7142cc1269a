"""Request and response bodies (CONTRACTS.md), as msgspec Structs kept apart from rows.

camelCase on the wire (``rename="camel"``) except the event record's top level, which
keeps the existing event system's names. Unknown fields are rejected.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import msgspec
from msgspec import Meta

END = r"$(?!\n)"
"""End of an identifier's pattern. msgspec matches patterns with Python's ``re.search``,
whose ``$`` also matches before a trailing newline (``"evil/nl\\n"`` passed); the lookahead
refuses that, and still reads the same in ECMA 262, the dialect the OpenAPI document's
patterns are read in (``\\Z`` is Python's alone)."""
PROJECT_PATTERN = r"^[A-Za-z0-9_-]{1,100}/[A-Za-z0-9_-]{1,100}" + END
ProjectId = Annotated[
    str,
    Meta(
        pattern=PROJECT_PATTERN,
        max_length=200,
        description="customer/project: letters, digits, _ and - in each part",
        examples=["customer-123/project-abc"],
    ),
]
TaskId = Annotated[
    str,
    Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}" + END, description="a task id such as 1.2.3",
         examples=["1.1.1"]),
]
NO_NUL = r"^[^\x00]*$"
"""Free text may hold anything but NUL, which Postgres cannot store (text or jsonb)."""
Text = Annotated[str, Meta(max_length=20_000, pattern=NO_NUL)]
Title = Annotated[str, Meta(min_length=1, max_length=300, pattern=NO_NUL)]
Reason = Annotated[str, Meta(min_length=1, max_length=2000, pattern=NO_NUL)]
StopPoint = Annotated[str, Meta(min_length=1, max_length=200, pattern=NO_NUL)]
Branch = Annotated[str, Meta(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9._/-]+" + END,
                             examples=["task/1-1-add-and-subtract"])]
IdemKey = Annotated[str, Meta(pattern=r"^[\x21-\x7e]{1,255}" + END)]
SPACE = r"\t-\r \x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
"""Python's ``\\s``, written out: ECMA 262's ``\\s`` is another set (no ``\\x1c``-``\\x1f``
nor ``\\x85``, but ``\\ufeff``), so the document's patterns name characters, never
``\\s``, ``\\d`` or ``\\w``."""
RepoUrl = Annotated[
    str,
    Meta(min_length=1, max_length=2000,
         pattern=r"^(https?://|ssh://|file://|git@)[^\x00" + SPACE + "]+" + END,
         description="the pipeline's rules (runner.git.policy) decide the rest: a refused "
                     "URL is a 422 naming the field",
         examples=["https://github.com/acme/web.git"]),
]
RelPath = Annotated[
    str,
    Meta(min_length=1, max_length=500,
         pattern=r"^(?!/)(?!.*(^|/)\.\.(/|$))[^\x00-\x1f\x7f\\\u2028\u2029]+" + END,
         description="a path inside the repository (no .., not absolute, no control "
                     "characters)"),
]
"""No line terminator of either dialect may occur, so ``.`` and the lookahead's ``$`` mean
the same in Python and ECMA 262 (Python's ``.`` crosses ``\\r`` and ``\\u2028``, its ``$``
matches before a final ``\\n``: ``"a/..\\n"`` was refused by Python and accepted by
ECMA 262; ``"a\\n"`` the other way round)."""
TaskStatusWire = Literal["pending", "in_progress", "done", "blocked"]
TaskTypeWire = Literal["atomic", "group", "phase"]
Criteria = Annotated[
    dict[Annotated[str, Meta(max_length=100, pattern=NO_NUL)],
         Annotated[str, Meta(max_length=2000, pattern=NO_NUL)]],
    Meta(max_length=50),
]


class _In(msgspec.Struct, forbid_unknown_fields=True, rename="camel", kw_only=True):
    pass


class _Out(msgspec.Struct, rename="camel", kw_only=True, omit_defaults=True):
    pass


# ---------------------------------------------------------------------------- events
class EventTask(_In):
    id: TaskId
    title: Title
    description: Text = ""
    type: TaskTypeWire = "atomic"
    files: Annotated[list[RelPath], Meta(max_length=100)] = []
    criteria: Criteria = {}
    dependencies: Annotated[list[TaskId], Meta(max_length=100)] = []
    notes: Annotated[list[Text], Meta(max_length=50)] = []


class EventOptions(_In):
    stop_point: StopPoint | None = None
    idempotency_key: IdemKey | None = None


class EventData(_In):
    project_id: ProjectId
    task: EventTask | None = None
    options: EventOptions | None = None
    repository_url: RepoUrl | None = None


class EventCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    workflow_type: Literal["DEVTEAM_AUTOMATION"]
    data: EventData


class EventAccepted(msgspec.Struct, kw_only=True):
    event_id: str
    task_id: str
    status: Literal["accepted"] = "accepted"
    correlationId: str  # noqa: N815 - the contract mixes snake and camel here


class EventRecord(msgspec.Struct, kw_only=True):
    event_id: str
    workflow_type: str
    data: dict[str, Any]
    task_context: dict[str, Any]
    created_at: str
    updated_at: str
    correlationId: str  # noqa: N815
    executionId: str | None = None  # noqa: N815


# ---------------------------------------------------------------------------- automation
class InitializeRequest(_In):
    project_id: ProjectId
    repository_url: RepoUrl | None = None
    stop_point: StopPoint | None = None


class InitializeAccepted(_Out):
    execution_id: str
    event_id: str
    status: str


class Totals(_Out):
    completed: int
    total: int


class SetupStatus(_Out):
    """The execution's latest SETUP stage: dependencies installed or found cached."""

    task_id: str | None
    status: str
    duration_ms: int | None
    tool: str | None
    cached: bool
    seconds: float | None = None
    bytes: int | None = None
    error: str | None = None


class SlotWaitStatus(_Out):
    """A container of the execution waits for a sandbox slot (absent once it has one)."""

    container: str
    since: str
    seconds: float
    position: int
    """Among the customer's waiting containers; 1: the next of them to get a slot."""
    waiting: int
    customer_running: int
    customer_limit: int
    running: int
    limit: int


class UsageTotals(msgspec.Struct, rename="camel", kw_only=True):
    """What stage runs consumed together (CONTRACTS.md, usage): each figure summed over
    the runs that reported it (``peakMemoryBytes`` the largest), null when none did."""

    tokens_sent: int | None
    tokens_received: int | None
    cost: float | None
    """USD, as Aider reports it; null when the model has no price."""
    cpu_seconds: float | None
    peak_memory_bytes: int | None
    wall_seconds: float | None
    implement_rounds: int
    """IMPLEMENT rounds counted (each one Aider run)."""
    containers: int
    """Sandbox containers counted (setup, baseline and verification)."""


class ExecutionStatus(_Out):
    execution_id: str
    project_id: str
    customer_id: str
    status: str
    progress: int
    current_task: str | None
    current_stage: str | None
    branch: str | None
    totals: Totals
    started_at: str
    updated_at: str
    pause_reason: str | None = None
    stop_point: str | None = None
    finished_at: str | None = None
    user_id: str | None = None
    setup: SetupStatus | None = None
    slot_wait: SlotWaitStatus | None = None
    usage: UsageTotals | None = None
    """The execution's usage so far (its finished stage runs); on the status API only."""


class TransitionAccepted(_Out):
    execution_id: str
    previous_status: str
    status: str


# ---------------------------------------------------------------------------- repository
class RepositoryValidateRequest(_In):
    repository_url: RepoUrl
    branch: Branch | None = None
    task_list_path: RelPath | None = None
    project_id: ProjectId | None = None
    """Check the URL as this project's customer would use it (default: the token's only
    customer)."""


class RepositoryValidation(_Out):
    valid: bool
    default_branch: str | None
    has_task_list: bool
    task_list_path: str | None
    task_count: int
    problems: list[str]


class TaskDefinition(_Out):
    id: str
    title: str
    description: str
    type: TaskTypeWire
    dependencies: list[str]
    files: list[str]
    criteria: dict[str, str]
    notes: list[str]
    status: TaskStatusWire
    parent: str | None = None


class TaskList(_Out):
    tasks: list[TaskDefinition]


def _present(*names: str) -> list[dict[str, Any]]:
    """JSON Schema alternatives: one of ``names`` given and not null."""
    return [{"required": [n], "properties": {n: {"not": {"type": "null"}}}} for n in names]


class TaskUpdate(_In):
    status: TaskStatusWire | None = None
    title: Title | None = None
    description: Text | None = None

    openapi_extra: ClassVar[dict[str, Any]] = {
        "anyOf": _present("status", "title", "description")}
    """``__post_init__``'s rule, for the OpenAPI document (``gateway.openapi``)."""

    def __post_init__(self) -> None:
        if self.status is None and self.title is None and self.description is None:
            raise ValueError("give at least one of status, title, description")


class ErrorView(_Out):
    error_id: str
    execution_id: str
    task_id: str | None
    stage: str
    classification: str
    message: str
    details: dict[str, Any]
    attempts: int
    created_at: str


class InjectTaskSpec(_In):
    title: Title
    description: Text = ""
    type: TaskTypeWire = "atomic"
    files: Annotated[list[RelPath], Meta(max_length=100)] = []
    criteria: Criteria = {}


class InjectRequest(_In):
    project_id: ProjectId
    injection_type: Literal["priority", "replace", "positional"]
    task: InjectTaskSpec
    reason: Reason
    position: Annotated[int, Meta(ge=0, le=100_000)] | None = None
    replace_task_id: TaskId | None = None

    openapi_extra: ClassVar[dict[str, Any]] = {"anyOf": [
        {"properties": {"injectionType": {"const": "priority"}}},
        {"properties": {"injectionType": {"const": "positional"}}, "anyOf": _present("position")},
        {"properties": {"injectionType": {"const": "replace"}},
         "anyOf": _present("replaceTaskId")},
    ]}
    """``__post_init__``'s rules, for the OpenAPI document (``gateway.openapi``)."""

    def __post_init__(self) -> None:
        if self.injection_type == "positional" and self.position is None:
            raise ValueError("position is required for a positional injection")
        if self.injection_type == "replace" and self.replace_task_id is None:
            raise ValueError("replaceTaskId is required for a replace injection")


class InjectAccepted(_Out):
    task_id: str
    injection_id: str


# ---------------------------------------------------------------------------- core runner
class HealthCheck(_Out):
    ok: bool
    detail: str
    latency_ms: float


class Live(_Out):
    status: Literal["ok"]


class Health(_Out):
    status: Literal["ok", "degraded", "down"]
    version: str | None = None
    """Only with a token, like ``checks``: an anonymous caller gets the status alone."""
    checks: dict[str, HealthCheck] | None = None


class PrepRequest(_In):
    project_id: ProjectId
    task_id: TaskId


class PrepArtifacts(_Out):
    cloned: bool
    branch_created: bool


class PrepResult(_Out):
    task_id: str
    branch: str
    repo_path: str
    artifacts: PrepArtifacts


class ImplementRequestBody(_In):
    project_id: ProjectId
    task_id: TaskId
    branch: Branch
    tool: Literal["aider"] = "aider"


class VerifyRequestBody(_In):
    project_id: ProjectId
    task_id: TaskId
    branch: Branch
    criteria: Criteria | None = None


class NextTask(_Out):
    task: TaskDefinition | None
    dependencies_satisfied: bool
    total_tasks: int
    completed_tasks: int
    progress: int
