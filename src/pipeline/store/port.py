"""The store port: one ``Protocol`` per table noun, and ``Tx`` holding them all.

A ``Tx`` is one transaction: every query through it commits or rolls back together.
Implementations: ``pg.PgTx`` (asyncpg) and ``memory.MemoryTx``; the contract suite
(``tests/integration/store/test_contract.py``) holds both to the same behaviour.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from pipeline.store.audit import AuditRow, NewAuditEntry
from pipeline.store.details import DetailParts
from pipeline.store.executions import (
    EventRow,
    ExecutionError,
    ExecutionRow,
    NewError,
    NewEvent,
    NewExecution,
    NewStart,
    PriorStart,
    StartAttempt,
    StatusRow,
)
from pipeline.store.idempotency import KeyRow
from pipeline.store.leases import LeaseWait, Vacated
from pipeline.store.notifications import Appended, StreamRow
from pipeline.store.outbox import Claimed, CommandRow, Fleet, NewCommand
from pipeline.store.projects import InjectionRow, NewInjection, NewResolution, ProjectRow
from pipeline.store.retention import OldContext
from pipeline.store.stage_runs import Claim, Finished, RunKey, StageRunRow
from pipeline.store.usage import DayUsage, UsageSums


class Executions(Protocol):
    async def get(self, execution_id: uuid.UUID, *, lock: bool = False) -> ExecutionRow | None:
        ...

    async def latest_for_project(
        self, project_id: str, *, lock: bool = False
    ) -> ExecutionRow | None:
        """The project's active execution if any, else its most recent one."""
        ...

    async def insert(self, new: NewExecution) -> ExecutionRow: ...

    async def insert_event(self, new: NewEvent) -> None: ...

    async def event(self, event_id: uuid.UUID) -> EventRow | None: ...

    async def prior_start(self, user_id: str, project_id: str, key: str) -> PriorStart | None:
        """The start this subject's ``options.idempotencyKey`` for the project was first
        used for."""
        ...

    async def task_summaries(self, execution_id: uuid.UUID) -> dict[str, Any]: ...

    async def error_line(self, error_id: uuid.UUID) -> str | None: ...

    async def set_fields(self, execution_id: uuid.UUID, fields: dict[str, Any]) -> None:
        """Change columns of an execution (``executions.SETTABLE`` only: ValueError for
        another name) and its ``updated_at``."""
        ...

    async def list_for(
        self,
        *,
        user_id: str | None,
        project_ids: list[str] | None,
        customer_ids: list[str] | None,
        active_only: bool,
        limit: int,
    ) -> list[ExecutionRow]:
        """Newest first: of one user (unless None), in the projects or customers given
        (unless both None), active only or all."""
        ...

    async def error(
        self, execution_id: uuid.UUID, error_id: uuid.UUID
    ) -> ExecutionError | None: ...

    async def start_checked(self, new: NewStart) -> StartAttempt:
        """The event, the execution, its first command, the audit row and the first
        notification, written at once if the project exists and its latest execution is
        not active (the project's row locked): one statement, so it may run outside a
        transaction."""
        ...

    async def lock_last_update(self, execution_id: uuid.UUID) -> Any: ...

    async def active_ids(self) -> list[uuid.UUID]:
        """The executions that have not ended."""
        ...

    async def record_error(self, new: NewError) -> None: ...

    async def lock_task_context(self, event_id: uuid.UUID) -> dict[str, Any]:
        """The event's ``task_context``, its row locked; LookupError: no such event."""
        ...

    async def set_task_context(self, event_id: uuid.UUID, context: dict[str, Any]) -> None: ...

    async def statuses(self, project_ids: Sequence[str]) -> dict[str, StatusRow]:
        """Each project's latest execution with its latest SETUP, slot wait and usage,
        by project id; a project that never ran is left out. One read for them all."""
        ...


class StageRuns(Protocol):
    async def running(self, execution_id: uuid.UUID) -> bool: ...

    async def done(self, execution_id: uuid.UUID, task_id: str) -> bool: ...

    async def passes(self, execution_id: uuid.UUID, task_id: str) -> int: ...

    async def of_execution(self, execution_id: uuid.UUID) -> list[StageRunRow]: ...

    async def claim(self, key: RunKey, *, command_id: int, owner: str,
                    lease_seconds: float) -> Claim | None:
        """Insert the run, or take over one waiting for a retry or whose lease expired;
        None: finished or held (a duplicate delivery)."""
        ...

    async def status(self, key: RunKey) -> str | None: ...

    async def renew(self, run_id: int, owner: str, lease_seconds: float) -> str | None:
        """Extend ``owner``'s lease: the execution's status, or None when it is lost."""
        ...

    async def finish(self, run_id: int, owner: str, done: Finished) -> datetime | None:
        """Record the end if ``owner`` still holds the run: when it started, else None."""
        ...

    async def attempts(self, execution_id: uuid.UUID, task_id: str, stage: str) -> int: ...

    async def result(self, execution_id: uuid.UUID, task_id: str, stage: str, pass_no: int,
                     attempt: int | None = None) -> dict[str, Any] | None: ...

    async def selection(self, execution_id: uuid.UUID, task_id: str) -> dict[str, Any] | None:
        ...

    async def selects(self, execution_id: uuid.UUID) -> int: ...

    async def latest_measures(self, execution_id: uuid.UUID) -> dict[str, Any] | None: ...

    async def baseline(self, execution_id: uuid.UUID, key: str) -> dict[str, Any] | None: ...


