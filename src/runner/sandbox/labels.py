"""Names and labels of task containers and their volumes.

A container's name is derived from (execution, task, attempt) only, so a worker that
restarts after a crash finds the container its predecessor made. Labels say whose it is
and until when it may live; the reaper and ``remove_execution`` select by them.
"""

from __future__ import annotations

import hashlib
import re
import time
from urllib.parse import urlsplit

from runner.ports import ContainerSpec
from runner.settings import Settings

MANAGED = "devteam.managed"
CUSTOMER = "devteam.customer"
PROJECT = "devteam.project"
EXECUTION = "devteam.execution"
TASK = "devteam.task"
ATTEMPT = "devteam.attempt"
CREATED = "devteam.created"
EXPIRES = "devteam.expires"
DEPLOYMENT = "devteam.deployment"
"""Which deployment made it: reapers of other deployments sharing the engine leave it alone."""
MOUNTS = "devteam.mounts"
"""Hash of what the container mounts besides its workspace (caches, egress): a container
found under the same name is reused only when it matches."""

MANAGED_FILTER = f"{MANAGED}=true"
"""Label filter selecting everything the sandbox made."""

_UNSAFE = re.compile(r"[^a-z0-9_.-]+")


def _slug(value: str, limit: int) -> str:
    return _UNSAFE.sub("-", value.lower()).strip("-.")[:limit] or "x"


def container_name(spec: ContainerSpec) -> str:
    """``dt-<execution>-<task>-a<attempt>-<hash>``: readable, valid, unique per attempt.

    The hash covers the exact ids, so two ids that slug alike never share a name.
    """
    key = f"{spec.customer_id}\0{spec.execution_id}\0{spec.task_id}\0{spec.attempt}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    return f"dt-{_slug(spec.execution_id, 24)}-{_slug(spec.task_id, 24)}-a{spec.attempt}-{digest}"


def volume_name(spec: ContainerSpec) -> str:
    """The per-task volume mounted at ``/workspace``."""
    return container_name(spec) + "-ws"


def labels(spec: ContainerSpec, now: float | None = None) -> dict[str, str]:
    """Labels put on both the container and its volume."""
    created = int(now if now is not None else time.time())
    return {
        MANAGED: "true",
        CUSTOMER: spec.customer_id,
        PROJECT: spec.project_id,
        EXECUTION: spec.execution_id,
        TASK: spec.task_id,
        ATTEMPT: str(spec.attempt),
        CREATED: str(created),
        EXPIRES: str(created + spec.ttl_seconds),
        MOUNTS: mounts_hash(spec),
        **({DEPLOYMENT: spec.deployment} if spec.deployment else {}),
    }


def deployment_of(settings: Settings) -> str:
    """The deployment's name: ``DEVTEAM_SANDBOX_DEPLOYMENT``, else a hash of the database it
    keeps its executions in (the password left out), so two deployments that share an
    engine but not a database never take each other's containers for orphans."""
    if settings.sandbox.deployment:
        return settings.sandbox.deployment
    url = urlsplit(settings.database.url)
    where = f"{url.hostname or ''}:{url.port or ''}{url.path}"
    return "db-" + hashlib.sha256(where.encode()).hexdigest()[:12]


def mounts_hash(spec: ContainerSpec) -> str:
    """A short hash of ``spec``'s cache mounts and egress directory."""
    parts = [f"{m.volume}:{m.path}:{int(m.read_only)}" for m in spec.mounts]
    parts.append(f"egress:{spec.egress_dir or ''}")
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]


def expired(item_labels: dict[str, str] | None, now: float) -> bool:
    """Whether an object's expiry label is in the past (a missing label counts as expired)."""
    try:
        return float((item_labels or {}).get(EXPIRES, "0")) < now
    except ValueError:
        return True


def age(item_labels: dict[str, str] | None, now: float) -> float:
    """Seconds since the object was made, from its label (infinite when unknown)."""
    try:
        return now - float((item_labels or {})[CREATED])
    except (KeyError, ValueError):
        return float("inf")
