"""Fixtures of the security tests: the Docker engine and runner image, sandboxes with a
small /workspace quota, and the settings a pipeline run under attack uses.

Containers these tests make directly belong to execution ids starting with ``RUN_PREFIX``;
each test removes its own, and the session fails if any is left behind.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from tests.integration.sandbox.sandbox_helpers import ours, remove_prefixed
from tests.integration.security.helpers import RUN_PREFIX
from tests.support.locks import file_lock
from tests.support.settings import use_settings

from runner.ports import ContainerSpec
from runner.sandbox import DockerSandbox, build_image, make_client
from runner.settings import get_settings

QUOTA_MB = 64
"""The /workspace quota of the direct sandbox tests (the default, 2048 MiB, takes minutes
to fill on a shared disk; the code path is the same)."""


@pytest.fixture(scope="session")
def docker_client() -> Iterator[object]:
    client = make_client(get_settings())
    yield client
    left = ours(client, RUN_PREFIX)
    remove_prefixed(client, RUN_PREFIX)
    client.close()
    assert left == ([], []), "the security tests left these behind"


@pytest.fixture(scope="session")
def runner_image(docker_client) -> str:
    """The runner image, rebuilt from containers/ when stale (the exec wrapper lives there)."""
    with file_lock("runner-image"):  # one build at a time across xdist workers
        return build_image(docker_client, get_settings(), log=lambda _m: None).image


@pytest.fixture
def make_spec(docker_client) -> Iterator[Callable[..., ContainerSpec]]:
    """Specs of this test's own execution id; its containers are removed afterwards."""
    execution_id = f"{RUN_PREFIX}-{uuid.uuid4().hex[:8]}"

    def make(**overrides) -> ContainerSpec:
        values = {
            "customer_id": "evil",
            "project_id": "evil/repo",
            "execution_id": execution_id,
            "task_id": "1.1",
            "memory_mb": 256,
            "pids": 128,
            "tmpfs_mb": 32,
        }
        values.update(overrides)
        return ContainerSpec(**values)

    yield make
    remove_prefixed(docker_client, execution_id)


@pytest.fixture
def sandbox(docker_client, runner_image) -> DockerSandbox:
    """A sandbox whose commands may keep at most ``QUOTA_MB`` MiB in /workspace."""
    return DockerSandbox(docker_client, image=runner_image, workspace_quota_mb=QUOTA_MB)


@pytest.fixture
def sandbox_with_quota(docker_client, runner_image) -> Callable[[int], DockerSandbox]:
    """``sandbox_with_quota(mb)``: a sandbox with that /workspace quota."""

    def make(quota_mb: int) -> DockerSandbox:
        return DockerSandbox(docker_client, image=runner_image, workspace_quota_mb=quota_mb)

    return make


@pytest.fixture
def attack_env(env: dict[str, str], monkeypatch) -> Callable[..., dict[str, str]]:
    """Point this test's processes (and settings) at a model server and make a failing
    verification end the execution at once (one round, no error-resolution tasks), so a
    hostile suite runs once instead of twelve times."""

    def apply(model_url: str, **extra: str) -> dict[str, str]:
        values = {
            "DEVTEAM_MODEL_API_BASE": model_url,
            "DEVTEAM_PIPELINE_STAGE_LEASE_SECONDS": "10",
            "DEVTEAM_PIPELINE_DISPATCH_GRACE_SECONDS": "15",
            "DEVTEAM_PIPELINE_RELAY_POLL_SECONDS": "0.5",
            "DEVTEAM_PIPELINE_VERIFY_ROUNDS": "1",
            "DEVTEAM_PIPELINE_MAX_RESOLUTION_TASKS": "0",
            **extra,
        }
        return use_settings(env, monkeypatch, values)

    return apply
