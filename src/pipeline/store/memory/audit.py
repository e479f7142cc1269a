"""The audit log in memory."""

from __future__ import annotations

import copy
import uuid

import msgspec

from pipeline.store.audit import AuditRow, NewAuditEntry
from pipeline.store.memory.base import Base, json_value


class MemoryAudit(Base):
    async def record(self, entry: NewAuditEntry) -> None:
        self.t.audit.append({**msgspec.structs.asdict(entry), "id": next(self.t.ids),
                             "details": json_value(entry.details), "at": self.now()})

    async def of_execution(self, execution_id: uuid.UUID) -> list[AuditRow]:
        return [msgspec.convert(copy.deepcopy(a), AuditRow) for a in self.t.audit
                if a["execution_id"] == execution_id]
