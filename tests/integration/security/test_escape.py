"""A malicious repository's test suite tries to escape its task container.

The suite (``hostile_suite.py``, run by ``python3`` inside the sandbox as uid 10001) tries
the network, the host's files, the Docker engine, privilege escalation, and exhausting
/tmp, /workspace, memory and processes, reporting each attempt. It runs twice over:

- directly in ``DockerSandbox`` sessions, where every attempt must be refused or stopped
  and ``classify`` must call a hit limit ``resource_limit``;
- once as a project's test command through the real pipeline (relay, worker, Aider and
  the scripted model), next to another customer's ordinary execution: the hostile one
  must end with its verification failed, classified and reported (error record and
  frames), the other must complete, and the host must be untouched.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from sqlalchemy import text
from tests.e2e.checks import containers_of, frames, remote_task_list, stage_runs
from tests.e2e.conftest import start, wait_status
from tests.integration.security.helpers import (
    SUITE,
    attempts,
    model_script,
    project_files,
)

from devtools.demo.sample import create_sample
from devtools.scripted_model import ScriptedModelServer, parse_script
from runner.errors import Classification
from runner.redact import tenant_redactor
from runner.sandbox import classify, make_client
from runner.sandbox.output import DISK_NOTE, disk_limited
from runner.settings import PROJECT_ROOT, get_settings

pytestmark = [pytest.mark.docker, pytest.mark.slow]

PROBES = {
    "network": {
        "network/tcp-1.1.1.1:53", "network/tcp-127.0.0.1:55432", "network/tcp-127.0.0.1:56379",
        "network/tcp-172.17.0.1:55432", "network/tcp-10.0.2.2:55432", "network/dns",
        "network/dns-host-gateway", "network/udp-dns-1.1.1.1", "network/interfaces",
    },
    "files": {
        "files/host-canary", "files/host-canary-via-proc-1-root", "files/host-canary-dir",
        "files/host-project", "files/host-project-security-md",
        "files/host-project-via-proc-1-root", "files/host-settings", "files/etc-shadow",
        "files/proc-1-root", "files/other-customers",
    },
    "docker": {
        "docker/socket-/var/run/docker.sock", "docker/socket-/run/docker.sock",
        "docker/socket-/run/containerd/containerd.sock",
        f"docker/socket-{PROJECT_ROOT}/.devteam/docker/docker.sock",
        "docker/socket-/proc/1/root/var/run/docker.sock", "docker/tcp-127.0.0.1:2375",
        "docker/tcp-127.0.0.1:2376", "docker/abstract-sockets",
    },
    "privilege": {
        "privilege/setuid-0", "privilege/setgid-0", "privilege/seteuid-0", "privilege/sudo",
        "privilege/su", "privilege/setuid-binaries", "privilege/write-etc-passwd",
        "privilege/write-core-pattern", "privilege/cgroup-release-agent",
        "privilege/mount-syscall", "privilege/mount-command", "privilege/chroot",
        "privilege/unshare-user-namespace", "privilege/mknod-block-device",
        "privilege/raw-socket", "privilege/ptrace",
    },
    "tmp": {"disk/tmp"},
    "memory": {"memory/allocate-10x-limit"},
    "processes": {"processes/fork-bomb"},
}


def suite_command(canary: Path, *kinds: str) -> str:
    return (f"python3 hostile_suite.py --canary {canary} --project-root {PROJECT_ROOT} "
            + " ".join(kinds))


@pytest.fixture
def canary(tmp_path: Path) -> tuple[Path, str]:
    """A file on the host that no container may read: its path and unique content."""
    secret = f"host-canary-{uuid.uuid4().hex}"
    path = tmp_path / "host" / "canary.txt"
    path.parent.mkdir()
    path.write_text(secret)
    return path, secret


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A working copy holding the hostile suite."""
    path = tmp_path / "repo"
    path.mkdir()
    shutil.copy(SUITE, path / SUITE.name)
    return path


def assert_all_contained(output: str, kinds: set[str], shown: Callable[[str], str] = str,
                         ) -> dict[str, tuple[str, str]]:
    """Every probe of ``kinds`` reported, none escaped; ``shown`` is how a probe's name
    reads where ``output`` came from (a tenant's log never shows the host's paths)."""
    seen = attempts(output)
    escaped = {name: detail for name, (verdict, detail) in seen.items() if verdict == "ESCAPED"}
    assert not escaped, escaped
    expected = {shown(name) for name in set().union(*(PROBES[k] for k in kinds))}
    assert set(seen) >= expected, expected - set(seen)
    return seen


