"""Running a :class:`SetupPlan`: a cache hit, or an install in a setup container with egress.

:meth:`Installer.ensure` looks the plan's key up in the project's :class:`DepsCache`. On a
hit it returns the volumes to mount (nothing runs). On a miss it makes fresh volumes, starts
a setup container with them mounted read-write and the egress proxy's directory mounted,
copies the working copy in, runs the plan's commands one by one with the proxy variables
set (their lines stream to ``on_line``; every refused request is reported as a line
``blocked: host:port by `command```), and on success marks the cache complete. A failing
command, or a blocked request, raises :class:`EnvironmentFailure` whose message says what
failed and which setting allows what was blocked; nothing half-made is kept. Refusals are
bounded per run (``egress.MAX_REFUSALS`` listed, the rest counted; see ``egress``).
"""

from __future__ import annotations

import shlex
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import msgspec
from docker.types import Mount

from runner.dockerhost import docker_base_url
from runner.errors import CancelledError, EnvironmentFailure, RunnerError
from runner.ports import CommandResult, ContainerSpec, LineSink, VolumeMount
from runner.sandbox import labels as lbl
from runner.sandbox.command import exec_quiet
from runner.sandbox.engine import call, ignore_missing
from runner.sandbox.usage import ContainerUsage
from runner.settings import Settings
from runner.setup.cache import CacheEntry, DepsCache, cache_key
from runner.setup.detect import SetupPlan
from runner.setup.egress import (
    PROXY_PORT,
    Blocked,
    EgressProxy,
    Refusal,
    container_env,
    forwarder_argv,
)
from runner.setup.toolchain import Choice, Offered
from runner.verify.config import read_repo_file
from runner.verify.verifier import COMMAND_ENV

SETUP_ENV = {
    **COMMAND_ENV,
    "PIP_NO_CACHE_DIR": "1",
    "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    "npm_config_cache": "/workspace/.devteam-npm-cache",
    "npm_config_update_notifier": "false",
    "npm_config_fetch_retries": "1",
    "npm_config_fetch_retry_mintimeout": "2000",
    "npm_config_fetch_retry_maxtimeout": "10000",
}
"""Every setup command's environment (verification's, plus installer settings; the proxy's
and the plan's own are added per run)."""
TAIL_LINES = 30


class SetupResult(msgspec.Struct, frozen=True, kw_only=True):
    """What a setup did (recorded as the SETUP stage's result)."""

    tool: str
    cached: bool
    """True when the environment came from the cache (no command ran)."""
    seconds: float
    key: str = ""
    volumes: dict[str, str] = msgspec.field(default_factory=dict)
    """Cached path → volume; mount them with :meth:`SetupResult.mounts`."""
    bytes: int = 0
    commands: list[CommandResult] = msgspec.field(default_factory=list)
    blocked: list[Refusal] = msgspec.field(default_factory=list)
    """The first ``egress.MAX_REFUSALS`` distinct requests the proxy refused."""
    blocked_unlisted: int = 0
    """Refused requests past those in ``blocked`` (counted, not listed)."""
    env: dict[str, str] = msgspec.field(default_factory=dict)
    """Variables verification commands need (``PATH`` with the venv or ``node_modules``, and
    the chosen Node.js line)."""
    toolchain: list[Choice] = msgspec.field(default_factory=list)
    """The Node.js line and Python chosen for the project (its plan's)."""
    container: ContainerUsage | None = None
    """What the setup container consumed (None when setup came from the cache)."""

    def mounts(self, *, read_only: bool = True) -> tuple[VolumeMount, ...]:
        return tuple(VolumeMount(volume=v, path=p, read_only=read_only)
                     for p, v in sorted(self.volumes.items()))


NOTHING = SetupResult(tool="none", cached=False, seconds=0.0)


def nothing_to_install(plan: SetupPlan) -> SetupResult:
    """The result of a plan that installs nothing: no volumes, but its toolchain's ``PATH``."""
    return msgspec.structs.replace(NOTHING, env=dict(plan.env), toolchain=list(plan.toolchain))


