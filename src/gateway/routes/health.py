"""``GET /health``: every dependency checked for real, each bounded to about a second.

Postgres, Redis, Docker, git, aider, the filesystem and the sandbox image are probed
concurrently; a check that does not answer within its budget is reported as failed, so
the endpoint itself answers in about a second even when a dependency hangs. Postgres down
makes the service ``down`` (503); anything else failing makes it ``degraded`` (200).

Without a token the answer is the status alone: versions, the sandbox image's digest, free
disk and the checks' messages describe the deployment, so they need a valid token (a
token that is given but not valid is a 401, never quietly the anonymous answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import pygit2
import redis.asyncio as aioredis
from litestar import Request, Response, get

from gateway.http import docs, principal_of, respond, settings_of, store_of
from gateway.schemas import Health, HealthCheck, Live
from runner.dockerhost import docker_base_url
from runner.settings import Settings

BUDGET = 0.9
CRITICAL = ("postgres",)


_AIDER_VERSION_TTL = 300.0
_aider_cache: dict[str, tuple[float, str]] = {}
_aider_runs: dict[str, asyncio.Task[str]] = {}


async def _aider_version(path: str) -> str:
    """``aider --version`` (a Python start-up, ~1.5 s) run at most every five minutes, so
    the check stays within its budget while still proving the executable runs. A run the
    health check stops waiting for keeps going in the background for the next check."""
    cached = _aider_cache.get(path)
    if cached is not None and time.monotonic() - cached[0] < _AIDER_VERSION_TTL:
        return cached[1]
    task = _aider_runs.get(path)
    if task is None or task.done():
        task = asyncio.create_task(_run_aider_version(path))
        _aider_runs[path] = task
    return await asyncio.shield(task)


async def _run_aider_version(path: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        path, "--version", stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        env={"PATH": os.environ.get("PATH", ""), "HOME": tempfile.gettempdir()},
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=30)
    finally:
        if proc.returncode is None:
            proc.kill()
            with contextlib.suppress(Exception):
                await proc.wait()  # reap it, so no transport outlives the loop
    if proc.returncode != 0:
        raise RuntimeError(f"aider --version exited {proc.returncode}")
    version_text = out.decode().strip() or "aider"
    _aider_cache[path] = (time.monotonic(), version_text)
    return version_text


async def warm_up(settings: Settings) -> None:
    """Fill the aider version cache at start-up so the first health check is fast."""
    try:
        await _aider_version(str(settings.path(settings.aider.bin)))
    except Exception:  # noqa: BLE001 - health reports it when asked
        return


async def stop_background() -> None:
    """Cancel an ``aider --version`` still running (at shutdown: nothing outlives the app)."""
    runs = list(_aider_runs.values())
    _aider_runs.clear()
    for task in runs:
        task.cancel()
    for task in runs:
        with contextlib.suppress(BaseException):
            await task


def _version() -> str:
    try:
        return version("devteam-runner")
    except PackageNotFoundError:
        return "0.0.0"


async def _timed(name: str, probe: Callable[[], Awaitable[str]]) -> tuple[str, HealthCheck]:
    started = time.perf_counter()
    try:
        detail = await asyncio.wait_for(probe(), timeout=BUDGET)
        ok = True
    except TimeoutError:
        ok, detail = False, f"no answer within {BUDGET:.1f}s"
    except Exception as exc:  # noqa: BLE001 - a failed probe is a result, not an error
        ok, detail = False, f"{type(exc).__name__}: {str(exc)[:160]}"
    latency = round((time.perf_counter() - started) * 1000, 2)
    return name, HealthCheck(ok=ok, detail=detail, latency_ms=latency)


def _probes(
    request: Request[Any, Any, Any], settings: Settings
) -> dict[str, Callable[[], Awaitable[str]]]:
    store = store_of(request)

    async def postgres() -> str:
        async with store.reads() as tx:
            await tx.server.ping()
        return "select 1"

    async def redis_check() -> str:
        client = aioredis.Redis.from_url(settings.redis.url, socket_connect_timeout=BUDGET,
                                         socket_timeout=BUDGET)
        try:
            await client.ping()
        finally:
            await client.aclose()
        return "ping"

    def docker_client() -> Any:
        import docker

        return docker.DockerClient(base_url=docker_base_url(settings), timeout=1)

    async def docker_check() -> str:
        def ping() -> str:
            client = docker_client()
            try:
                client.ping()
                return f"engine {client.version().get('Version', '?')}"
            finally:
                client.close()

        return await asyncio.to_thread(ping)

    async def sandbox_image() -> str:
        def look() -> str:
            client = docker_client()
            try:
                image = client.images.get(settings.sandbox.image)
                return f"{settings.sandbox.image} {image.short_id}"
            finally:
                client.close()

        return await asyncio.to_thread(look)

    async def git() -> str:
        return f"libgit2 {pygit2.LIBGIT2_VERSION}"

    async def aider() -> str:
        path = settings.path(settings.aider.bin)
        if not os.access(path, os.X_OK):
            raise FileNotFoundError(f"aider not executable at {path}")
        return await _aider_version(str(path))

    async def filesystem() -> str:
        root = settings.path(settings.workspace.root)

        def check() -> str:
            root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=root, prefix=".health-") as fh:
                fh.write(b"ok")
                fh.flush()
            free = shutil.disk_usage(root).free / 2**30
            if free < 1:
                raise OSError(f"only {free:.2f} GiB free")
            return f"writable, {free:.0f} GiB free"

        return await asyncio.to_thread(check)

    return {
        "postgres": postgres, "redis": redis_check, "docker": docker_check, "git": git,
        "aider": aider, "filesystem": filesystem, "sandboxImage": sandbox_image,
    }


@get(
    "/health/live",
    summary="Liveness only: the process answers (no dependency is checked)",
    responses=docs(200, Live, {"status": "ok"}, public=True),
    tags=["core"],
)
async def live() -> Response[bytes]:
    return respond(Live(status="ok"))


@get(
    "/health",
    summary="Liveness and dependencies (the details need a token)",
    responses=docs(200, Health, {
        "status": "ok", "version": "0.1.0",
        "checks": {"postgres": {"ok": True, "detail": "select 1", "latencyMs": 0.8}}},
        401, 503, public=True),
    tags=["core"],
)
async def health(request: Request[Any, Any, Any]) -> Response[bytes]:
    detailed = request.headers.get("authorization") is not None
    if detailed:
        principal_of(request)  # 401 unless the token is valid
    settings = settings_of(request)
    results = await asyncio.gather(*(_timed(n, p) for n, p in _probes(request, settings).items()))
    checks = dict(results)
    if any(not checks[name].ok for name in CRITICAL):
        status = "down"
    elif all(c.ok for c in checks.values()):
        status = "ok"
    else:
        status = "degraded"
    body = Health(status=status)  # type: ignore[arg-type]
    if detailed:
        body = Health(status=status, version=_version(), checks=checks)  # type: ignore[arg-type]
    return respond(body, 503 if status == "down" else 200)
