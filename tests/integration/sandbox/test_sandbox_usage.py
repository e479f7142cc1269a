"""What a task container consumed, read from its cgroup as it is removed."""

from __future__ import annotations

import pytest

from runner.sandbox import DockerSandbox

pytestmark = pytest.mark.docker

MIB = 1024 * 1024


def test_removing_a_container_reports_its_cpu_peak_memory_and_wall_time(sandbox, make_spec):
    spec = make_spec()
    session = sandbox.session(spec)
    # 64 MiB touched, and some CPU spent, by the container's own process
    result = session.run(
        "python3 -c \"b = bytearray(64 * 1024 * 1024); sum(range(3_000_000))\"", timeout=60)
    assert result.ok, result.output_tail
    usage = sandbox.remove(spec)
    assert usage is not None
    assert usage.cpu_seconds is not None and usage.cpu_seconds > 0
    assert usage.peak_memory_bytes is not None and usage.peak_memory_bytes >= 64 * MIB
    assert usage.peak_memory_bytes <= spec.memory_mb * MIB  # the container's own cgroup
    assert usage.wall_seconds is not None and usage.wall_seconds > 0
    # gone: nothing more to report, and removing again is still fine
    assert sandbox.remove(spec) is None


def test_a_container_this_sandbox_did_not_hand_out_has_no_wall_time(sandbox, make_spec,
                                                                   runner_image,
                                                                   docker_client):
    spec = make_spec(task_id="1.2")
    sandbox.session(spec)
    other = DockerSandbox(docker_client, image=runner_image)  # a restarted worker's
    usage = other.remove(spec)
    assert usage is not None and usage.cpu_seconds is not None
    assert usage.wall_seconds is None
