"""The installer's decisions that need no engine: nothing to do, a cache hit, a setup
that needs egress on a remote engine (refused as ``environment``, before any container),
and what a command that floods the proxy with refused requests is told."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from tests.unit.setup.fake_docker import FakeVolumes

from runner.errors import Classification, EnvironmentFailure
from runner.ports import CommandResult, ContainerSpec
from runner.settings import load_settings
from runner.setup import NO_SETUP, DepsCache, EgressProxy, Installer, SetupPlan

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


class Engine:
    """The exec calls starting the egress forwarder: every exec exits 0."""

    def exec_create(self, container: str, argv: list[str], user: str = "") -> dict[str, str]:
        return {"Id": "exec-1"}

    def exec_start(self, exec_id: str, detach: bool = False) -> None:
        return None

    def exec_inspect(self, exec_id: str) -> dict[str, int]:
        return {"ExitCode": 0}


class FloodingSession:
    """A setup container whose one command has the proxy refuse ``hosts`` distinct hosts."""

    name = "dt-setup"

    def __init__(self, log: Path, hosts: int) -> None:
        self.log, self.hosts = log, hosts

    def copy_in(self, source: Path) -> None:
        return None

    def run(self, command: str, **_: object) -> CommandResult:
        with self.log.open("a") as out:
            for i in range(self.hosts):
                out.write(f"CONNECT   Dec 04 06:41:40.638 [{i}]: Request (file descriptor 2): "
                          f"CONNECT h{i}.evil.example:443 HTTP/1.1\n"
                          f"NOTICE    Dec 04 06:41:40.638 [{i}]: Proxying refused on filtered "
                          f'domain "h{i}.evil.example"\n')
        return CommandResult(command=command, exit_code=1, duration=1.0,
                             output_tail="ERROR: could not reach the index")


def test_given_a_setup_command_refused_20000_hosts_then_its_error_names_100_and_counts_the_rest(
    tmp_path,
):
    settings = load_settings({})
    proxy = EgressProxy(settings, "acme", tmp_path / "egress")
    proxy.directory.mkdir()
    session = FloodingSession(proxy.directory / "tinyproxy.log", 20_000)
    sandbox = SimpleNamespace(api=Engine(), remove=lambda spec: None,
                              session=lambda spec, on_wait=None: session)
    inst = Installer(settings, sandbox, DepsCache(Images(), max_bytes_per_customer=10**9,
                                                  per_project=2, max_age_seconds=3600))
    lines: list[str] = []

    with pytest.raises(EnvironmentFailure) as raised:
        inst._install(SPEC, PLAN, tmp_path, proxy, lines.append, None)

    error = raised.value
    assert "blocked by the egress allowlist: h0.evil.example:443, " in error.message
    assert "and 19900 more refused requests (not listed)" in error.message
    assert len(error.message) < 3_000  # was 488,888 characters
    assert len(error.details["blocked"]) == 100
    assert error.details["blocked"][0] == {"host": "h0.evil.example", "port": 443,
                                           "command": PLAN.commands[0]}
    assert error.details["blockedUnlisted"] == 19_900
    blocked_lines = [line for line in lines if line.startswith("blocked: ")]
    assert len(blocked_lines) == 101
    assert blocked_lines[-1].startswith("blocked: 19900 more requests by `pip install")


@pytest.mark.parametrize(("limit", "full"), [(64 * 1024, True), (64 << 20, False)])
def test_given_the_proxy_log_at_its_size_limit_then_the_error_says_later_refusals_are_not_listed(
    tmp_path, limit, full,
):
    settings = load_settings({})
    proxy = EgressProxy(settings, "acme", tmp_path / "egress", log_max_bytes=limit)
    proxy.directory.mkdir()
    log = proxy.directory / "tinyproxy.log"
    session = FloodingSession(log, 1_000)  # about 170 KB of log
    sandbox = SimpleNamespace(api=Engine(), remove=lambda spec: None,
                              session=lambda spec, on_wait=None: session)
    inst = Installer(settings, sandbox, DepsCache(Images(), max_bytes_per_customer=10**9,
                                                  per_project=2, max_age_seconds=3600))
    if full:  # tinyproxy's writes stop at the limit (tests/integration/security)
        session.run = _capped(session.run, log, limit)  # type: ignore[method-assign]

    with pytest.raises(EnvironmentFailure) as raised:
        inst._install(SPEC, PLAN, tmp_path, proxy, None, None)

    assert raised.value.details["proxyLogFull"] is full
    assert ("the proxy's log reached its size limit" in raised.value.message) is full


def _capped(run, log: Path, limit: int):
    def capped(command: str, **kw: object) -> CommandResult:
        result = run(command, **kw)
        with log.open("r+b") as f:
            f.truncate(limit)
        return result
    return capped
