"""The per-project dependency cache: installed environments kept as Docker volumes.

A setup's result (``node_modules``, ``.venv``) is kept in one volume per cached directory,
keyed by :func:`cache_key` (the manifests' content, the setup commands, the cached paths and
the sandbox image). A small *marker* volume, made only after setup succeeded, says the data
volumes are complete; its labels carry what the reaper and the status need (size, time).
Volumes live on the Docker engine, so the cache works with a remote engine too.

Tenancy: volume names are derived from the customer and the project by the service, never
from anything a repository says, and only the service chooses what a container mounts, so
no customer's container can name another customer's cache. VERIFY mounts the volumes
read-only: a task's tests cannot change what the next task is verified with.

Bounds (``DEVTEAM_SETUP_CACHE_*``): per project the newest few keys stay, per customer at
most a number of GiB, and nothing older than the age limit; :meth:`DepsCache.reap` enforces
them (workers run it with the container reaper) and removes data volumes whose setup never
finished.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from typing import Any

import msgspec

from runner.sandbox.engine import NotFoundError, call, ignore_missing
from runner.setup.detect import SetupPlan

LABEL = "devteam.deps"
CUSTOMER = "devteam.customer"
PROJECT = "devteam.project"
KEY = "devteam.deps.key"
ROLE = "devteam.deps.role"
PATHS = "devteam.deps.paths"
BYTES = "devteam.deps.bytes"
SECONDS = "devteam.deps.seconds"
CREATED = "devteam.created"
FORMAT = "1"
"""Bumped when what a cache holds changes shape (old entries then never match)."""
UNFINISHED_GRACE_SECONDS = 3 * 3600
"""Data volumes without a marker are a setup in progress until this old."""


class CacheEntry(msgspec.Struct, frozen=True, kw_only=True):
    """A complete cached environment."""

    key: str
    volumes: dict[str, str]
    """Cached path (under /workspace) → volume name."""
    bytes: int
    seconds: float
    """How long the setup that made it took."""
    created: float


def cache_key(plan: SetupPlan, manifests: Mapping[str, bytes | None], image_id: str) -> str:
    """The cache key of ``plan`` run on files with these contents in image ``image_id``."""
    digest = hashlib.sha256(f"format={FORMAT}\nimage={image_id}\ntool={plan.tool}\n".encode())
    for command in plan.commands:
        digest.update(b"command\0" + command.encode() + b"\0")
    for path in plan.cache_paths:
        digest.update(b"path\0" + path.encode() + b"\0")
    for name, value in sorted(plan.env.items()):
        digest.update(f"env\0{name}={value}\0".encode())
    for name in sorted(manifests):
        content = manifests[name]
        seen = hashlib.sha256(content).hexdigest() if content is not None else "absent"
        digest.update(f"file\0{name}\0{seen}\0".encode())
    return digest.hexdigest()


def volume_prefix(customer_id: str, project_id: str) -> str:
    """``dtdeps-<hash of customer and project>``: valid, fixed length, tenant-specific."""
    owner = hashlib.sha256(f"{customer_id}\0{project_id}".encode()).hexdigest()[:16]
    return f"dtdeps-{owner}"


def _names(
    customer_id: str, project_id: str, key: str, paths: list[str]
) -> tuple[str, dict[str, str]]:
    base = f"{volume_prefix(customer_id, project_id)}-{key[:20]}"
    return f"{base}-ok", {p: f"{base}-{i}" for i, p in enumerate(paths)}


class DepsCache:
    """Dependency caches on one Docker engine (``api`` is a docker ``APIClient``)."""

    def __init__(self, api: Any, *, max_bytes_per_customer: int, per_project: int,
                 max_age_seconds: float, now: Any = time.time) -> None:
        self._api = api
        self._max_bytes = max_bytes_per_customer
        self._per_project = max(1, per_project)
        self._max_age = max_age_seconds
        self._now = now

    def lookup(self, customer_id: str, project_id: str, key: str,
               paths: list[str]) -> CacheEntry | None:
        """The complete entry for ``key``, or None (a miss)."""
        marker, volumes = _names(customer_id, project_id, key, paths)
        try:
            info = call(f"inspect volume {marker}", self._api.inspect_volume, marker)
        except NotFoundError:
            return None
        found = dict(info.get("Labels") or {})
        if found.get(KEY) != key or found.get(CUSTOMER) != customer_id:
            return None
        for volume in volumes.values():
            try:
                call(f"inspect volume {volume}", self._api.inspect_volume, volume)
            except NotFoundError:
                self.discard(customer_id, project_id, key, paths)
                return None
        return CacheEntry(key=key, volumes=volumes, bytes=_int(found.get(BYTES)),
                          seconds=_float(found.get(SECONDS)), created=_float(found.get(CREATED)))

    def prepare(self, customer_id: str, project_id: str, key: str,
                paths: list[str]) -> dict[str, str]:
        """Fresh, empty data volumes for a setup that will fill them: path → volume."""
        self.discard(customer_id, project_id, key, paths)
        _, volumes = _names(customer_id, project_id, key, paths)
        for volume in volumes.values():
            call(f"create volume {volume}", self._api.create_volume, volume,
                 labels=self._labels(customer_id, project_id, key, "data"))
        return volumes

    def commit(self, customer_id: str, project_id: str, key: str, paths: list[str], *,
               size: int, seconds: float) -> CacheEntry:
        """Mark the data volumes of ``key`` complete (after setup succeeded)."""
        marker, volumes = _names(customer_id, project_id, key, paths)
        labels = {**self._labels(customer_id, project_id, key, "marker"),
                  PATHS: ",".join(paths), BYTES: str(size), SECONDS: f"{seconds:.3f}"}
        call(f"create volume {marker}", self._api.create_volume, marker, labels=labels)
        return CacheEntry(key=key, volumes=volumes, bytes=size, seconds=seconds,
                          created=float(labels[CREATED]))

    def discard(self, customer_id: str, project_id: str, key: str, paths: list[str]) -> None:
        """Remove the entry of ``key`` (marker first, so it is never seen half-removed)."""
        marker, volumes = _names(customer_id, project_id, key, paths)
        for volume in [marker, *volumes.values()]:
            ignore_missing(f"remove volume {volume}", self._api.remove_volume, volume,
                           force=True)

    def reap(self) -> list[str]:
        """Enforce the bounds (module docstring); returns the names of removed volumes."""
        listed = call("list dependency caches", self._api.volumes,
                      filters={"label": [f"{LABEL}=true"]}) or {}
        volumes = listed.get("Volumes") or []
        now = self._now()
        markers = [v for v in volumes if (v.get("Labels") or {}).get(ROLE) == "marker"]
        complete = {(v["Labels"].get(CUSTOMER), v["Labels"].get(PROJECT), v["Labels"].get(KEY))
                    for v in markers}
        doomed: list[dict[str, Any]] = []
        by_project: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for marker in markers:
            item = marker["Labels"]
            if now - _float(item.get(CREATED)) > self._max_age:
                doomed.append(marker)
            else:
                by_project.setdefault((item.get(CUSTOMER, ""), item.get(PROJECT, "")),
                                      []).append(marker)
        by_customer: dict[str, list[dict[str, Any]]] = {}
        for (customer, _), entries in by_project.items():
            entries.sort(key=lambda v: _float(v["Labels"].get(CREATED)), reverse=True)
            doomed += entries[self._per_project:]
            by_customer.setdefault(customer, []).extend(entries[:self._per_project])
        for entries in by_customer.values():
            entries.sort(key=lambda v: _float(v["Labels"].get(CREATED)), reverse=True)
            total = 0
            for marker in entries:
                total += _int(marker["Labels"].get(BYTES))
                if total > self._max_bytes:
                    doomed.append(marker)
        removed: list[str] = []
        for marker in doomed:
            item = marker["Labels"]
            paths = [p for p in item.get(PATHS, "").split(",") if p]
            self.discard(item.get(CUSTOMER, ""), item.get(PROJECT, ""), item.get(KEY, ""), paths)
            removed.append(marker["Name"])
        for volume in volumes:
            item = volume.get("Labels") or {}
            owner = (item.get(CUSTOMER), item.get(PROJECT), item.get(KEY))
            unfinished = (item.get(ROLE) == "data" and owner not in complete
                          and now - _float(item.get(CREATED)) > UNFINISHED_GRACE_SECONDS)
            if unfinished and ignore_missing(f"remove volume {volume['Name']}",
                                             self._api.remove_volume, volume["Name"], force=True):
                removed.append(volume["Name"])
        return removed

    def _labels(self, customer_id: str, project_id: str, key: str, role: str) -> dict[str, str]:
        return {LABEL: "true", CUSTOMER: customer_id, PROJECT: project_id, KEY: key,
                ROLE: role, CREATED: str(int(self._now()))}


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


def _float(value: str | None) -> float:
    try:
        return float(value or 0)
    except ValueError:
        return 0.0