# ------------------------------------------------------------------ straight at the sandbox
def test_given_a_hostile_suite_when_it_probes_network_host_docker_and_privileges_then_all_fail(
    sandbox, make_spec, repo, canary
):
    path, secret = canary
    session = sandbox.session(make_spec())
    session.copy_in(repo)

    result = session.run(suite_command(path, "network", "files", "docker", "privilege"),
                         timeout=120)

    seen = assert_all_contained(result.output_tail, {"network", "files", "docker", "privilege"})
    assert "SUITE DONE" in result.output_tail
    assert len(seen) == 43
    # it ran to its end and failed like a test suite: no limit was hit, nothing escaped
    assert result.exit_code == 1
    assert classify(result) is Classification.VERIFICATION
    assert secret not in result.output_tail
    assert path.read_text() == secret


def test_given_a_hostile_suite_when_it_exhausts_tmp_memory_and_processes_then_limits_stop_it(
    sandbox, make_spec, repo, canary
):
    session = sandbox.session(make_spec(memory_mb=256, pids=128, tmpfs_mb=32))
    session.copy_in(repo)

    result = session.run(suite_command(canary[0], "tmp", "memory", "processes"), timeout=120)

    seen = assert_all_contained(result.output_tail, {"tmp", "memory", "processes"})
    assert "No space left on device" in seen["disk/tmp"][1]
    assert "killed" in seen["memory/allocate-10x-limit"][1]
    assert "fork refused" in seen["processes/fork-bomb"][1]
    assert result.oom_killed
    assert result.pids_limited
    assert classify(result) is Classification.RESOURCE_LIMIT
    # the container survived its tenant: the next command runs normally
    after = session.run("echo alive", timeout=30)
    assert after.ok
    assert after.output_tail == "alive"


@pytest.mark.parametrize(
    ("kind", "quota_mb", "how"),
    [
        ("workspace", 32, "16 MiB files until something stops it"),
        ("inodes", 16, "a million empty files (4 KiB each by the quota's count)"),
        ("escapee", 32, "a writer that left the process group with setsid"),
    ],
)
def test_given_a_hostile_suite_when_it_fills_workspace_then_the_quota_kills_it(
    sandbox_with_quota, make_spec, repo, canary, kind, quota_mb, how
):
    session = sandbox_with_quota(quota_mb).session(make_spec(memory_mb=512))
    session.copy_in(repo)

    result = session.run(suite_command(canary[0], kind), timeout=120)

    # stopped by the /workspace quota, not by the timeout: reported and classified
    seen = attempts(result.output_tail)
    assert seen[f"disk/{kind}"] == ("started", ""), how
    assert not [n for n, (verdict, _) in seen.items() if verdict == "ESCAPED"], seen
    assert not result.timed_out
    assert result.exit_code == 137
    assert disk_limited(result)
    assert result.output_tail.splitlines()[-1].startswith(DISK_NOTE)
    assert f"DEVTEAM_WORKSPACE_QUOTA_MB={quota_mb}" in result.output_tail
    assert classify(result) is Classification.RESOURCE_LIMIT
    if kind == "workspace":
        assert seen["disk/workspace-file-size-cap"][0] == "contained"
    # nothing keeps writing once the command is stopped, and what it left is bounded
    first = session.run("du -sk /workspace | cut -f1", timeout=60)
    settled = session.run("sleep 2; du -sk /workspace | cut -f1", timeout=60)
    assert first.ok and settled.ok
    assert int(settled.output_tail) == int(first.output_tail)
    assert int(settled.output_tail) < (quota_mb + 160) * 1024
    # cleaning up is not punished, and the container still works
    cleanup = session.run("rm -rf /workspace/fill-* /workspace/inodes /workspace/escaped-*; "
                          "echo clean", timeout=120)
    assert cleanup.ok, cleanup.output_tail
    assert not disk_limited(cleanup)


# ------------------------------------------------------------------ through the pipeline
HOSTILE_KINDS = ("network", "files", "docker", "privilege", "tmp", "memory", "processes")


