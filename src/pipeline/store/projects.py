"""Projects: where a customer's repository is and how to verify it."""

from __future__ import annotations

import uuid
from typing import Any, Literal

import msgspec

from pipeline.store.common import Conn, dumps, loads, safe_text


class ProjectRow(msgspec.Struct, frozen=True, kw_only=True):
    project_id: str
    customer_id: str
    repository_url: str
    default_branch: str | None
    task_list_path: str | None
    verification: dict[str, Any]
    quota: dict[str, Any]


UPSERT = (
    "INSERT INTO projects (project_id, customer_id, repository_url) VALUES ($1, $2, $3) "
    "ON CONFLICT (project_id) DO UPDATE SET repository_url = EXCLUDED.repository_url, "
    "updated_at = now(), default_branch = CASE WHEN projects.repository_url = "
    "EXCLUDED.repository_url THEN projects.default_branch ELSE NULL END"
)
LOCK = "SELECT true FROM projects WHERE project_id = $1 FOR UPDATE"
GET = (
    "SELECT project_id, customer_id, repository_url, default_branch, task_list_path, "
    "verification, quota FROM projects WHERE project_id = $1"
)


def project_of(record: Any) -> ProjectRow:
    values = dict(record)
    values["verification"] = loads(values["verification"])
    values["quota"] = loads(values["quota"])
    return msgspec.convert(values, ProjectRow)


class InjectionRow(msgspec.Struct, frozen=True, kw_only=True):
    """A task injected into a project's list (by a person or by error resolution)."""

    task_id: str
    injection_type: Literal["priority", "replace", "positional"]
    position: int | None
    replace_task_id: str | None
    task: dict[str, Any]
    status: str
    origin_task_id: str | None = None
    """The task an error-resolution task was made for (None for a person's)."""


class NewResolution(msgspec.Struct, frozen=True, kw_only=True):
    """An error-resolution task the pipeline injects (a priority task) for ``origin_task_id``."""

    project_id: str
    task_id: str
    task: dict[str, Any]
    reason: str
    source_error_id: uuid.UUID | None
    origin_task_id: str | None


class NewInjection(msgspec.Struct, frozen=True, kw_only=True):
    project_id: str
    injection_type: Literal["priority", "replace", "positional"]
    position: int | None
    replace_task_id: str | None
    task: dict[str, Any]
    reason: str
    created_by: str


INJECT = (
    "WITH n AS (SELECT nextval(pg_get_serial_sequence('injected_tasks', 'id')) AS id) "
    "INSERT INTO injected_tasks (id, project_id, task_id, injection_type, position, "
    "replace_task_id, task, reason, created_by) SELECT n.id, $1, 'inj-' || n.id, $2, $3, $4, "
    "$5::jsonb, $6, $7 FROM n RETURNING id, task_id"
)
_INJECTION_COLUMNS = (
    "task_id, injection_type, position, replace_task_id, task, status, origin_task_id"
)
INJECTIONS = (
    f"SELECT {_INJECTION_COLUMNS} FROM injected_tasks WHERE project_id = $1 AND status IN "
    "('pending', 'done', 'reviewed', 'failed') ORDER BY id"
)
INJECTION = (
    f"SELECT {_INJECTION_COLUMNS} FROM injected_tasks WHERE project_id = $1 AND task_id = $2"
)
RESOLVE = (
    "INSERT INTO injected_tasks (project_id, task_id, injection_type, task, reason, "
    "source_error_id, origin_task_id, created_by) VALUES ($1, $2, 'priority', $3::jsonb, $4, "
    "$5, $6, 'system:pipeline') ON CONFLICT (project_id, task_id) DO NOTHING"
)
END_INJECTION = (
    "UPDATE injected_tasks SET status = $3, completed_at = now() "
    "WHERE project_id = $1 AND task_id = $2 AND status = 'pending'"
)
RESOLUTIONS = (
    "SELECT count(*) FROM injected_tasks i JOIN errors e ON e.id = i.source_error_id "
    "WHERE i.project_id = $1 AND i.origin_task_id = $2 "
    "AND i.status IN ('pending', 'done', 'failed') AND e.execution_id = $3"
)
INJECTED_PROGRESS = (
    "SELECT count(*) FILTER (WHERE status = 'done') AS done, count(*) AS total "
    "FROM injected_tasks WHERE project_id = $1 AND injection_type <> 'replace' "
    "AND status IN ('pending', 'done')"
)
RECORD_CHECKOUT = (
    "UPDATE projects SET default_branch = $2, task_list_path = coalesce(task_list_path, $3), "
    "updated_at = now() WHERE project_id = $1"
)
REVIEW_INJECTIONS = (
    "UPDATE injected_tasks SET status = 'reviewed' WHERE project_id = $1 "
    "AND source_error_id IS NOT NULL AND status IN ('done', 'failed')"
)


