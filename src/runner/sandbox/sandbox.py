"""``DockerSandbox``: creates, finds, checks and removes task containers.

One container per task attempt, named from (execution, task, attempt) so a restarted
worker finds it again, locked down as DESIGN.md says: limits from the project's quota,
no network unless asked, read-only root, ``/workspace`` on a per-task volume, ``/tmp`` on a
size-limited tmpfs, uid 10001, no capabilities, no-new-privileges, no host mounts (but for
a setup container's egress directory: one socket and a CA bundle, read-only). Each
container answers a health check before it is handed out; one that does not is replaced
with exponential backoff a bounded number of times.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from docker.types import Mount
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from runner.errors import InfrastructureError, RunnerError, TransientError
from runner.ports import ContainerSpec, LineSink, SlotLimiter
from runner.sandbox import labels as lbl
from runner.sandbox.command import USER, WORKDIR
from runner.sandbox.engine import NotFoundError, call, ignore_missing, make_client
from runner.sandbox.session import DockerSession
from runner.sandbox.usage import ContainerUsage
from runner.sandbox.usage import read as read_usage
from runner.settings import Settings, get_settings

HEALTH_COMMAND = "git --version && python3 --version && node --version"
"""What a container must answer before use: the tools verification relies on."""
HEALTH_TIMEOUT_SECONDS = 20
"""A health check still running after this long counts as failed."""


class _UnhealthyError(RunnerError):
    """A container that did not start or did not pass its health check."""


class DockerSandbox:
    """Creates, finds and removes task containers on a Docker engine.

    ``client`` is a ``docker.DockerClient`` (made from settings when omitted). With a
    ``limiter``, a slot of the spec's customer is held from ``session`` until ``remove``.
    ``health_command`` and ``create_attempts`` bound what "healthy" means and how often a
    container is replaced before ``InfrastructureError``. ``workspace_quota_mb`` is what
    ``/workspace`` may hold while a command runs (None: the exec wrapper's 2048 MiB).
    Methods block: call them from a worker thread in async code.
    """

    def __init__(
        self,
        client: Any = None,
        *,
        settings: Settings | None = None,
        image: str | None = None,
        limiter: SlotLimiter | None = None,
        slot_timeout: float | None = None,
        health_command: str = HEALTH_COMMAND,
        create_attempts: int = 3,
        backoff_seconds: float = 0.5,
        workspace_quota_mb: int | None = None,
    ) -> None:
        self._settings = settings or get_settings()
        self._client = client if client is not None else make_client(self._settings)
        self._api = self._client.api
        self.image = image or self._settings.sandbox.image
        self._limiter = limiter
        self._slot_timeout = slot_timeout
        self._health_command = health_command
        self._create_attempts = max(1, create_attempts)
        self._backoff = backoff_seconds
        self._quota_mb = workspace_quota_mb
        self._born: dict[str, float] = {}
        """When each container this sandbox handed out was first handed out (monotonic)."""

    @property
    def api(self) -> Any:
        """The engine's low-level ``APIClient`` (volumes and execs of setup use it)."""
        return self._api

    # ------------------------------------------------------------------ port
    def session(self, spec: ContainerSpec, *, on_wait: LineSink | None = None) -> DockerSession:
        """Create (or find, after a crash) the container for ``spec``, started and healthy.

        ``on_wait`` hears, in words, of a wait for a slot. Raises ``TransientError`` when no
        slot frees up within the slot timeout and ``InfrastructureError`` when no healthy
        container could be made.
        """
        name = lbl.container_name(spec)
        if self._limiter is not None:
            self._limiter.acquire(
                spec.customer_id, name, timeout=self._slot_timeout,
                execution_id=spec.execution_id,
                on_wait=None if on_wait is None else (lambda wait: on_wait(wait.describe())),
            )
        try:
            found = self._running_id(name, spec)
            if found is not None and self._healthy(name):
                session = self._session(name, spec, found)
            else:
                session = self._create_healthy(spec, name)
            if self._limiter is not None:
                self._limiter.placed(name)
            self._born.setdefault(name, time.monotonic())
            return session
        except BaseException:
            with contextlib.suppress(RunnerError):  # the original failure is the one to report
                self._discard(spec)
            raise

    def remove(self, spec: ContainerSpec) -> ContainerUsage | None:
        """Remove the container and volume of ``spec`` (killed, not stopped); idempotent.

        Returns what the container consumed (read from its cgroup just before), None when
        there was no running container. Its wall time runs from when this sandbox first
        handed it out (None for one a crashed worker left)."""
        name = lbl.container_name(spec)
        born = self._born.pop(name, None)
        usage = read_usage(self._api, name, None if born is None else time.monotonic() - born)
        self._discard(spec)
        return usage

    def remove_execution(self, execution_id: str) -> int:
        """Remove every container and volume of an execution; returns how many containers."""
        selector = {"label": [lbl.MANAGED_FILTER, f"{lbl.EXECUTION}={execution_id}"]}
        what = f"list containers of {execution_id}"
        containers = call(what, self._api.containers, all=True, filters=selector)
        removed = 0
        for item in containers:
            name = item["Names"][0].lstrip("/") if item.get("Names") else item["Id"]
            removed += self._remove_container(name)
            self._release(name)
        volumes = call(f"list volumes of {execution_id}", self._api.volumes, filters=selector)
        for volume in (volumes or {}).get("Volumes") or []:
            ignore_missing(
                f"remove volume {volume['Name']}",
                self._api.remove_volume,
                volume["Name"],
                force=True,
            )
        return removed

    def close(self) -> None:
        """Close the Docker client's connections."""
        self._client.close()

    # ------------------------------------------------------------------ internals
    def _create_healthy(self, spec: ContainerSpec, name: str) -> DockerSession:
        retrying = Retrying(
            retry=retry_if_exception_type((_UnhealthyError, TransientError)),
            stop=stop_after_attempt(self._create_attempts),
            wait=wait_exponential(multiplier=self._backoff, max=8.0),
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    return self._create_checked(spec, name)
        except (_UnhealthyError, TransientError) as exc:
            raise InfrastructureError(
                f"no healthy sandbox container after {self._create_attempts} attempts: "
                f"{exc.message}",
                details={"container": name, "image": self.image},
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _create_checked(self, spec: ContainerSpec, name: str) -> DockerSession:
        self._remove_container(name)
        container_id = self._create(spec, name)
        if not self._healthy(name):
            raise _UnhealthyError(f"{name} failed its health check")
        return self._session(name, spec, container_id)

    def _session(self, name: str, spec: ContainerSpec, container_id: str) -> DockerSession:
        return DockerSession(
            self._api, name, spec, container_id, workspace_quota_mb=self._quota_mb
        )

    def _create(self, spec: ContainerSpec, name: str) -> str:
        item_labels = lbl.labels(spec)
        volume = lbl.volume_name(spec)
        call(f"create volume {volume}", self._api.create_volume, volume, labels=item_labels)
        memory = f"{spec.memory_mb}m"
        host_config = self._api.create_host_config(
            nano_cpus=int(spec.cpus * 1e9),
            mem_limit=memory,
            memswap_limit=memory,
            pids_limit=spec.pids,
            network_mode=None if spec.network else "none",
            read_only=True,
            mounts=_mounts(spec, volume),
            tmpfs={"/tmp": f"rw,exec,nosuid,nodev,size={spec.tmpfs_mb}m,mode=1777"},  # noqa: S108
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            privileged=False,
            init=True,
        )
        try:
            created = call(
                f"create container {name}",
                self._api.create_container,
                self.image,
                command=["sleep", "infinity"],
                name=name,
                user=USER,
                working_dir=WORKDIR,
                hostname="sandbox",
                labels=item_labels,
                host_config=host_config,
                # ``network_mode="none"`` alone: the container has loopback only, and Docker
                # still writes /etc/hosts, so ``localhost`` resolves (``network_disabled``
                # would leave it empty, and Vite, vitest or any local test server fails).
                environment={"HOME": "/tmp"},  # noqa: S108
            )
        except NotFoundError:
            raise InfrastructureError(
                f"sandbox image {self.image} is missing; build it with `devteam image build`",
                details={"image": self.image},
            ) from None
        try:
            call(f"start container {name}", self._api.start, name)
        except (InfrastructureError, NotFoundError) as exc:
            raise _UnhealthyError(f"{name} did not start: {exc}") from None
        return str(created["Id"])

    def _running_id(self, name: str, spec: ContainerSpec) -> str | None:
        """The id of a running container called ``name`` made from our image with the
        mounts ``spec`` asks for (one made for another round or a crashed worker's)."""
        try:
            info = call(f"inspect {name}", self._api.inspect_container, name)
        except NotFoundError:
            return None
        config = info.get("Config") or {}
        running = bool(info.get("State", {}).get("Running"))
        same = (config.get("Image") == self.image
                and (config.get("Labels") or {}).get(lbl.MOUNTS) == lbl.mounts_hash(spec))
        return str(info["Id"]) if running and same else None

    def _healthy(self, name: str) -> bool:
        try:
            what = f"health check of {name}"
            argv = ["timeout", str(HEALTH_TIMEOUT_SECONDS), "sh", "-c", self._health_command]
            exec_id = call(what, self._api.exec_create, name, argv, user=USER)["Id"]
            call(what, self._api.exec_start, exec_id)
            code = call(what, self._api.exec_inspect, exec_id).get("ExitCode")
        except (InfrastructureError, TransientError, NotFoundError):
            return False
        return bool(code == 0)

    def _remove_container(self, name: str) -> int:
        gone = ignore_missing(
            f"remove container {name}", self._api.remove_container, name, force=True
        )
        return 1 if gone else 0

    def _discard(self, spec: ContainerSpec) -> None:
        name = lbl.container_name(spec)
        try:
            self._remove_container(name)
            volume = lbl.volume_name(spec)
            ignore_missing(f"remove volume {volume}", self._api.remove_volume, volume, force=True)
        finally:
            self._release(name)

    def _release(self, name: str) -> None:
        if self._limiter is not None:
            self._limiter.release(name)


def container_names(api: Any) -> set[str]:
    """Names of the containers labelled ours on the engine of ``api`` (any state)."""
    listed = call("list containers", api.containers, all=True,
                  filters={"label": [lbl.MANAGED_FILTER]})
    return {name.lstrip("/") for item in listed or [] for name in item.get("Names") or []}


EGRESS_TARGET = "/run/devteam-egress"
"""Where a setup container sees its egress directory (``runner.setup.egress.CONTAINER_DIR``)."""


def _mounts(spec: ContainerSpec, workspace_volume: str) -> list[Mount]:
    """``/workspace`` on its own volume, dependency caches over it, the egress directory."""
    mounts = [Mount(WORKDIR, workspace_volume, type="volume")]
    mounts.extend(
        Mount(f"{WORKDIR}/{cached.path}", cached.volume, type="volume", read_only=cached.read_only)
        for cached in spec.mounts
    )
    if spec.egress_dir is not None:
        mounts.append(Mount(EGRESS_TARGET, spec.egress_dir, type="bind", read_only=True))
    return mounts
