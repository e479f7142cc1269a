"""Projects: where a customer's repository is and how to verify it."""

from __future__ import annotations

from typing import Any

import msgspec

from pipeline.store.common import Conn, loads


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


REVIEW_INJECTIONS = (
    "UPDATE injected_tasks SET status = 'reviewed' WHERE project_id = $1 "
    "AND source_error_id IS NOT NULL AND status IN ('done', 'failed')"
)


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
