"""Using a session: copying in, reading out, streaming, timeouts and cancellation."""

from __future__ import annotations

import hashlib
import os
import threading
import time
import tracemalloc

import pytest

from runner.errors import Classification, InfrastructureError, VerificationError
from runner.sandbox import DockerSandbox, classify
from runner.sandbox.session import MAX_REPORT_BYTES

pytestmark = pytest.mark.docker


@pytest.fixture
def session(sandbox, make_spec):
    return sandbox.session(make_spec())


def processes(session) -> list[str]:
    """Command lines of every process in the container (the image has no ps)."""
    listing = session.run(
        "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done 2>/dev/null", timeout=10
    )
    found = [line.strip() for line in listing.output_tail.splitlines() if line.strip()]
    assert any("sleep infinity" in p for p in found), found  # the listing itself works
    return found


def test_given_a_working_copy_when_copied_in_then_files_round_trip_without_git(session, tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text("VALUE = 1\n")
    (tmp_path / ".gitignore").write_text("*.pyc\n")
    (tmp_path / "run.sh").write_text("#!/bin/sh\necho ran\n")
    os.chmod(tmp_path / "run.sh", 0o755)
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    blob = os.urandom(300_000)
    (tmp_path / "data.bin").write_bytes(blob)

    session.copy_in(tmp_path)

    assert session.read_file("pkg/mod.py") == b"VALUE = 1\n"
    assert session.read_file(".gitignore") == b"*.pyc\n"
    assert session.read_file("/workspace/data.bin") == blob
    assert session.read_file(".git/HEAD") is None
    assert session.read_file("missing.txt") is None
    with pytest.raises(VerificationError):
        session.read_file("pkg")
    owners = session.run("stat -c '%u' pkg/mod.py run.sh && ./run.sh", timeout=10)
    assert owners.output_tail.split() == ["10001", "10001", "ran"]


def test_given_files_left_by_commands_when_copied_in_again_then_old_files_are_gone(
    session, tmp_path
):
    first, second = tmp_path / "one", tmp_path / "two"
    first.mkdir()
    second.mkdir()
    (first / "old.txt").write_text("old")
    (second / "new.txt").write_text("new")
    session.copy_in(first)
    session.run("mkdir -p made/by && touch made/by/command && chmod 000 made/by made", timeout=10)

    session.copy_in(second)

    listing = session.run("find . -mindepth 1 | sort", timeout=10)
    assert listing.output_tail.split() == ["./new.txt"]


def test_given_a_report_written_by_a_command_then_it_can_be_read(session):
    session.run(
        "python3 -c \"import json; json.dump({'pct': 91.5}, open('cov.json', 'w'))\"", timeout=20
    )

    assert session.read_file("cov.json") == b'{"pct": 91.5}'


def read_measured(session, path: str) -> tuple[VerificationError, float, int]:
    """The error reading ``path`` raises, the seconds it took, and the peak of memory
    allocated meanwhile."""
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(VerificationError) as raised:
            session.read_file(path)
        return raised.value, time.monotonic() - started, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_given_a_directory_of_160_mib_at_the_report_path_then_verification_fails_at_once(
    session,
):
    made = session.run("mkdir cov.json && for i in 1 2 3 4; do "
                       "head -c 40M /dev/urandom > cov.json/part$i; done", timeout=60)
    assert made.ok, made.output_tail

    error, seconds, peak = read_measured(session, "cov.json")

    assert error.classification is Classification.VERIFICATION
    assert "the report /workspace/cov.json is a directory" in error.message
    assert "at most 8 MiB" in error.message
    assert error.details["path"] == "/workspace/cov.json"
    assert seconds < 5
    assert peak < MAX_REPORT_BYTES  # the tree is not streamed, let alone buffered


@pytest.mark.parametrize(
    ("make", "kind"),
    [("ln -s /dev/zero cov.json", "is a symbolic link"),
     ("ln -s /proc/self cov.json", "is a symbolic link"),
     ("mkfifo cov.json", "is not a regular file")],
    ids=["link-to-dev-zero", "link-to-a-directory", "fifo"],
)
def test_given_something_else_than_a_file_at_the_report_path_then_verification_fails(
    session, make, kind
):
    made = session.run(make, timeout=20)
    assert made.ok, made.output_tail

    error, seconds, peak = read_measured(session, "cov.json")

    assert f"the report /workspace/cov.json {kind}" in error.message
    assert seconds < 5
    assert peak < MAX_REPORT_BYTES


def test_given_a_report_over_the_limit_then_verification_fails_without_reading_it(session):
    made = session.run("head -c 80M /dev/urandom > cov.json", timeout=60)
    assert made.ok, made.output_tail

    error, seconds, peak = read_measured(session, "cov.json")

    assert error.classification is Classification.VERIFICATION
    assert error.details == {"path": "/workspace/cov.json", "limitBytes": MAX_REPORT_BYTES,
                             "sizeBytes": 80 << 20}
    assert "is 83886080 bytes" in error.message
    assert seconds < 5
    assert peak < MAX_REPORT_BYTES


def test_given_a_report_of_exactly_the_limit_then_it_is_read_whole(session):
    made = session.run(f"head -c {MAX_REPORT_BYTES} /dev/urandom > cov.json && "
                       "sha256sum cov.json", timeout=60)
    assert made.ok, made.output_tail

    data = session.read_file("cov.json")

    assert data is not None
    assert len(data) == MAX_REPORT_BYTES
    assert hashlib.sha256(data).hexdigest() == made.output_tail.split()[0]
    assert session.read_file("cov.json") == data  # the connection is still good


def test_given_slow_output_when_running_then_lines_arrive_in_order_before_the_end(session):
    arrivals: list[tuple[str, float]] = []
    started = time.monotonic()
    command = "for i in 1 2 3; do echo line-$i; echo err-$i >&2; sleep 0.4; done; sleep 1"

    result = session.run(
        command,
        timeout=30,
        on_line=lambda line: arrivals.append((line, time.monotonic() - started)),
    )

    lines = [line for line, _ in arrivals]
    assert [x for x in lines if x.startswith("line")] == ["line-1", "line-2", "line-3"]
    assert [x for x in lines if x.startswith("err")] == ["err-1", "err-2", "err-3"]
    first_at = dict(arrivals)["line-1"]
    assert first_at < result.duration - 1.5
    assert result.ok
    assert "@@devteam" not in result.output_tail
    assert result.output_tail.splitlines()[-1] in ("line-3", "err-3")


def test_given_env_when_running_then_the_command_sees_it_and_exit_code_is_kept(session):
    result = session.run('echo "$GREETING"; exit 3', timeout=10, env={"GREETING": "hello"})

    assert result.exit_code == 3
    assert result.output_tail == "hello"
    assert classify(result) is Classification.VERIFICATION


def test_given_long_output_then_the_tail_keeps_the_last_200_lines(session):
    result = session.run("seq 1 5000", timeout=30)

    tail = result.output_tail.splitlines()
    assert len(tail) == 200
    assert tail[-1] == "5000"
    assert tail[0] == "4801"


def test_given_a_hanging_command_when_timeout_passes_then_it_returns_promptly(session):
    started = time.monotonic()

    result = session.run("sleep 60", timeout=1)

    assert time.monotonic() - started < 3
    assert result.timed_out
    assert not result.ok
    assert classify(result) is Classification.RESOURCE_LIMIT
    assert not [p for p in processes(session) if "sleep 60" in p]


def test_given_a_running_command_when_cancelled_then_it_stops_within_two_seconds(session):
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()

    result = session.run(
        "python3 -c 'import time; time.sleep(60)' & sleep 60; wait", timeout=120, cancel=cancel
    )

    assert result.cancelled
    assert result.duration < 0.5 + 2.0
    assert classify(result) is Classification.CANCELLED
    assert not [p for p in processes(session) if "sleep 60" in p or "time.sleep" in p]


def test_given_a_crashed_worker_when_a_new_sandbox_asks_again_then_it_reuses_the_container(
    sandbox, make_spec, docker_client, runner_image, session, tmp_path
):
    (tmp_path / "kept.txt").write_text("kept")
    session.copy_in(tmp_path)

    restarted = DockerSandbox(docker_client, image=runner_image)
    again = restarted.session(make_spec())

    assert again.name == session.name
    assert again.container_id == session.container_id
    assert again.read_file("kept.txt") == b"kept"


def test_given_the_container_killed_under_a_command_then_it_is_an_infrastructure_error(
    session, docker_client
):
    # Given a command that prints, then runs for a while
    started = threading.Event()

    def on_line(line: str) -> None:
        if line == "running":
            started.set()

    def kill_once_started() -> None:
        if started.wait(30):
            docker_client.api.kill(session.name)

    killer = threading.Thread(target=kill_once_started)
    killer.start()
    # When the container dies under it (as when the Docker engine restarts)
    with pytest.raises(InfrastructureError) as raised:
        session.run("echo running; sleep 60", timeout=90, on_line=on_line)
    killer.join()
    # Then it is not the command's failure: the stage is retried, not failed as verification
    assert raised.value.classification is Classification.INFRASTRUCTURE
    assert "stopped while a command was running" in raised.value.message
