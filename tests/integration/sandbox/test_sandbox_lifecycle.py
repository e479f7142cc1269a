"""Creating, checking, recovering and removing task containers."""

from __future__ import annotations

import threading
import time

import pytest
from tests.integration.sandbox.sandbox_helpers import kill_when_running, ours

from runner.errors import InfrastructureError, TransientError
from runner.sandbox import HEALTH_COMMAND, DockerSandbox, FairLimiter, make_client
from runner.sandbox import labels as lbl
from runner.settings import load_settings

pytestmark = pytest.mark.docker


def test_given_a_spec_then_the_container_has_its_limits_labels_and_lockdown(
    sandbox, make_spec, docker_client
):
    spec = make_spec(cpus=1.5, memory_mb=300, pids=100, tmpfs_mb=32)

    session = sandbox.session(spec)

    info = docker_client.api.inspect_container(session.name)
    host = info["HostConfig"]
    assert info["State"]["Running"]
    assert host["NanoCpus"] == 1_500_000_000
    assert host["Memory"] == host["MemorySwap"] == 300 * 2**20
    assert host["PidsLimit"] == 100
    assert host["NetworkMode"] == "none"
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    assert "no-new-privileges" in host["SecurityOpt"]
    assert "size=32m" in host["Tmpfs"]["/tmp"]
    assert info["Config"]["User"] == "10001:10001"
    labels = info["Config"]["Labels"]
    assert labels[lbl.MANAGED] == "true"
    assert labels[lbl.CUSTOMER] == "cust-a"
    assert labels[lbl.PROJECT] == "cust-a/proj"
    assert labels[lbl.EXECUTION] == spec.execution_id
    assert labels[lbl.TASK] == "1.1"
    assert labels[lbl.ATTEMPT] == "1"
    assert float(labels[lbl.EXPIRES]) > time.time() + spec.ttl_seconds - 60
    volume = docker_client.api.inspect_volume(lbl.volume_name(spec))
    assert volume["Labels"][lbl.EXECUTION] == spec.execution_id


def test_given_container_killed_during_health_check_then_it_is_recreated(
    docker_client, runner_image, make_spec
):
    slow_check = f"sleep 1 && {HEALTH_COMMAND}"
    box = DockerSandbox(
        docker_client, image=runner_image, health_command=slow_check, backoff_seconds=0.05
    )
    spec = make_spec()
    killed: list[str] = []
    stop = threading.Event()
    killer = threading.Thread(
        target=kill_when_running, args=(docker_client, lbl.container_name(spec), killed, stop)
    )
    killer.start()
    try:
        session = box.session(spec)
    finally:
        stop.set()
        killer.join()
    try:
        assert len(killed) == 1
        assert session.container_id != killed[0]
        assert docker_client.api.inspect_container(session.name)["State"]["Running"]
        assert session.run("node -e 'console.log(6 * 7)'", timeout=20).output_tail == "42"
    finally:
        box.remove(spec)


def test_given_health_check_always_fails_then_infrastructure_error_and_nothing_left(
    docker_client, runner_image, make_spec, execution_id
):
    limiter = FairLimiter(2, 1)
    box = DockerSandbox(
        docker_client,
        image=runner_image,
        limiter=limiter,
        health_command="exit 1",
        create_attempts=3,
        backoff_seconds=0.05,
    )

    with pytest.raises(InfrastructureError) as caught:
        box.session(make_spec())

    assert "3 attempts" in caught.value.message
    assert ours(docker_client, execution_id) == ([], [])
    assert limiter.running() == 0


def test_given_missing_image_then_error_says_how_to_build_it(docker_client, make_spec):
    box = DockerSandbox(docker_client, image="devteam-runner:does-not-exist")

    with pytest.raises(InfrastructureError, match="devteam image build"):
        box.session(make_spec())


def test_given_an_execution_with_containers_when_removed_then_nothing_labelled_ours_is_left(
    sandbox, make_spec, execution_id, docker_client
):
    specs = [
        make_spec(task_id="1.1"),
        make_spec(task_id="1.2"),
        make_spec(task_id="1.2", attempt=2),
    ]
    for spec in specs:
        sandbox.session(spec).run("echo work > /workspace/f", timeout=10)
    assert len(ours(docker_client, execution_id)[0]) == 3

    started = time.monotonic()
    removed = sandbox.remove_execution(execution_id)
    elapsed = time.monotonic() - started

    assert removed == 3
    assert elapsed < 60  # the contract's bound; how fast it is: bench/sandbox.py
    assert ours(docker_client, execution_id) == ([], [])
    assert sandbox.remove_execution(execution_id) == 0


def test_given_a_session_when_removed_twice_then_it_is_gone_quickly_and_no_error(
    sandbox, make_spec, execution_id, docker_client
):
    spec = make_spec()
    sandbox.session(spec).run("sleep 1000 & echo started", timeout=10)

    started = time.monotonic()
    sandbox.remove(spec)
    elapsed = time.monotonic() - started
    sandbox.remove(spec)

    assert elapsed < 60  # the contract's bound; how fast it is: bench/sandbox.py
    assert ours(docker_client, execution_id) == ([], [])


def test_given_a_customer_at_its_limit_then_the_next_session_waits_for_a_remove(
    docker_client, runner_image, make_spec, execution_id
):
    limiter = FairLimiter(global_limit=4, per_customer_limit=1)
    box = DockerSandbox(docker_client, image=runner_image, limiter=limiter, slot_timeout=0.3)
    first, second = make_spec(task_id="1"), make_spec(task_id="2")
    other_customer = make_spec(task_id="3", customer_id="cust-z", project_id="cust-z/p")
    try:
        box.session(first)
        with pytest.raises(TransientError):
            box.session(second)
        assert len(ours(docker_client, execution_id)[0]) == 1
        box.session(other_customer)

        box.remove(first)
        box.session(second)

        assert limiter.running("cust-a") == 1
        assert limiter.running() == 2
    finally:
        box.remove_execution(execution_id)
    assert limiter.running() == 0


def test_given_engine_down_then_infrastructure_error_names_the_endpoint(tmp_path):
    settings = load_settings({"DEVTEAM_SANDBOX_DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"})

    with pytest.raises(InfrastructureError, match="not reachable") as caught:
        make_client(settings)

    assert "no-docker.sock" in caught.value.message
