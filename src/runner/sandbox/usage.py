"""What a task container consumed: CPU seconds and peak memory from its cgroup, read
through the engine's stats API just before the container is removed, and its wall time.

The stats API reports the cgroup's CPU time on both cgroup versions
(``cpu_stats.cpu_usage.total_usage``, ns: ``cpuacct.usage`` on v1, ``cpu.stat``
``usage_usec`` on v2). The peak memory is ``memory_stats.max_usage``
(``memory.max_usage_in_bytes``) on v1; v2 has no such field in the API, so the
container's own ``/sys/fs/cgroup/memory.peak`` is read (kernel 5.19+).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from runner.errors import RunnerError
from runner.sandbox.command import USER
from runner.sandbox.engine import call

PEAK_FILE_BYTES = 64
"""More than ``memory.peak`` ever holds (one decimal number)."""


class ContainerUsage(msgspec.Struct, frozen=True, kw_only=True):
    """One container's consumption; None where the engine could not say."""

    cpu_seconds: float | None = None
    peak_memory_bytes: int | None = None
    wall_seconds: float | None = None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def from_stats(stats: Mapping[str, Any], peak_file: str | None = None) -> tuple[
        float | None, int | None]:
    """``(CPU seconds, peak memory bytes)`` from a one-shot stats answer; ``peak_file`` is
    the text of the container's ``memory.peak`` (cgroup v2), used when the answer has no
    ``max_usage``."""
    total = _int(_mapping(_mapping(stats.get("cpu_stats")).get("cpu_usage")).get("total_usage"))
    peak = _int(_mapping(stats.get("memory_stats")).get("max_usage"))
    if peak is None and peak_file is not None and peak_file.strip().isdigit():
        peak = int(peak_file.strip())
    return (None if total is None else total / 1e9), peak


def read(api: Any, name: str, wall_seconds: float | None) -> ContainerUsage | None:
    """The usage of container ``name`` so far (call it before removing it); None when the
    container is gone or the engine does not answer. Never raises."""
    try:
        stats = call(f"stats of {name}", api.stats, name, stream=False, one_shot=True)
    except RunnerError:
        return None
    if not isinstance(stats, Mapping) or not stats.get("cpu_stats"):
        return None  # a stopped container's stats are empty
    peak_file = None
    memory = stats.get("memory_stats")
    if not (isinstance(memory, Mapping) and "max_usage" in memory):
        peak_file = _peak_file(api, name)
    cpu, peak = from_stats(stats, peak_file)
    return ContainerUsage(cpu_seconds=cpu, peak_memory_bytes=peak,
                          wall_seconds=None if wall_seconds is None else round(wall_seconds, 3))


def _peak_file(api: Any, name: str) -> str | None:
    """The container's cgroup v2 ``memory.peak``, or None."""
    try:
        what = f"read memory.peak of {name}"
        exec_id = call(what, api.exec_create, name, ["cat", "/sys/fs/cgroup/memory.peak"],
                       user=USER)["Id"]
        out = call(what, api.exec_start, exec_id)
    except RunnerError:
        return None
    return out[:PEAK_FILE_BYTES].decode("ascii", "replace") if isinstance(out, bytes) else None
