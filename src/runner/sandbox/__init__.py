"""The Docker sandbox: per-task containers where customer code is verified.

- :class:`DockerSandbox` (task containers) and :class:`DockerSession` (``SandboxSession``)
- :func:`classify` turns a ``CommandResult`` into a classification (None when it passed)
- :class:`FairLimiter` (``SlotLimiter``): global and per-customer container slots, fair
- :class:`Reaper`: removes what crashed or finished executions left behind
- :func:`build_image`: the runner image from ``containers/``, offline
"""

from runner.sandbox.engine import make_client
from runner.sandbox.image import BuildReport, build_image, content_hash, image_status
from runner.sandbox.labels import container_name, volume_name
from runner.sandbox.limiter import FairLimiter
from runner.sandbox.output import classify
from runner.sandbox.reaper import Reaper, ReapReport
from runner.sandbox.sandbox import HEALTH_COMMAND, DockerSandbox, container_names
from runner.sandbox.session import DockerSession
from runner.sandbox.usage import ContainerUsage

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
