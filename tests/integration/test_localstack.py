"""The local stack's process supervision (psutil) and Redis check (redis-py), on real
processes and the real Redis: ``devteam services down`` stops the service processes that
registered themselves, leaves alone a process that merely got a recorded pid again, and
gets rid of one that ignores SIGTERM."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import msgspec
import psutil
import pytest

from devtools import localstack
from devtools.localstack import LocalStack, register_process
from runner.settings import Settings, load_settings

pytestmark = pytest.mark.sockets

READY = "ready"


@pytest.fixture
def stack_settings(tmp_path: Path) -> Settings:
    settings = load_settings()
    return msgspec.structs.replace(
        settings, stack=msgspec.structs.replace(settings.stack, dir=str(tmp_path / "stack")))


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def _child(children: list[subprocess.Popen[str]], code: str) -> subprocess.Popen[str]:
    """A Python child that runs ``code`` then says READY and sleeps."""
    proc = subprocess.Popen(
        [sys.executable, "-c",
         f"{code}\nprint({READY!r}, flush=True)\nimport time\nwhile True: time.sleep(1)"],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2],
    )
    children.append(proc)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == READY
    return proc


def test_a_registered_service_process_is_stopped_by_down_and_its_record_removed(
    stack_settings: Settings, children: list[subprocess.Popen[str]]
) -> None:
    # Given a service process that registered itself as `relay`
    code = (
        "import msgspec\n"
        "from devtools.localstack import register_process\n"
        "from runner.settings import load_settings\n"
        "s = load_settings()\n"
        f"s = msgspec.structs.replace(s, stack=msgspec.structs.replace(s.stack, "
        f"dir={stack_settings.stack.dir!r}))\n"
        "register_process(s, 'relay')"
    )
    proc = _child(children, code)
    records = list((Path(stack_settings.stack.dir) / "run").glob("relay-*.pid"))
    assert [r.name for r in records] == [f"relay-{proc.pid}.pid"]
    # When the stack goes down
    said: list[str] = []
    LocalStack(stack_settings).down(said.append)
    # Then the process is gone (down reaps it: it is our child) and so is its record
    proc.wait(10)
    assert not psutil.pid_exists(proc.pid)
    assert f"relay-{proc.pid}: stopping (pid {proc.pid})" in said
    assert not records[0].exists()


def test_a_process_that_got_a_recorded_pid_again_is_left_alone(
    stack_settings: Settings, children: list[subprocess.Popen[str]]
) -> None:
    # Given a record whose pid now belongs to a process started at another time
    proc = _child(children, "")
    run_dir = Path(stack_settings.stack.dir) / "run"
    run_dir.mkdir(parents=True)
    started = psutil.Process(proc.pid).create_time()
    (run_dir / f"worker-{proc.pid}.pid").write_text(f"{proc.pid} {started - 3600!r}")
    # When the stack goes down
    said: list[str] = []
    LocalStack(stack_settings).down(said.append)
    # Then that process still runs, and the stale record is gone
    assert proc.poll() is None
    assert said == []
    assert list(run_dir.iterdir()) == []


def test_a_record_of_this_very_process_names_it(stack_settings: Settings) -> None:
    unregister = register_process(stack_settings, "gateway")
    record = Path(stack_settings.stack.dir) / "run" / f"gateway-{os.getpid()}.pid"
    found = localstack._process_of(record)
    assert found is not None and found.pid == os.getpid()
    unregister()
    assert not record.exists()


def test_a_process_ignoring_sigterm_is_killed(children: list[subprocess.Popen[str]]) -> None:
    proc = _child(children, "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)")
    localstack._terminate(proc.pid, 0.5)
    assert not localstack._alive(proc.pid)
    proc.wait(10)
    assert not psutil.pid_exists(proc.pid)


def test_redis_answers_ping_and_other_listeners_do_not(redis_url: str) -> None:
    port = urlsplit(redis_url).port
    assert port is not None
    assert localstack._redis_ping(port)
    # a TCP listener that is not Redis (it answers an HTTP error and hangs up)
    with socket.create_server(("127.0.0.1", 0)) as server:
        def answer() -> None:
            conn, _ = server.accept()
            with conn:
                conn.recv(64)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        assert not localstack._redis_ping(server.getsockname()[1])
        thread.join(10)
        closed = server.getsockname()[1]
    # and a port nobody listens on
    assert not localstack._redis_ping(closed)
