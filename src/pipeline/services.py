"""The runner adapters a worker (or the gateway's one-step API) uses, built once per process.

Adapters that talk to other systems (Docker, Aider) are created on first use, so a worker
starts, and reports a clear ``infrastructure`` error per stage, even while Docker is down.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from functools import cached_property

from pipeline.db import Store
from pipeline.slots import PgSlotLimiter
from runner.aider import AiderTool
from runner.git import CredentialStore, GitWorkspace, RepositoryPolicy
from runner.ports import ContainerSpec, SlotLimiter
from runner.redact import Redactor, default_redactor, host_paths
from runner.sandbox import DockerSandbox, FairLimiter, container_names, make_client
from runner.sandbox.labels import deployment_of
from runner.settings import Settings
from runner.setup import DepsCache, Installer
from runner.verify import Verifier


class Services:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.credentials = CredentialStore.from_settings(settings)
        self.repositories = RepositoryPolicy.from_settings(settings)
        """Which repository URLs each customer may use (checked at the door and again
        before every network operation)."""
        # what tenants read: configured secrets, credentials, and none of the host's paths
        self.redactor: Redactor = default_redactor().with_secrets(
            self.credentials.secret_values()).with_paths(host_paths(settings))
        self._lock = threading.Lock()
        try:
            self.loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self.loop = None

    @classmethod
    def create(cls, settings: Settings, store: Store | None = None) -> Services:
        return cls(settings, store or Store.from_settings(settings))

    @cached_property
    def git(self) -> GitWorkspace:
        return GitWorkspace(self.settings, self.credentials, self.repositories)

    @cached_property
    def sandbox(self) -> DockerSandbox:
        with self._lock:
            client = make_client(self.settings)
            limiter: SlotLimiter
            if self.loop is not None:
                # The leases of containers gone from the engine are released (see slots.py).
                limiter = PgSlotLimiter(self.settings, self.store, self.loop,
                                        containers=functools.partial(container_names, client.api))
            else:
                limiter = FairLimiter(
                    self.settings.sandbox.max_containers,
                    self.settings.sandbox.max_containers_per_customer,
                )
            return DockerSandbox(client, settings=self.settings, limiter=limiter,
                                 slot_timeout=600)

    @cached_property
    def deployment(self) -> str:
        return deployment_of(self.settings)

    @cached_property
    def installer(self) -> Installer:
        box = self.settings.setup
        cache = DepsCache(
            self.sandbox.api,
            max_bytes_per_customer=int(box.cache_max_gb * 1024**3),
            per_project=box.cache_per_project,
            max_age_seconds=box.cache_max_age_hours * 3600,
        )
        return Installer(self.settings, self.sandbox, cache)

    @cached_property
    def tool(self) -> AiderTool:
        return AiderTool(self.settings, self.redactor)

    @cached_property
    def verifier(self) -> Verifier:
        return Verifier(self.settings)

    def container_spec(
        self,
        *,
        project: dict[str, object],
        execution_id: str,
        task_id: str,
        attempt: int,
        network: bool = False,
    ) -> ContainerSpec:
        """The container of one task attempt, with the project's quota over the defaults."""
        quota = dict(project.get("quota") or {})  # type: ignore[call-overload]
        box = self.settings.sandbox
        return ContainerSpec(
            customer_id=str(project["customer_id"]),
            project_id=str(project["project_id"]),
            execution_id=execution_id,
            task_id=task_id,
            attempt=attempt,
            cpus=float(quota.get("cpus", box.cpus)),
            memory_mb=int(quota.get("memoryMb", box.memory_mb)),
            pids=int(quota.get("pids", box.pids)),
            tmpfs_mb=int(quota.get("tmpfsMb", box.tmpfs_mb)),
            network=bool(quota.get("network", network)),
            ttl_seconds=box.container_ttl_seconds,
            deployment=self.deployment,
        )
