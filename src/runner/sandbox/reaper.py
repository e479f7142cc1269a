"""The reaper: removes what executions left behind.

Containers and volumes carrying our labels go when their execution is no longer live (a
worker crashed before cleaning up) or their expiry label has passed; working copies go when
they are older than the configured age. Containers are listed *before* the live set is
read, so a container made for an execution that started meanwhile is never mistaken for an
orphan; a short grace period covers clocks and in-flight creations as well.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

import msgspec

from runner.errors import RunnerError
from runner.removal import remove_tree
from runner.sandbox import labels as lbl
from runner.sandbox.engine import call, ignore_missing

LiveExecutions = Callable[[], Collection[str]]
"""Returns the ids of executions that are still running (their containers must stay)."""


class ReapReport(msgspec.Struct, kw_only=True):
    """What one pass removed (names and paths), and what it could not remove."""

    containers: list[str] = msgspec.field(default_factory=list)
    volumes: list[str] = msgspec.field(default_factory=list)
    workspaces: list[str] = msgspec.field(default_factory=list)
    errors: list[str] = msgspec.field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.containers) + len(self.volumes) + len(self.workspaces)


class Reaper:
    """One pass at a time over the engine and the workspace root.

    ``live_executions`` None means liveness is unknown: only expired objects are removed.
    ``workspace_pattern`` is a glob under ``workspace_root`` naming the working copies
    (``<customer>/work/<project>/<execution>`` by default, the layout of runner.git.paths;
    per-customer caches are never matched); a working copy whose path names a live
    execution is kept whatever its age. ``scope`` narrows the pass to objects carrying those
    labels too (e.g. ``{"devteam.customer": "c1"}``).
    """

    def __init__(
        self,
        client: Any,
        *,
        live_executions: LiveExecutions | None = None,
        workspace_root: Path | None = None,
        workspace_pattern: str = "*/work/*/*",
        max_age_hours: float = 24.0,
        grace_seconds: float = 60.0,
        scope: Mapping[str, str] | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._api = client.api
        self._live = live_executions
        self._root = workspace_root
        self._pattern = workspace_pattern
        self._max_age = max_age_hours * 3600
        self._grace = grace_seconds
        self._now = now
        self._filters = {
            "label": [lbl.MANAGED_FILTER, *(f"{k}={v}" for k, v in (scope or {}).items())]
        }

    def run_once(self) -> ReapReport:
        """Remove orphaned or expired containers and volumes, then old working copies."""
        report = ReapReport()
        containers = call("list containers", self._api.containers, all=True, filters=self._filters)
        volumes = (call("list volumes", self._api.volumes, filters=self._filters) or {}).get(
            "Volumes"
        ) or []
        live = set(self._live()) if self._live is not None else None
        now = self._now()
        for item in containers:
            name = item["Names"][0].lstrip("/") if item.get("Names") else item["Id"]
            if self._doomed(item.get("Labels"), live, now):
                self._remove(
                    report, report.containers, name, self._api.remove_container, force=True
                )
        for volume in volumes:
            if self._doomed(volume.get("Labels"), live, now):
                self._remove(
                    report, report.volumes, volume["Name"], self._api.remove_volume, force=True
                )
        if self._root is not None:
            self._reap_workspaces(report, live, now)
        return report

    def _doomed(
        self, item_labels: dict[str, str] | None, live: set[str] | None, now: float
    ) -> bool:
        if lbl.expired(item_labels, now):
            return True
        if live is None or lbl.age(item_labels, now) < self._grace:
            return False
        return (item_labels or {}).get(lbl.EXECUTION) not in live

    def _remove(
        self, report: ReapReport, into: list[str], name: str, fn: Callable[..., Any], **kwargs: Any
    ) -> None:
        try:
            if ignore_missing(f"reap {name}", fn, name, **kwargs):
                into.append(name)
        except RunnerError as exc:
            report.errors.append(exc.message)
        except Exception as exc:  # noqa: BLE001 - one bad object never stops the pass
            report.errors.append(f"reap {name}: {type(exc).__name__}: {exc}")

    def _reap_workspaces(self, report: ReapReport, live: set[str] | None, now: float) -> None:
        assert self._root is not None
        root = self._root.resolve()
        if not root.is_dir():
            return
        for path in sorted(root.glob(self._pattern)):
            try:
                self._reap_workspace(report, root, path, live, now)
            except Exception as exc:  # noqa: BLE001 - one bad copy never stops the pass
                report.errors.append(f"remove {path}: {type(exc).__name__}: {exc}")

    def _reap_workspace(
        self, report: ReapReport, root: Path, path: Path, live: set[str] | None, now: float
    ) -> None:
        if path.is_symlink() or not path.is_dir():
            return
        resolved = path.resolve()
        if not resolved.is_relative_to(root) or resolved == root:
            return
        if live is not None and live.intersection(path.relative_to(root).parts):
            return
        if now - path.stat().st_mtime < self._max_age:
            return
        left = remove_tree(path)
        if left:
            shown = "; ".join(left[:3]) + (f" and {len(left) - 3} more" if len(left) > 3 else "")
            report.errors.append(f"remove {path}: {shown}")
        else:
            report.workspaces.append(str(path))