def injection_of(record: Any) -> InjectionRow:
    return msgspec.convert({**dict(record), "task": loads(record["task"])}, InjectionRow)


class PgProjects:
    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def upsert(self, project_id: str, customer_id: str, repository_url: str) -> None:
        """Create the project, or point it at ``repository_url`` (a new URL forgets the
        default branch)."""
        await self.conn.execute(UPSERT, project_id, customer_id, repository_url)

    async def lock(self, project_id: str) -> bool:
        """Lock the project's row until the transaction ends; False when there is none."""
        return bool(await self.conn.fetchval(LOCK, project_id))

    async def get(self, project_id: str) -> ProjectRow | None:
        record = await self.conn.fetchrow(GET, project_id)
        return None if record is None else project_of(record)

    async def review_injections(self, project_id: str) -> None:
        """A person looked at the project's errors: the error-resolution tasks injected
        for them that ended (done or failed) count as reviewed, so it may try again."""
        await self.conn.execute(REVIEW_INJECTIONS, project_id)

    async def injections(self, project_id: str) -> list[InjectionRow]:
        """The project's injected tasks still in the list, oldest first (pending, done,
        reviewed, failed)."""
        rows = await self.conn.fetch(INJECTIONS, project_id)
        return [injection_of(r) for r in rows]

    async def injection(self, project_id: str, task_id: str) -> InjectionRow | None:
        """The project's injected task ``task_id`` (whatever its status), or None."""
        r = await self.conn.fetchrow(INJECTION, project_id, task_id)
        return None if r is None else injection_of(r)

    async def add_resolution(self, new: NewResolution) -> None:
        """Inject a pending error-resolution task (nothing when the id is taken)."""
        await self.conn.execute(RESOLVE, new.project_id, new.task_id, dumps(new.task),
                                safe_text(new.reason), new.source_error_id, new.origin_task_id)

    async def end_injection(self, project_id: str, task_id: str,
                            status: Literal["done", "failed"]) -> None:
        """A pending injected task ends ``done`` or ``failed`` (one that ended stays)."""
        await self.conn.execute(END_INJECTION, project_id, task_id, status)

    async def resolutions(self, project_id: str, origin_task_id: str,
                          execution_id: uuid.UUID) -> int:
        """The error-resolution tasks for ``origin_task_id`` injected for errors of this
        execution (pending or ended, not reviewed)."""
        return int(await self.conn.fetchval(RESOLUTIONS, project_id, origin_task_id,
                                            execution_id))

    async def injected_progress(self, project_id: str) -> tuple[int, int]:
        """``(done, done + pending)`` of the injected tasks that add work (not replace)."""
        r = await self.conn.fetchrow(INJECTED_PROGRESS, project_id)
        return int(r["done"]), int(r["total"])

    async def record_checkout(
        self, project_id: str, default_branch: str, task_list_path: str
    ) -> None:
        """What a checkout found: the default branch, and the task list's path unless one
        is configured already."""
        await self.conn.execute(RECORD_CHECKOUT, project_id, default_branch, task_list_path)

    async def inject(self, new: NewInjection) -> tuple[str, int]:
        """Add a pending injected task, named ``inj-<id>``: ``(task_id, id)``."""
        r = await self.conn.fetchrow(INJECT, new.project_id, new.injection_type, new.position,
                                     new.replace_task_id, dumps(new.task),
                                     safe_text(new.reason), new.created_by)
        return str(r["task_id"]), int(r["id"])
