"""Resource limits: memory, processes and CPU are enforced by the container's cgroup."""

from __future__ import annotations

import subprocess

import pytest

from runner.errors import Classification
from runner.sandbox import classify

pytestmark = [pytest.mark.docker, pytest.mark.slow]

MEMORY_BOMB = "python3 -c 'x = []\nwhile True: x.append(bytearray(1 << 20))'"
FORK_BOMB = "bomb() { bomb | bomb & }; bomb & exec sleep 30"
"""The shell forks once, for the bomb in the background, before any bomb has forked; then
it becomes ``sleep``, which needs no pid either, and runs into the timeout the test checks.
A shell that forked after the bomb had started could find every pid taken and exit 2 at
once (dash exits on "Cannot fork"): first for a ``sleep 30`` it had to fork, then, in
``bomb; exec sleep 30``, for the second half of the top ``bomb | bomb &``, which dash forks
from the shell itself once the first half is already forking."""


def test_given_64mb_limit_when_memory_bomb_runs_then_it_is_killed_and_classified(
    sandbox, make_spec
):
    session = sandbox.session(make_spec(memory_mb=64))

    result = session.run(MEMORY_BOMB, timeout=60)

    assert result.oom_killed
    assert result.exit_code == 137
    assert not result.timed_out
    assert classify(result) is Classification.RESOURCE_LIMIT
    assert result.peak_memory_bytes is not None
    assert 32 * 2**20 < result.peak_memory_bytes <= 70 * 2**20
    # The container itself survived: the next command runs normally.
    after = session.run("echo still-here", timeout=10)
    assert after.ok
    assert after.output_tail == "still-here"
    assert not after.oom_killed


def test_given_64_pids_when_fork_bomb_runs_then_forks_are_refused_and_host_is_fine(
    sandbox, make_spec
):
    session = sandbox.session(make_spec(pids=64))

    result = session.run(FORK_BOMB, timeout=4)

    assert result.pids_limited
    assert result.timed_out
    assert classify(result) is Classification.RESOURCE_LIMIT
    assert result.duration < 15
    # The bomb is gone: the container has room again and the host still forks.
    after = session.run(
        "cat /sys/fs/cgroup/pids/pids.current 2>/dev/null || cat /sys/fs/cgroup/pids.current",
        timeout=10,
    )
    assert after.ok
    assert int(after.output_tail.strip()) < 10
    assert subprocess.run(["true"], check=False).returncode == 0


def test_given_half_a_cpu_when_container_runs_then_quota_is_in_its_cgroup(sandbox, make_spec):
    session = sandbox.session(make_spec(cpus=0.5))

    result = session.run(
        "if [ -f /sys/fs/cgroup/cpu.max ]; then cat /sys/fs/cgroup/cpu.max; "
        "else echo $(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) "
        "$(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us); fi",
        timeout=10,
    )

    quota, period = (int(v) for v in result.output_tail.split())
    assert quota / period == pytest.approx(0.5)


def test_given_a_command_when_it_burns_cpu_then_cpu_seconds_are_reported(sandbox, make_spec):
    session = sandbox.session(make_spec())

    # burns until it has used 0.3 s of CPU, however fast the machine (a fixed amount of
    # work, 3 million squares, took 0.089 s on one CI machine and failed "> 0.1")
    result = session.run(
        "python3 -c 'import time; any(time.process_time() > 0.3 for _ in iter(int, 1))'",
        timeout=60)

    assert result.ok
    assert result.cpu_seconds is not None
    assert 0.3 <= result.cpu_seconds < 30
    assert result.peak_memory_bytes is not None
    assert result.peak_memory_bytes > 1_000_000
