"""The reaper removes orphans, expired containers and old working copies, nothing else."""

from __future__ import annotations

import os
import time

import pytest
from tests.integration.sandbox.sandbox_helpers import ours

from runner.sandbox import Reaper
from runner.sandbox import labels as lbl

pytestmark = pytest.mark.docker


def _age(path, hours: float) -> None:
    stamp = time.time() - hours * 3600
    os.utime(path, (stamp, stamp))


def test_given_orphan_expired_and_live_containers_then_only_orphan_and_expired_go(
    sandbox, make_spec, execution_id, docker_client, tmp_path
):
    customer = f"cust-{execution_id}"
    live_id, orphan_id, expired_id = (f"{execution_id}-{k}" for k in ("live", "orphan", "expired"))
    common = {"customer_id": customer, "project_id": f"{customer}/p"}
    live = sandbox.session(make_spec(execution_id=live_id, **common))
    orphan = sandbox.session(make_spec(execution_id=orphan_id, **common))
    expired = sandbox.session(make_spec(execution_id=expired_id, ttl_seconds=-60, **common))
    root = tmp_path / "workspaces"
    old_copy = root / customer / "work" / "p" / "old-execution"
    new_copy = root / customer / "work" / "p" / "new-execution"
    old_live_copy = root / customer / "work" / "p" / live_id
    old_cache = root / customer / "cache" / "0123abcd.git"  # the customer's mirror: kept
    for path in (old_copy, new_copy, old_live_copy, old_cache):
        path.mkdir(parents=True)
        (path / "file.txt").write_text("x")
    _age(old_copy, 30)
    _age(old_live_copy, 30)
    _age(old_cache, 30)
    reaper = Reaper(
        docker_client,
        live_executions=lambda: {live_id, expired_id},
        workspace_root=root,
        max_age_hours=24,
        grace_seconds=0,
        scope={lbl.CUSTOMER: customer},  # other engineers' containers share this engine
    )

    report = reaper.run_once()

    assert sorted(report.containers) == sorted([orphan.name, expired.name])
    assert sorted(report.volumes) == sorted([f"{orphan.name}-ws", f"{expired.name}-ws"])
    assert report.workspaces == [str(old_copy.resolve())]
    assert report.errors == []
    assert ours(docker_client, execution_id) == ([live.name], [f"{live.name}-ws"])
    assert live.run("echo alive", timeout=10).output_tail == "alive"
    assert not old_copy.exists()
    assert new_copy.exists()
    assert old_live_copy.exists()
    assert old_cache.exists()
    assert reaper.run_once().total == 0


def test_given_unknown_liveness_then_only_expired_containers_go(
    sandbox, make_spec, execution_id, docker_client
):
    customer = f"cust-{execution_id}"
    common = {"customer_id": customer, "project_id": f"{customer}/p"}
    running = sandbox.session(make_spec(task_id="1", **common))
    expired = sandbox.session(make_spec(task_id="2", ttl_seconds=-1, **common))
    reaper = Reaper(docker_client, grace_seconds=0, scope={lbl.CUSTOMER: customer})

    report = reaper.run_once()

    assert report.containers == [expired.name]
    assert ours(docker_client, execution_id)[0] == [running.name]


def test_given_a_young_orphan_then_the_grace_period_keeps_it(
    sandbox, make_spec, execution_id, docker_client
):
    customer = f"cust-{execution_id}"
    young = sandbox.session(make_spec(customer_id=customer, project_id=f"{customer}/p"))
    reaper = Reaper(
        docker_client,
        live_executions=set,
        grace_seconds=300,
        scope={lbl.CUSTOMER: customer},
    )

    assert reaper.run_once().total == 0
    assert ours(docker_client, execution_id)[0] == [young.name]


def test_given_two_deployments_on_one_engine_then_each_reaper_removes_only_its_own(
    sandbox, make_spec, execution_id, docker_client
):
    # Given orphaned containers of two deployments (say staging and production) that
    # share this engine but not a database, so neither knows the other's executions
    mine = sandbox.session(make_spec(execution_id=f"{execution_id}-mine", deployment="dep-a"))
    theirs = sandbox.session(make_spec(execution_id=f"{execution_id}-theirs",
                                       deployment="dep-b"))
    reaper = Reaper(docker_client, live_executions=set, grace_seconds=0,
                    scope={lbl.DEPLOYMENT: "dep-a"})

    # When deployment A's reaper runs
    report = reaper.run_once()

    # Then only A's orphan goes; B's container keeps running
    assert report.containers == [mine.name]
    assert report.volumes == [f"{mine.name}-ws"]
    assert ours(docker_client, f"{execution_id}-theirs") == ([theirs.name], [f"{theirs.name}-ws"])
    assert theirs.run("echo alive", timeout=10).output_tail == "alive"
