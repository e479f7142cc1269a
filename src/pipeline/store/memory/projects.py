"""Projects and their injected tasks in memory."""

from __future__ import annotations

import copy
import uuid
from typing import Any, Literal

import msgspec

from pipeline.store.common import safe_text
from pipeline.store.memory.base import Base, json_value
from pipeline.store.projects import InjectionRow, NewInjection, NewResolution, ProjectRow


class MemoryProjects(Base):
    async def upsert(self, project_id: str, customer_id: str, repository_url: str) -> None:
        now = self.now()
        row = self.t.projects.get(project_id)
        if row is None:
            self.t.projects[project_id] = {
                "project_id": project_id, "customer_id": customer_id,
                "repository_url": repository_url, "default_branch": None,
                "task_list_path": None, "verification": {}, "quota": {},
                "created_at": now, "updated_at": now,
            }
            return
        if row["repository_url"] != repository_url:
            row["default_branch"] = None
        row["repository_url"] = repository_url
        row["updated_at"] = now

    async def lock(self, project_id: str) -> bool:
        return project_id in self.t.projects

    async def get(self, project_id: str) -> ProjectRow | None:
        row = self.t.projects.get(project_id)
        if row is None:
            return None
        fields = {k: v for k, v in row.items() if k not in ("created_at", "updated_at")}
        return msgspec.convert(copy.deepcopy(fields), ProjectRow)

    async def review_injections(self, project_id: str) -> None:
        for task in self.t.injected_tasks:
            if (task["project_id"] == project_id and task.get("source_error_id") is not None
                    and task["status"] in ("done", "failed")):
                task["status"] = "reviewed"

    async def injections(self, project_id: str) -> list[InjectionRow]:
        return [_injection(t) for t in self.t.injected_tasks if t["project_id"] == project_id
                and t["status"] in ("pending", "done", "reviewed", "failed")]

    async def injection(self, project_id: str, task_id: str) -> InjectionRow | None:
        found = self._injected(project_id, task_id)
        return None if found is None else _injection(found)

    def _injected(self, project_id: str, task_id: str) -> dict[str, Any] | None:
        return next((t for t in self.t.injected_tasks
                     if t["project_id"] == project_id and t["task_id"] == task_id), None)

    async def add_resolution(self, new: NewResolution) -> None:
        if new.project_id not in self.t.projects:
            raise LookupError(f"foreign key: no project {new.project_id}")
        if self._injected(new.project_id, new.task_id) is not None:
            return
        self.t.injected_tasks.append({
            **msgspec.structs.asdict(new), "reason": safe_text(new.reason),
            "id": next(self.t.ids), "injection_type": "priority",
            "position": None, "replace_task_id": None, "task": json_value(new.task),
            "status": "pending", "created_by": "system:pipeline", "created_at": self.now(),
            "completed_at": None})

    async def end_injection(self, project_id: str, task_id: str,
                            status: Literal["done", "failed"]) -> None:
        found = self._injected(project_id, task_id)
        if found is not None and found["status"] == "pending":
            found.update(status=status, completed_at=self.now())

    async def resolutions(self, project_id: str, origin_task_id: str,
                          execution_id: uuid.UUID) -> int:
        errors = {e["id"] for e in self.t.errors if e["execution_id"] == execution_id}
        return sum(1 for t in self.t.injected_tasks
                   if t["project_id"] == project_id and t.get("origin_task_id") == origin_task_id
                   and t["status"] in ("pending", "done", "failed")
                   and t.get("source_error_id") in errors)

    async def inject(self, new: NewInjection) -> tuple[str, int]:
        if new.project_id not in self.t.projects:
            raise LookupError(f"foreign key: no project {new.project_id}")
        injection_id = next(self.t.ids)
        task_id = f"inj-{injection_id}"
        self.t.injected_tasks.append({
            **msgspec.structs.asdict(new), "reason": safe_text(new.reason),
            "id": injection_id, "task_id": task_id,
            "task": json_value(new.task), "status": "pending", "source_error_id": None,
            "created_at": self.now()})
        return task_id, injection_id

    async def record_checkout(
        self, project_id: str, default_branch: str, task_list_path: str
    ) -> None:
        row = self.t.projects.get(project_id)
        if row is not None:
            row["default_branch"] = default_branch
            row["task_list_path"] = row["task_list_path"] or task_list_path
            row["updated_at"] = self.now()

    async def injected_progress(self, project_id: str) -> tuple[int, int]:
        adding = [t["status"] for t in self.t.injected_tasks
                  if t["project_id"] == project_id and t["injection_type"] != "replace"
                  and t["status"] in ("pending", "done")]
        return adding.count("done"), len(adding)


def _injection(t: dict[str, Any]) -> InjectionRow:
    return InjectionRow(task_id=t["task_id"], injection_type=t["injection_type"],
                        position=t.get("position"), replace_task_id=t.get("replace_task_id"),
                        task=copy.deepcopy(t.get("task") or {}), status=t["status"],
                        origin_task_id=t.get("origin_task_id"))
