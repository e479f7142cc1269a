"""Which Docker engine the service talks to, and whether it answers.

Order: ``DEVTEAM_SANDBOX_DOCKER_HOST``, then ``DOCKER_HOST``, then the daemon the local stack
started (``.devteam/docker/docker.sock``, also while it restarts), then the system socket.
A remote engine (``tcp://…``) works the same way: that is how sandboxes move off the
gateway's machine.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from runner.settings import Settings

SYSTEM_SOCKET = Path("/var/run/docker.sock")


def local_docker_socket(settings: Settings) -> Path:
    """The socket of the dockerd that ``devteam services up`` starts when none is reachable.

    Unix socket paths are limited to ~107 bytes, so a deep checkout falls back to /tmp.
    """
    path = settings.path(settings.stack.dir) / "docker" / "docker.sock"
    if len(str(path)) > 100:
        digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
        path = Path("/tmp") / f"devteam-docker-{digest}.sock"  # noqa: S108
    return path


def docker_base_url(settings: Settings) -> str:
    if settings.sandbox.docker_host:
        return settings.sandbox.docker_host
    if os.environ.get("DOCKER_HOST"):
        return os.environ["DOCKER_HOST"]
    ours = local_docker_socket(settings)
    if ours.exists() or _started_by_stack(settings):
        # Ours even while it restarts (the socket is briefly gone): never fall back to another
        # engine a process would then keep using.
        return f"unix://{ours}"
    return f"unix://{SYSTEM_SOCKET}"


def _started_by_stack(settings: Settings) -> bool:
    """Whether ``devteam services up`` started a dockerd for this checkout."""
    state = settings.path(settings.stack.dir) / "stack.json"
    try:
        return '"dockerd"' in state.read_text()
    except OSError:
        return False


def docker_reachable(settings: Settings, timeout: float = 1.0) -> tuple[bool, str]:
    """``(ok, detail)``: whether the engine answers a ping within ``timeout`` seconds."""
    import docker

    url = docker_base_url(settings)
    try:
        client = docker.DockerClient(base_url=url, timeout=max(1, int(timeout)), version="auto")
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        return False, f"{url}: {type(exc).__name__}"
    try:
        client.ping()
        version = client.version().get("Version", "?")
        return True, f"{url} (engine {version})"
    except Exception as exc:  # noqa: BLE001
        return False, f"{url}: {type(exc).__name__}"
    finally:
        client.close()
