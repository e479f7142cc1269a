"""Setup containers and the egress proxy on the real engine, attacked from the inside.

A setup command may reach the hosts of the operator's allowlist through the proxy and
nothing else: a request to another host is refused by the proxy and reported with host,
port and the command that made it; a direct connection finds no route; the repository has
no way to widen the allowlist. A verification container, cached environment mounted, has
no way out at all. Caches belong to one customer's project.

Nothing here leaves the machine: refused requests end at the proxy on loopback, and the
direct connections fail inside the container for want of a route.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from runner.errors import ConfigError, EnvironmentFailure
from runner.ports import ContainerSpec
from runner.settings import get_settings
from runner.setup import DepsCache, Installer, SetupPlan, plan_setup
from runner.setup.cache import LABEL
from runner.verify.config import parse_project_file

pytestmark = [pytest.mark.docker, pytest.mark.slow]

PROBE = """python3 - <<'EOF'
import socket, urllib.request
try:
    urllib.request.urlopen("https://example.org/", timeout=10)
    print("PROBE", "reached example.org")
except Exception as exc:
    print("PROBE", "proxy refused:", type(exc).__name__, exc)
try:
    socket.create_connection(("1.1.1.1", 443), timeout=3)
    print("PROBE", "direct connection made")
except OSError as exc:
    print("PROBE", "direct refused:", exc)
