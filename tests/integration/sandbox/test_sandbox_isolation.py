"""Isolation: no network, read-only root, no host paths, no root, no neighbours' files."""

from __future__ import annotations

import pytest

from runner.settings import PROJECT_ROOT

pytestmark = pytest.mark.docker


@pytest.fixture
def session(sandbox, make_spec):
    return sandbox.session(make_spec())


def test_given_default_spec_when_code_opens_a_connection_then_it_fails(session):
    probe = "python3 -c \"import socket; socket.create_connection(('{host}', {port}), timeout=3)\""

    outside = session.run(probe.format(host="1.1.1.1", port=53), timeout=20)
    host_postgres = session.run(probe.format(host="172.17.0.1", port=55432), timeout=20)
    interfaces = session.run("ls /sys/class/net", timeout=10)

    assert outside.exit_code != 0
    assert "Network is unreachable" in outside.output_tail
    assert host_postgres.exit_code != 0
    assert interfaces.output_tail.split() == ["lo"]


@pytest.mark.parametrize("path", ["/etc/evil", "/usr/bin/evil", "/evil", "/opt/devteam/evil"])
def test_given_read_only_root_when_writing_outside_workspace_and_tmp_then_it_fails(session, path):
    result = session.run(f"echo x > {path}", timeout=10)

    assert result.exit_code != 0
    assert "Read-only file system" in result.output_tail or "denied" in result.output_tail


def test_given_container_when_writing_workspace_and_tmp_then_it_works(session):
    result = session.run(
        "echo a > /workspace/a && echo b > /tmp/b && cat /workspace/a /tmp/b", timeout=10
    )

    assert result.ok
    assert result.output_tail.split() == ["a", "b"]


def test_given_container_then_no_host_path_or_docker_socket_is_visible(session, docker_client):
    paths = [
        str(PROJECT_ROOT),
        str(PROJECT_ROOT / ".devteam" / "docker" / "docker.sock"),
        "/var/run/docker.sock",
        "/run/docker.sock",
        "/work",
    ]
    result = session.run(
        " ; ".join(f"test -e {p} && echo FOUND {p}" for p in paths) + "; true", timeout=10
    )
    info = docker_client.api.inspect_container(session.name)

    assert "FOUND" not in result.output_tail
    assert not info["HostConfig"]["Binds"]
    assert [m["Type"] for m in info["Mounts"]] == ["volume"]
    assert info["HostConfig"]["Privileged"] is False


def test_given_container_then_process_is_unprivileged(session):
    result = session.run(
        "id -u; id -g; grep -E '^(CapEff|CapBnd|NoNewPrivs):' /proc/self/status", timeout=10
    )

    lines = result.output_tail.splitlines()
    assert lines[0] == "10001"
    assert lines[1] == "10001"
    status = dict(line.split(":\t") for line in lines[2:])
    assert int(status["CapEff"], 16) == 0
    assert int(status["CapBnd"], 16) == 0
    assert status["NoNewPrivs"] == "1"


def test_given_two_customers_then_neither_sees_the_others_files(
    sandbox, make_spec, execution_id, tmp_path, docker_client
):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "secret-of-a.txt").write_text("only for customer a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "secret-of-b.txt").write_text("only for customer b")
    a = sandbox.session(make_spec(customer_id="cust-a", project_id="cust-a/p"))
    b = sandbox.session(
        make_spec(customer_id="cust-b", project_id="cust-b/p", execution_id=f"{execution_id}-b")
    )

    a.copy_in(tmp_path / "a")
    b.copy_in(tmp_path / "b")
    search = (
        "find / \\( -path /proc -o -path /sys \\) -prune -o -name 'secret-of-*' -print 2>/dev/null"
    )

    seen_by_a = a.run(search, timeout=30).output_tail
    seen_by_b = b.run(search, timeout=30).output_tail

    assert "secret-of-a.txt" in seen_by_a
    assert "secret-of-b" not in seen_by_a
    assert "secret-of-b.txt" in seen_by_b
    assert "secret-of-a" not in seen_by_b
    assert b.read_file("secret-of-a.txt") is None
    assert a.read_file("secret-of-a.txt") == b"only for customer a"
    volumes_a = {m["Name"] for m in docker_client.api.inspect_container(a.name)["Mounts"]}
    volumes_b = {m["Name"] for m in docker_client.api.inspect_container(b.name)["Mounts"]}
    assert volumes_a.isdisjoint(volumes_b)