class Outbox(Protocol):
    async def enqueue(self, command: NewCommand) -> int: ...

    async def load(self, command_id: int) -> CommandRow | None: ...

    async def complete(self, command_id: int) -> None: ...

    async def claim_batch(self, *, per_customer: int, batch: int) -> list[Claimed]: ...

    async def mark_dispatched(self, ids: list[int]) -> None: ...

    async def requeue_stale(self, *, grace_seconds: float) -> list[int]: ...

    async def fleet(self) -> Fleet: ...


class Notifications(Protocol):
    async def append(
        self,
        execution_id: uuid.UUID,
        frames: list[tuple[str, dict[str, Any]]],
        *,
        created_at: datetime,
        last_update: Any = None,
    ) -> Appended: ...

    async def head(self, *, seconds: float | None = None) -> int: ...

    async def after(self, pos: int, limit: int, *, seconds: float | None = None
                    ) -> list[StreamRow]: ...

    async def page(self, after: int, upto: int, limit: int, *,
                   projects: list[str] | None = None, customers: list[str] | None = None,
                   seconds: float | None = None) -> tuple[list[StreamRow], int]: ...


class Projects(Protocol):
    async def upsert(self, project_id: str, customer_id: str, repository_url: str) -> None: ...

    async def lock(self, project_id: str) -> bool: ...

    async def get(self, project_id: str) -> ProjectRow | None: ...

    async def review_injections(self, project_id: str) -> None: ...

    async def injections(self, project_id: str) -> list[InjectionRow]: ...

    async def inject(self, new: NewInjection) -> tuple[str, int]: ...

    async def record_checkout(
        self, project_id: str, default_branch: str, task_list_path: str
    ) -> None: ...

    async def injected_progress(self, project_id: str) -> tuple[int, int]: ...

    async def injection(self, project_id: str, task_id: str) -> InjectionRow | None: ...

    async def add_resolution(self, new: NewResolution) -> None: ...

    async def end_injection(self, project_id: str, task_id: str,
                            status: Literal["done", "failed"]) -> None: ...

    async def resolutions(self, project_id: str, origin_task_id: str,
                          execution_id: uuid.UUID) -> int: ...


class Idempotency(Protocol):
    async def insert(
        self, user_id: str, key: str, request_hash: str, *, lock: timedelta, ttl: timedelta
    ) -> bool: ...

    async def lock(self, user_id: str, key: str) -> KeyRow | None: ...

    async def retake(
        self, user_id: str, key: str, request_hash: str, *, lock: timedelta, ttl: timedelta
    ) -> None: ...

    async def finish(
        self, user_id: str, key: str, status: int, headers: dict[str, str], body: bytes
    ) -> None: ...

    async def renew(self, user_id: str, key: str, *, lock: timedelta) -> None: ...

    async def release(self, user_id: str, key: str) -> None: ...

    async def sweep(self) -> int: ...


class Audit(Protocol):
    async def record(self, entry: NewAuditEntry) -> None: ...

    async def of_execution(self, execution_id: uuid.UUID) -> list[AuditRow]: ...


class Usage(Protocol):
    async def daily(self, customer_id: str, start: datetime, stop: datetime,
                    project_id: str | None = None) -> list[DayUsage]: ...

    async def of_execution(self, execution_id: uuid.UUID) -> UsageSums: ...


class Details(Protocol):
    async def of_execution(self, execution_id: uuid.UUID, event_id: uuid.UUID) -> DetailParts:
        """What one execution's detail is read from (its event's task summaries, its stage
        runs and error records)."""
        ...