EOF
exit 3"""


@pytest.fixture
def installer(docker_client, sandbox):
    cache = DepsCache(docker_client.api, max_bytes_per_customer=10**10, per_project=3,
                      max_age_seconds=3600)
    made: list[str] = []
    yield Installer(get_settings(), sandbox, cache), made
    for volume in docker_client.api.volumes(filters={"label": f"{LABEL}=true"})["Volumes"] or []:
        if volume["Labels"].get("devteam.customer", "").startswith("setup-test-"):
            docker_client.api.remove_volume(volume["Name"], force=True)


def customer() -> str:
    return f"setup-test-{uuid.uuid4().hex[:6]}"


def setup_spec(make_spec, who: str) -> ContainerSpec:
    return make_spec(customer_id=who, project_id=f"{who}/proj", attempt=0, memory_mb=1024)


def test_given_a_setup_command_reaching_a_host_off_the_allowlist_then_it_is_refused_and_reported_with_host_and_command(  # noqa: E501
    installer, make_spec, tmp_path
):
    inst, _ = installer
    lines: list[str] = []
    plan = SetupPlan(tool="custom", commands=[PROBE], cache_paths=[".venv"])

    with pytest.raises(EnvironmentFailure) as failed:
        inst.ensure(setup_spec(make_spec, customer()), plan, tmp_path, on_line=lines.append)

    output = "\n".join(lines)
    assert "PROBE proxy refused" in output
    assert "PROBE reached" not in output
    assert "PROBE direct refused" in output  # no route but through the proxy
    assert "PROBE direct connection made" not in output
    assert "blocked: example.org:443 by `python3 - <<'EOF'" in output
    error = failed.value
    assert error.classification == "environment"
    assert "blocked by the egress allowlist: example.org:443" in error.message
    assert [(b["host"], b["port"]) for b in error.details["blocked"]] == [("example.org", 443)]
    assert error.details["exitCode"] == 3


def test_given_an_npmrc_pointing_at_another_registry_then_npm_ci_is_blocked_and_named(
    installer, make_spec, tmp_path
):
    inst, _ = installer
    (tmp_path / "package.json").write_text(
        '{"name": "x", "version": "1.0.0", "dependencies": {"is-number": "7.0.0"}}')
    (tmp_path / "package-lock.json").write_text(
        '{"name": "x", "version": "1.0.0", "lockfileVersion": 3, "requires": true, '
        '"packages": {"": {"name": "x", "version": "1.0.0", "dependencies": '
        '{"is-number": "7.0.0"}}, "node_modules/is-number": {"version": "7.0.0"}}}')
    (tmp_path / ".npmrc").write_text("registry=https://registry.example.org/\n")
    plan = plan_setup(tmp_path)
    assert plan.commands == ["npm ci --no-audit --no-fund"]
    assert ".npmrc" in plan.manifests

    with pytest.raises(EnvironmentFailure) as failed:
        inst.ensure(setup_spec(make_spec, customer()), plan, tmp_path)

    assert "registry.example.org:443" in failed.value.message
    assert failed.value.details["blocked"][0]["command"] == "npm ci --no-audit --no-fund"


@pytest.mark.parametrize("text", [
    '[setup]\nallow = ["example.org"]\n',
    '[setup]\nproxy = "http://example.org:3128"\n',
    '[limits]\nnetwork = true\n',
    '[commands]\nsetup = "pip install x"\n[setup]\ncache = ["../outside"]\n',
])
def test_given_a_repository_that_asks_for_more_egress_then_its_config_is_refused(text):
    with pytest.raises(ConfigError):
        plan_setup(Path("/nonexistent"), parse_project_file(text))


def test_given_an_installed_environment_when_verifying_then_it_is_mounted_read_only_with_no_way_out(  # noqa: E501
    installer, sandbox, make_spec, tmp_path
):
    inst, _ = installer
    who = customer()
    (tmp_path / "requirements.txt").write_text("text-unidecode==1.3\n")
    plan = plan_setup(tmp_path)
    first = inst.ensure(setup_spec(make_spec, who), plan, tmp_path)
    again = inst.ensure(setup_spec(make_spec, who), plan, tmp_path)
    assert (first.cached, again.cached) == (False, True)
    assert again.volumes == first.volumes
    # the setup container's consumption came back with it; a cache hit ran none
    assert first.container is not None and again.container is None
    assert first.container.cpu_seconds and first.container.cpu_seconds > 0
    assert first.container.peak_memory_bytes and first.container.wall_seconds
    assert again.seconds < 1.0  # a hit runs nothing

    spec = make_spec(customer_id=who, project_id=f"{who}/proj", mounts=again.mounts())
    session = sandbox.session(spec)
    try:
        session.copy_in(tmp_path)
        env = {"CI": "1", **again.env}
        uses = session.run("python3 -c 'import text_unidecode as t; print(t.unidecode(\"Ça\"))'",
                           timeout=60, env=env)
        assert (uses.exit_code, uses.output_tail) == (0, "Ca")
        writes = session.run("touch .venv/poisoned", timeout=30, env=env)
        assert writes.exit_code != 0
        assert "Read-only file system" in writes.output_tail
        out = session.run(
            "ls /run/devteam-egress 2>&1; python3 -c \"import socket\n"
            "for a in [('127.0.0.1', 3128), ('1.1.1.1', 443)]:\n"
            "    try: socket.create_connection(a, timeout=3); print('OPEN', a)\n"
            "    except OSError as e: print('closed', a, e.errno)\"",
            timeout=60, env=env)
        assert "No such file or directory" in out.output_tail
        assert "OPEN" not in out.output_tail
        assert out.output_tail.count("closed") == 2
        session.copy_in(tmp_path)  # copying again leaves the mounted cache alone
        still = session.run("test -x .venv/bin/python && echo kept", timeout=30, env=env)
        assert still.output_tail == "kept"
    finally:
        sandbox.remove(spec)


def test_given_two_customers_with_the_same_manifests_then_neither_uses_the_other_s_cache(
    installer, make_spec, tmp_path
):
    inst, _ = installer
    (tmp_path / "requirements.txt").write_text("text-unidecode==1.3\n")
    plan = plan_setup(tmp_path)
    one, two = customer(), customer()

    mine = inst.ensure(setup_spec(make_spec, one), plan, tmp_path)
    theirs = inst.ensure(setup_spec(make_spec, two), plan, tmp_path)

    assert (mine.cached, theirs.cached) == (False, False)
    assert mine.key == theirs.key
    assert set(mine.volumes.values()).isdisjoint(theirs.volumes.values())
    assert inst.cache.lookup(two, f"{one}/proj", mine.key, [".venv"]) is None


def test_given_a_sandbox_then_localhost_resolves_to_loopback_and_there_is_no_other_interface(
    sandbox, make_spec
):
    spec = make_spec()
    session = sandbox.session(spec)
    try:
        out = session.run(
            "python3 -c \"import os, socket; print(socket.gethostbyname('localhost'), "
            "sorted(os.listdir('/sys/class/net')))\"", timeout=60)
    finally:
        sandbox.remove(spec)

    assert (out.exit_code, out.output_tail) == (0, "127.0.0.1 ['lo']")