async def _add_project(store, project_id: str, url: str, quota: dict) -> None:
    async with store.transaction() as session:
        await session.execute(
            text("INSERT INTO projects (project_id, customer_id, repository_url, quota) "
                 "VALUES (:p, :c, :u, CAST(:q AS jsonb))"),
            {"p": project_id, "c": project_id.split("/", 1)[0], "u": url, "q": json.dumps(quota)},
        )


async def test_given_a_hostile_test_suite_in_the_pipeline_then_it_fails_classified_and_the_host_and_a_neighbour_are_fine(  # noqa: E501
    store, tmp_path, attack_env, procs, canary, runner_image
):
    path, secret = canary
    mtime = path.stat().st_mtime_ns
    hostile_toml = (
        "[commands]\n"
        f'test = "{suite_command(path, *HOSTILE_KINDS)}"\n'
        '[criteria]\n"test.pass" = "pass"\n'
    )
    hostile = create_sample(
        tmp_path / "hostile",
        files=project_files(**{".devteam.toml": hostile_toml, SUITE.name: SUITE.read_text()}),
        script=model_script(),
    )
    neighbour = create_sample(tmp_path / "neighbour", files=project_files(),
                              script=model_script())
    await _add_project(store, "evil/calc", hostile.url,
                       {"memoryMb": 256, "pids": 128, "tmpfsMb": 32})
    with ScriptedModelServer(parse_script(model_script())) as model:
        attack_env(model.url)
        procs.relay()
        procs.worker(threads=4)
        bad = await start(store, "evil/calc", hostile.url)
        good = await start(store, "good/calc", neighbour.url)
        bad_row, good_row = await asyncio.gather(
            wait_status(store, bad, {"paused", "completed", "error", "stopped"}, timeout=600),
            wait_status(store, good, {"paused", "completed", "error", "stopped"}, timeout=600),
        )

    # the hostile suite is in the base: the baseline check meets it before any model call,
    # and the execution stops there, classified, for a person to review
    assert (bad_row["status"], bad_row["pause_reason"]) == ("paused", "human_review"), bad_row
    async with store.transaction() as session:
        error = (await session.execute(text(
            "SELECT id, stage, classification, message, details FROM errors "
            "WHERE execution_id = :e"), {"e": bad})).mappings().one()
    assert error["stage"] == "SETUP"
    assert error["classification"] == "resource_limit"
    assert "does not pass its own checks before any change (test.pass" in error["message"]
    assert "sandbox's limits were reached" in error["message"]
    assert bad_row["error_id"] == error["id"]
    got = await frames(store, bad)
    error_frames = [f["payload"] for f in got if f["type"] == "error"]
    assert [(f["classification"], f["errorId"]) for f in error_frames] == [
        ("resource_limit", str(error["id"]))]
    # every attempt was made, reported live, and contained
    logged = "\n".join(line for f in got if f["type"] == "execution-log"
                       for line in f["payload"]["lines"])
    assert_all_contained(logged, set(HOSTILE_KINDS), shown=tenant_redactor().redact)
    assert "SUITE DONE" in logged
    assert str(PROJECT_ROOT) not in logged  # the host's paths are not the tenant's to read
    runs = await stage_runs(store, bad)
    assert not [r for r in runs if r["stage"] in ("IMPLEMENT", "VERIFY")]
    [setup] = [r for r in runs if r["stage"] == "SETUP"]
    command = setup["result"]["baseline"]["commands"][0]
    assert (command["exitCode"], command["oomKilled"], command["pidsLimited"]) == (1, True, True)
    assert containers_of(bad) == []
    # the other customer's execution, running at the same time, completed normally
    assert good_row["status"] == "completed", good_row
    assert remote_task_list(neighbour).progress() == (1, 1)
    assert containers_of(good) == []
    # the host is untouched: its file, its database, its Redis and its Docker engine
    assert path.read_text() == secret
    assert path.stat().st_mtime_ns == mtime
    assert secret not in logged
    async with store.transaction() as session:
        assert (await session.execute(text("SELECT 1"))).scalar_one() == 1
    client = redis.Redis.from_url(get_settings().redis.url)
    try:
        assert client.ping()
    finally:
        client.close()
    docker_client = make_client(get_settings())
    try:
        assert docker_client.ping()
    finally:
        docker_client.close()
