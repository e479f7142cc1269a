"""The runner's ports: small interfaces the pipeline depends on, and the values they pass.

Each port has one real adapter in its own module (``aider.py``, ``sandbox/``, ``git/``)
and test fakes beside the tests. Values are frozen msgspec Structs so they serialise
straight into stage results and API responses.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

if TYPE_CHECKING:
    from runner.tasklist.model import Task

LineSink = Callable[[str], None]
"""Receives one line of a tool's or a command's output as it is produced (already redacted
by the caller's sink if the sink is the pipeline's log batcher)."""


# --------------------------------------------------------------------------- coding tool
class ImplementRequest(msgspec.Struct, frozen=True, kw_only=True):
    """What the coding tool is asked to do for one IMPLEMENT round."""

    workdir: Path
    task_id: str
    title: str
    description: str = ""
    files: Sequence[str] = ()
    criteria: Mapping[str, str] = msgspec.field(default_factory=dict)
    notes: Sequence[str] = ()
    attempt: int = 1
    feedback: str | None = None
    """Failing verification output of the previous round, trimmed; None on the first."""

    @classmethod
    def for_task(cls, task: Task, workdir: Path, *, attempt: int = 1,
                 feedback: str | None = None) -> ImplementRequest:
        """The request for ``task`` of a task list, worked on in ``workdir``."""
        return cls(workdir=workdir, task_id=task.id, title=task.title,
                   description=task.description, files=list(task.files),
                   criteria=dict(task.criteria), notes=list(task.notes),
                   attempt=attempt, feedback=feedback)


class ImplementOutputs(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    diff: str
    stdout: str
    files_modified: list[str]
    lines_changed: int
    usage_lines: list[str] = msgspec.field(default_factory=list)
    """Every usage line the tool printed (Aider's ``Tokens: … sent, … received. Cost: …``,
    one per model reply), collected as it ran: ``stdout`` keeps only the tail, and holds
    the model's words too. What the round is charged is read from these alone."""


class OperationArtifact(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """The contract's Operation Artifact (``POST /implement`` and the IMPLEMENT stage)."""

    operation: str
    task_id: str
    tool: str
    success: bool
    duration: float
    """Seconds."""
    outputs: ImplementOutputs
    error: dict[str, Any] | None = None
    """``{classification, message}`` when ``success`` is false."""


# --------------------------------------------------------------------------- sandbox
class VolumeMount(msgspec.Struct, frozen=True, kw_only=True):
    """A cached dependency directory mounted over ``/workspace/<path>``."""

    volume: str
    path: str
    """A top-level directory of the working copy (``node_modules``, ``.venv``)."""
    read_only: bool = True


class ContainerSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One task attempt's container: who it belongs to and what it may use."""

    customer_id: str
    project_id: str
    execution_id: str
    task_id: str
    attempt: int = 1
    cpus: float = 1.0
    memory_mb: int = 2048
    pids: int = 512
    tmpfs_mb: int = 256
    network: bool = False
    ttl_seconds: int = 6 * 3600
    mounts: tuple[VolumeMount, ...] = ()
    """Dependency caches mounted into ``/workspace`` (left alone by ``copy_in``)."""
    egress_dir: str | None = None
    """A host directory holding the egress proxy's socket, mounted read-only at
    ``runner.setup.egress.CONTAINER_DIR`` (setup containers only)."""
    deployment: str = ""
    """The deployment the container belongs to (``runner.sandbox.labels.deployment_of``)."""


class CommandResult(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """The outcome of one command run in a task container."""

    command: str
    exit_code: int
    duration: float
    """Seconds."""
    output_tail: str
    """The last lines of combined output (for feedback and error records)."""
    timed_out: bool = False
    cancelled: bool = False
    oom_killed: bool = False
    pids_limited: bool = False
    peak_memory_bytes: int | None = None
    cpu_seconds: float | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not (self.timed_out or self.cancelled)


class SandboxSession(Protocol):
    """A started, healthy container for one task attempt."""

    @property
    def name(self) -> str: ...

    def copy_in(self, source: Path, *, exclude: Sequence[str] = (".git",)) -> None:
        """Replace ``/workspace`` with the contents of ``source`` (a tar stream)."""
        ...

    def run(
        self,
        command: str,
        *,
        timeout: float,
        on_line: LineSink | None = None,
        cancel: threading.Event | None = None,
        env: Mapping[str, str] | None = None,
    ) -> CommandResult:
        """Run a shell command in ``/workspace`` as the non-root user, streaming its lines."""
        ...

    def read_file(self, path: str) -> bytes | None:
        """A file from the container (relative paths are under ``/workspace``), or None."""
        ...


class SlotWait(msgspec.Struct, frozen=True, kw_only=True):
    """Where a container waiting for a slot stands (a limiter reports it while it waits)."""

    customer_id: str
    holder: str
    """The container's name."""
    seconds: float
    """Waited so far."""
    position: int
    """Among its customer's waiting containers; 1: the next one of them to get a slot."""
    waiting: int
    """Containers waiting, all customers."""
    customer_running: int
    customer_limit: int
    running: int
    limit: int
    granted: bool = False
    """The wait is over: the slot was granted."""

    def describe(self) -> str:
        """One log line, e.g. ``waiting for a sandbox slot (0s so far): customer acme holds
        2 of its 2; 3 waiting, this container 1st of acme's``."""
        if self.granted:
            return f"sandbox slot granted after {self.seconds:.0f}s"
        return f"waiting for a sandbox slot ({self.seconds:.0f}s so far): {self.standing()}"

    def standing(self) -> str:
        """Why it waits and where it stands in line."""
        if self.customer_running >= self.customer_limit:
            held = (f"customer {self.customer_id} holds {self.customer_running} "
                    f"of its {self.customer_limit}")
        else:
            held = f"all {self.limit} slots are taken"
        return (f"{held}; {self.waiting} waiting, this container {_ordinal(self.position)} "
                f"of {self.customer_id}'s")


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


class SlotLimiter(Protocol):
    """Bounds running containers globally and per customer; waiters are served fairly.

    A slot is held by a container name (``holder``) from ``acquire`` until ``release``;
    ``placed`` says its container now exists, so a limiter that can see the engine may
    release the slot once the container is gone, whoever removed it."""

    def acquire(
        self,
        customer_id: str,
        holder: str,
        timeout: float | None = None,
        *,
        execution_id: str | None = None,
        on_wait: Callable[[SlotWait], None] | None = None,
    ) -> None:
        """Wait for a slot (``TransientError`` after ``timeout`` seconds); idempotent per
        holder. ``on_wait`` hears of a wait once at first, then now and then (never every
        poll), and when the slot is granted after a wait."""
        ...

    def placed(self, holder: str) -> None:
        """``holder``'s container exists now."""
        ...

    def release(self, holder: str) -> None: ...


# --------------------------------------------------------------------------- verification
class CriterionResult(msgspec.Struct, frozen=True, kw_only=True):
    passed: bool
    actual: Any
    required: Any
    detail: str | None = None


class VerificationResult(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """The contract's Verification Result (``POST /verify`` and the VERIFY stage)."""

    task_id: str
    success: bool
    results: dict[str, CriterionResult]
    commands: list[CommandResult] = msgspec.field(default_factory=list)
    notes: list[str] = msgspec.field(default_factory=list)
    """Free-text criteria from the task list: shown, not machine-checked."""
    feedback: str | None = None
    """A trimmed account of what failed, given to the coding tool on the next round."""
