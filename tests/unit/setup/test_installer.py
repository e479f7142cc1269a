"""The installer's decisions that need no engine: nothing to do, a cache hit, and a setup
that needs egress on a remote engine (refused as ``environment``, before any container)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from tests.unit.setup.fake_docker import FakeVolumes

from runner.errors import Classification, EnvironmentFailure
from runner.ports import ContainerSpec
from runner.settings import load_settings
from runner.setup import NO_SETUP, DepsCache, Installer, SetupPlan

PLAN = SetupPlan(tool="pip", commands=["pip install -r requirements.txt"],
                 cache_paths=[".venv"], manifests=["requirements.txt"],
                 env={"VIRTUAL_ENV": "/workspace/.venv"})
SPEC = ContainerSpec(customer_id="acme", project_id="acme/app", execution_id="e1",
                     task_id="1.1", attempt=0)


class Images(FakeVolumes):
    def inspect_image(self, name: str) -> dict[str, str]:
        return {"Id": f"sha256:{name}"}


def installer(engine: str) -> tuple[Installer, DepsCache]:
    api = Images()
    sandbox = SimpleNamespace(image="runner:1", api=api)  # no container call is expected
    cache = DepsCache(api, max_bytes_per_customer=10**9, per_project=2, max_age_seconds=3600)
    settings = load_settings({"DEVTEAM_SANDBOX_DOCKER_HOST": engine})
    return Installer(settings, sandbox, cache), cache


def test_given_nothing_to_install_then_nothing_runs(tmp_path):
    inst, _ = installer("unix:///var/run/docker.sock")

    result = inst.ensure(SPEC, NO_SETUP, tmp_path)

    assert (result.tool, result.cached, result.volumes) == ("none", False, {})


def test_given_a_remote_engine_and_a_cache_miss_then_setup_is_an_environment_failure(tmp_path):
    (tmp_path / "requirements.txt").write_text("click\n")
    inst, cache = installer("tcp://sandboxes.internal:2376")

    with pytest.raises(EnvironmentFailure) as raised:
        inst.ensure(SPEC, PLAN, tmp_path)

    assert raised.value.classification is Classification.ENVIRONMENT
    assert "remote Docker engine (tcp://sandboxes.internal:2376)" in raised.value.message
    assert cache.lookup("acme", "acme/app", inst.key(PLAN, tmp_path), [".venv"]) is None


def test_given_a_remote_engine_and_a_cached_environment_then_the_cache_is_used(tmp_path):
    (tmp_path / "requirements.txt").write_text("click\n")
    inst, cache = installer("tcp://sandboxes.internal:2376")
    key = inst.key(PLAN, tmp_path)
    cache.prepare("acme", "acme/app", key, [".venv"])
    cache.commit("acme", "acme/app", key, [".venv"], size=1234, seconds=9.5)

    result = inst.ensure(SPEC, PLAN, tmp_path)

    assert (result.cached, result.bytes, result.env) == (True, 1234, PLAN.env)
    assert [m.read_only for m in result.mounts()] == [True]
    assert [m.path for m in result.mounts()] == [".venv"]
