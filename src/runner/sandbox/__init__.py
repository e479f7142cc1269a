"""The Docker sandbox: per-task containers where customer code is verified.

- :class:`DockerSandbox` (task containers) and :class:`DockerSession` (``SandboxSession``)
- :func:`classify` turns a ``CommandResult`` into a classification (None when it passed)
- :class:`FairLimiter` (``SlotLimiter``): global and per-customer container slots, fair
- :class:`Reaper`: removes what crashed or finished executions left behind
- :func:`build_image`: the runner image from ``containers/``, offline
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runner.lazy import exports

if TYPE_CHECKING:
    from runner.sandbox.engine import make_client
    from runner.sandbox.image import BuildReport, build_image, content_hash, image_status
    from runner.sandbox.labels import container_name, volume_name
    from runner.sandbox.limiter import FairLimiter
    from runner.sandbox.output import classify
    from runner.sandbox.reaper import Reaper, ReapReport
    from runner.sandbox.sandbox import HEALTH_COMMAND, DockerSandbox, container_names
    from runner.sandbox.session import DockerSession
    from runner.sandbox.usage import ContainerUsage

_HOME = {
    "make_client": "engine",
    "BuildReport": "image",
    "build_image": "image",
    "content_hash": "image",
    "image_status": "image",
    "container_name": "labels",
    "volume_name": "labels",
    "FairLimiter": "limiter",
    "classify": "output",
    "Reaper": "reaper",
    "ReapReport": "reaper",
    "HEALTH_COMMAND": "sandbox",
    "DockerSandbox": "sandbox",
    "container_names": "sandbox",
    "DockerSession": "session",
    "ContainerUsage": "usage",
}
"""Where each export lives: loaded when first used (the engine brings the Docker SDK), so
``devteam`` commands that never touch the sandbox do not load it."""

__all__ = [
    "HEALTH_COMMAND",
    "BuildReport",
    "ContainerUsage",
    "DockerSandbox",
    "DockerSession",
    "FairLimiter",
    "ReapReport",
    "Reaper",
    "build_image",
    "classify",
    "container_name",
    "container_names",
    "content_hash",
    "image_status",
    "make_client",
    "volume_name",
]

if not TYPE_CHECKING:  # type checkers see the imports above, and so still catch a typo
    __getattr__ = exports(__name__, _HOME)