class Installer:
    """Runs setups in the sandbox; ``sandbox`` is a ``DockerSandbox`` (blocking calls)."""

    def __init__(self, settings: Settings, sandbox: Any, cache: DepsCache) -> None:
        self.settings = settings
        self.sandbox = sandbox
        self.cache = cache
        self._image: dict[str, Any] | None = None

    def key(self, plan: SetupPlan, workdir: Path) -> str:
        """The cache key of ``plan`` for the working copy at ``workdir``."""
        manifests = {name: read_repo_file(workdir, name) for name in plan.manifests}
        return cache_key(plan, manifests, self.image_id())

    def image_id(self) -> str:
        return str(self._inspect()["Id"])

    def offered(self) -> Offered:
        """The toolchains the sandbox image offers (its ``devteam.toolchain.*`` labels)."""
        labels = (self._inspect().get("Config") or {}).get("Labels") or {}
        return Offered.from_labels({str(k): str(v) for k, v in dict(labels).items()})

    def _inspect(self) -> dict[str, Any]:
        if self._image is None:
            info = call(f"inspect image {self.sandbox.image}", self.sandbox.api.inspect_image,
                        self.sandbox.image)
            self._image = dict(info)
        return self._image

    def ensure(self, spec: ContainerSpec, plan: SetupPlan, workdir: Path, *,
               on_line: LineSink | None = None,
               cancel: threading.Event | None = None) -> SetupResult:
        """The environment of ``plan`` for ``spec``'s project: cached, or installed now.

        ``spec`` names the setup container (its ``mounts`` and ``egress_dir`` are filled in
        here). Raises EnvironmentFailure when setup fails, CancelledError on ``cancel``.
        """
        if not plan.needed:
            return nothing_to_install(plan)
        started = time.monotonic()
        key = self.key(plan, workdir)
        paths = list(plan.cache_paths)
        entry = self.cache.lookup(spec.customer_id, spec.project_id, key, paths)
        if entry is not None:
            return self._result(plan, entry, cached=True, seconds=time.monotonic() - started)
        engine = docker_base_url(self.settings)
        if not engine.startswith("unix://"):
            raise EnvironmentFailure(
                f"setup needs egress through the proxy beside the worker, which a remote Docker "
                f"engine ({engine}) cannot reach: run setup-needing projects on a worker whose "
                "engine is local, or install their dependencies into the sandbox image",
                details={"engine": engine, "tool": plan.tool},
            )
        volumes = self.cache.prepare(spec.customer_id, spec.project_id, key, paths)
        directory = Path(tempfile.mkdtemp(prefix="devteam-egress-"))
        try:
            self._hand_over(spec, list(volumes.values()))
            with EgressProxy(self.settings, spec.customer_id, directory) as proxy:
                box = msgspec.structs.replace(
                    spec,
                    mounts=tuple(VolumeMount(volume=v, path=p, read_only=False)
                                 for p, v in volumes.items()),
                    egress_dir=str(directory),
                )
                commands, blocked, size, usage = self._install(box, plan, workdir, proxy,
                                                               on_line, cancel)
        except BaseException:
            self.cache.discard(spec.customer_id, spec.project_id, key, paths)
            raise
        seconds = time.monotonic() - started
        entry = self.cache.commit(spec.customer_id, spec.project_id, key, paths, size=size,
                                  seconds=seconds)
        return msgspec.structs.replace(
            self._result(plan, entry, cached=False, seconds=seconds),
            commands=commands, blocked=blocked.kept, blocked_unlisted=blocked.unlisted,
            container=usage)

    def _install(self, spec: ContainerSpec, plan: SetupPlan, workdir: Path, proxy: EgressProxy,
                 on_line: LineSink | None,
                 cancel: threading.Event | None,
                 ) -> tuple[list[CommandResult], Blocked, int, ContainerUsage | None]:
        self.sandbox.remove(spec)  # a crashed earlier attempt may have left it
        session = self.sandbox.session(spec, on_wait=on_line)
        try:
            session.copy_in(workdir)
            self._start_forwarder(session.name)
            env = {**SETUP_ENV, **container_env(proxy.has_ca), **plan.env}
            timeout = float(self.settings.setup.timeout_seconds)
            results: list[CommandResult] = []
            blocked = Blocked()
            for command in plan.commands:
                if cancel is not None and cancel.is_set():
                    raise CancelledError("setup cancelled")
                if on_line is not None:
                    on_line(f"$ {command}")
                result = session.run(command, timeout=timeout, on_line=on_line,
                                     cancel=cancel, env=env)
                results.append(result)
                _note_refusals(blocked, proxy, command, on_line)
                if result.cancelled:
                    raise CancelledError("setup cancelled", details={"command": command})
                if not result.ok:
                    raise self._failure(plan, result, blocked, proxy.unread_bytes,
                                        log_full=proxy.log_full)
            size = _size(session, plan.cache_paths)
        finally:
            usage = self.sandbox.remove(spec)
        return results, blocked, size, usage

    def _hand_over(self, spec: ContainerSpec, volumes: list[str]) -> None:
        """Give the fresh (root-owned) cache volumes to the sandbox user: a one-off
        container of our own image, no network, only CAP_CHOWN, runs ``chown`` on them."""
        api = self.sandbox.api
        targets = [f"/v{i}" for i in range(len(volumes))]
        host = api.create_host_config(
            mounts=[Mount(t, v, type="volume") for t, v in zip(targets, volumes, strict=True)],
            network_mode="none", cap_drop=["ALL"], cap_add=["CHOWN"],
            security_opt=["no-new-privileges"], read_only=True, auto_remove=False,
        )
        name = f"{spec.execution_id[:40]}-chown-{uuid.uuid4().hex[:8]}"
        what = f"prepare cache volumes of {spec.project_id}"
        created = call(what, api.create_container, self.sandbox.image,
                       command=["chown", "10001:10001", *targets], user="0:0", name=name,
                       host_config=host, network_disabled=True, labels=lbl.labels(spec))
        try:
            call(what, api.start, created["Id"])
            status = call(what, api.wait, created["Id"], timeout=60)
        finally:
            ignore_missing(f"remove {name}", api.remove_container, created["Id"], force=True)
        if int(status.get("StatusCode", 1)) != 0:
            raise EnvironmentFailure(f"could not prepare the dependency cache of "
                                     f"{spec.project_id} (chown exited {status})")

    def _start_forwarder(self, container: str) -> None:
        api = self.sandbox.api
        what = f"start the egress forwarder in {container}"
        exec_id = call(what, api.exec_create, container, forwarder_argv(), user="10001:10001")
        call(what, api.exec_start, exec_id["Id"], detach=True)
        probe = ["python3", "-c", (
            "import socket,sys,time\n"
            "for _ in range(100):\n"
            "    try:\n"
            f"        socket.create_connection(('127.0.0.1', {PROXY_PORT}), 0.2).close()\n"
            "        sys.exit(0)\n"
            "    except OSError:\n"
            "        time.sleep(0.05)\n"
            "sys.exit(1)\n")]
        if exec_quiet(api, container, probe) != 0:
            raise EnvironmentFailure(f"the egress forwarder did not start in {container}")

    def _failure(self, plan: SetupPlan, result: CommandResult, blocked: Blocked,
                 unread_bytes: int, *, log_full: bool = False) -> EnvironmentFailure:
        tail = "\n".join(result.output_tail.rstrip().splitlines()[-TAIL_LINES:])
        what = ("timed out" if result.timed_out
                else f"exited {result.exit_code}")
        message = f"setup failed: `{result.command}` {what}"
        if blocked.kept:
            message += (f"; blocked by the egress allowlist: {blocked.hosts()} (allow a host "
                        "with DEVTEAM_SETUP_ALLOW_EXTRA, or for one customer with "
                        "DEVTEAM_SETUP_CUSTOMER_ALLOW)")
        if unread_bytes:
            message += f"; {unread_bytes} more bytes of the proxy's log were not read"
        if log_full:
            message += ("; the proxy's log reached its size limit, so the requests it "
                        "refused after that are not listed")
        return EnvironmentFailure(message, details={
            "tool": plan.tool,
            "command": result.command,
            "exitCode": result.exit_code,
            "timedOut": result.timed_out,
            "blocked": [msgspec.to_builtins(r) for r in blocked.kept],
            "blockedUnlisted": blocked.unlisted,
            "proxyLogUnreadBytes": unread_bytes,
            "proxyLogFull": log_full,
            "tail": tail,
        })

    def _result(self, plan: SetupPlan, entry: CacheEntry, *, cached: bool,
                seconds: float) -> SetupResult:
        return SetupResult(tool=plan.tool, cached=cached, seconds=round(seconds, 3),
                           key=entry.key, volumes=dict(entry.volumes), bytes=entry.bytes,
                           env=dict(plan.env), toolchain=list(plan.toolchain))


def _note_refusals(blocked: Blocked, proxy: EgressProxy, command: str,
                   on_line: LineSink | None) -> None:
    """Add what the proxy refused while ``command`` ran; a line for each new refusal kept,
    one for those only counted."""
    unlisted = blocked.unlisted
    for refusal in proxy.new_refusals(command):
        if blocked.add(refusal) and on_line is not None:
            on_line(refusal.describe())
    if blocked.unlisted > unlisted and on_line is not None:
        on_line(f"blocked: {blocked.unlisted - unlisted} more requests by `{command}` "
                f"(past the first {blocked.limit} refusals: counted, not listed)")


def _size(session: Any, paths: list[str]) -> int:
    """Bytes the cached directories hold (as ``du`` counts them; 0 when unknown)."""
    listed = " ".join(shlex.quote(p) for p in paths)
    command = f"du -sk {listed} 2>/dev/null | awk '{{s+=$1}} END {{print s*1024}}'"
    try:
        result = session.run(command, timeout=120)
    except RunnerError:
        return 0
    try:
        return int(result.output_tail.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return 0
