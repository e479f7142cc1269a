"""Fixtures of the sandbox tests: the real Docker engine, the runner image, and cleanup.

Every container these tests make belongs to an execution id starting with ``RUN_PREFIX``;
each test removes its own, and a session finalizer fails the run if any is left.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from tests.integration.sandbox.sandbox_helpers import RUN_PREFIX, ours, remove_prefixed
from tests.support.locks import file_lock

from runner.ports import ContainerSpec
from runner.sandbox import DockerSandbox, build_image, make_client
from runner.settings import get_settings


@pytest.fixture(scope="session")
def docker_client() -> Iterator[object]:
    client = make_client(get_settings())
    yield client
    containers, volumes = ours(client)
    remove_prefixed(client, RUN_PREFIX)
    client.close()
    assert (containers, volumes) == ([], []), "the sandbox tests left these behind"


@pytest.fixture(scope="session")
def runner_image(docker_client) -> str:
    """The runner image, built from containers/ when missing or stale (minutes, once)."""
    with file_lock("runner-image"):  # one build at a time across xdist workers
        report = build_image(docker_client, get_settings(), log=lambda _m: None)
    return report.image


@pytest.fixture
def execution_id() -> str:
    return f"{RUN_PREFIX}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def make_spec(docker_client, execution_id) -> Iterator[Callable[..., ContainerSpec]]:
    """Specs of this test's execution; whatever belongs to an execution id starting with
    ``execution_id`` is removed after the test, whichever sandbox made it."""

    def make(**overrides) -> ContainerSpec:
        values = {
            "customer_id": "cust-a",
            "project_id": "cust-a/proj",
            "execution_id": execution_id,
            "task_id": "1.1",
            "memory_mb": 256,
            "pids": 128,
        }
        values.update(overrides)
        return ContainerSpec(**values)

    yield make
    remove_prefixed(docker_client, execution_id)


@pytest.fixture
def sandbox(docker_client, runner_image) -> DockerSandbox:
    return DockerSandbox(docker_client, image=runner_image)