class Leases(Protocol):
    """Sandbox slot leases (``pipeline.slots`` decides; see ``store.leases``)."""

    async def serialize(self) -> None:
        """Take the grant lock until the transaction ends (grants run one at a time)."""
        ...

    async def request(self, customer_id: str, holder: str, execution_id: str | None, *,
                      ttl: float, alive: float, create: float) -> None:
        """Request a slot for ``holder`` or renew its request (a waiting lease lives
        ``alive`` seconds more, a granted one ``create``); its container lives ``ttl``."""
        ...

    async def drop_dead(self) -> int:
        """Drop expired leases and waiting leases whose waiter stopped polling."""
        ...

    async def grant(self, *, per_customer: int, global_limit: int, create: float) -> int:
        """Grant waiting leases, fewest held per customer first, then the oldest
        request, within the limits; how many were granted."""
        ...

    async def granted(self, holder: str) -> bool: ...

    async def wait(self, holder: str) -> LeaseWait | None:
        """``holder``'s waiting lease and its place in line; None: not waiting."""
        ...

    async def placed(self, holder: str) -> None: ...

    async def release(self, holder: str) -> None: ...

    async def clock(self) -> datetime:
        """The store's ``now()``."""
        ...

    async def vacate(self, existing: list[str], listed_at: datetime) -> list[Vacated]:
        """Release granted leases whose container is not in ``existing`` (the engine's
        containers listed at ``listed_at``): placed before then, or not placed and their
        creator's allowance over by then."""
        ...


class Retention(Protocol):
    """Retention's batches (``pipeline.retention`` decides; see ``store.retention``).
    ``ended``: the statuses of executions that have ended."""

    async def watermark(self) -> int:
        """``stream_position.pruned_pos``: positions up to it may be gone."""
        ...

    async def old_upto(self, after: int, batch: int, cutoff: datetime) -> int | None:
        """The last position older than ``cutoff`` among the next ``batch`` after
        ``after``; None: none of them is old."""
        ...

    async def raise_watermark(self, upto: int) -> None: ...

    async def prune_notifications(self, after: int, upto: int, cutoff: datetime,
                                  kept: list[str]) -> int:
        """Delete the notifications in ``(after, upto]`` older than ``cutoff``, except
        the ``kept`` frame types; how many went."""
        ...

    async def prune_stage_runs(self, ended: list[str], cutoff: datetime, batch: int) -> int:
        """Delete up to ``batch`` stage runs of executions ended before ``cutoff``."""
        ...

    async def old_contexts(self, ended: list[str], cutoff: datetime,
                           batch: int) -> list[OldContext]:
        """Up to ``batch`` task contexts of executions ended before ``cutoff`` that hold
        stage outputs and were not pruned yet."""
        ...

    async def set_context(self, event_id: uuid.UUID, context: dict[str, Any]) -> None: ...


class Server(Protocol):
    async def ping(self) -> None:
        """A round trip to the database (raises when it does not answer)."""
        ...


class Tx(Protocol):
    """One transaction and the queries that run in it."""

    @property
    def executions(self) -> Executions: ...

    @property
    def stage_runs(self) -> StageRuns: ...

    @property
    def outbox(self) -> Outbox: ...

    @property
    def notifications(self) -> Notifications: ...

    @property
    def projects(self) -> Projects: ...

    @property
    def idempotency(self) -> Idempotency: ...

    @property
    def audit(self) -> Audit: ...

    @property
    def usage(self) -> Usage: ...

    @property
    def details(self) -> Details: ...

    @property
    def leases(self) -> Leases: ...

    @property
    def retention(self) -> Retention: ...

    @property
    def server(self) -> Server: ...


class Listening(Protocol):
    """A LISTEN under way (``StorePort.listen``)."""

    @property
    def lost(self) -> asyncio.Event:
        """Set when the listening connection is gone: listen again."""
        ...

    async def probe(self) -> None:
        """Raise unless the listening connection answers (a half-open one does not)."""
        ...

    async def close(self) -> None: ...


class StorePort(Protocol):
    """What hands out transactions: ``async with store.tx() as tx: ...``; inside a
    ``unit()`` every ``tx()`` of the same task joins the unit's transaction."""

    def tx(self) -> AbstractAsyncContextManager[Tx]: ...

    def reads(self) -> AbstractAsyncContextManager[Tx]:
        """The queries outside a transaction (each its own statement): single reads."""
        ...

    def statement(self) -> AbstractAsyncContextManager[Tx]:
        """One statement that is a transaction by itself (committed when it returns)."""
        ...

    def snapshot(self) -> AbstractAsyncContextManager[Tx]:
        """Several reads that see one snapshot (a read-only transaction)."""
        ...

    def unit(self) -> AbstractAsyncContextManager[None]: ...

    async def listen(self, channel: str, on_notify: Callable[[str], None]) -> Listening:
        """LISTEN on ``channel``: ``on_notify(payload)`` for every NOTIFY committed from
        now on, once per distinct payload of a transaction, none of a rolled back one."""
        ...
