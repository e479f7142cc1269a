"""Start the service's real processes (gateway, relay, worker), and stop them.

Tests and benchmarks share it. Each process gets the caller's environment (its own
database, Redis db and workspace root), its own log file, a process group of its own, and
is stopped (SIGTERM, then SIGKILL of the whole group) at teardown whatever happened.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
DEVTEAM = ROOT / ".venv" / "bin" / "devteam"


_PORTS_PER_WORKER = 1500
_XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if _XDIST_WORKER is not None:
    # each worker of a session its own range below the ephemeral ports (32768-60999)
    _BASE = 20000 + int(_XDIST_WORKER.removeprefix("gw") or 0) % 8 * _PORTS_PER_WORKER
    _SIZE = _PORTS_PER_WORKER
else:
    # a session without workers (a developer's, beside a running suite) above them
    _BASE, _SIZE = 61000, 4500
_next_port = itertools.count(0 if _XDIST_WORKER is not None else os.getpid() % _SIZE)


def free_port() -> int:
    """A loopback port free now, for a process this test starts.

    Taken in turn from a range of this process's own below the ephemeral ports (20000 +
    1,500 per pytest-xdist worker), or above them for a session without workers (from a
    place set by its pid): a port picked by the kernel (bind to 0) comes from the range
    every worker and every outgoing connection draw from, so between picking it and the
    server binding it another worker's process could take it (a gateway then failed with
    "address already in use" while its test talked to another worker's gateway). A
    session without workers run beside the suite took the first worker's ports the same
    way: a test of the suite talked to the other session's gateway until it stopped."""
    for _ in range(_SIZE):
        port = _BASE + next(_next_port) % _SIZE
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {_BASE}..{_BASE + _SIZE - 1}")


@contextlib.contextmanager
def uninterrupted() -> Iterator[None]:
    """Ignore SIGINT while a cleanup step runs (a second Ctrl-C must not skip it)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    port: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the process group (the process and the tools it started)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM the process group, SIGKILL it after ``timeout``."""
        if self.alive():
            self.kill(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill(signal.SIGKILL)
                self.popen.wait(5)
        self.kill(signal.SIGKILL)  # stragglers of the group (tool subprocesses)

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def json_lines(self) -> Iterator[dict[str, Any]]:
        """The structured log lines (one JSON object each) this process wrote."""
        for line in self.output().splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    yield json.loads(line)


@dataclass
class Processes:
    """Started processes; ``close()`` stops them all, newest first."""

    env: dict[str, str]
    logdir: Path
    procs: list[Proc] = field(default_factory=list)

    def start(self, name: str, argv: Sequence[str], *, port: int | None = None,
              extra_env: dict[str, str] | None = None) -> Proc:
        self.logdir.mkdir(parents=True, exist_ok=True)
        log = self.logdir / f"{name}-{len(self.procs)}.log"
        with log.open("wb") as fh:
            popen = subprocess.Popen(
                list(argv), env={**self.env, **(extra_env or {})}, stdout=fh,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT,
                start_new_session=True,
            )
        proc = Proc(name=name, popen=popen, log=log, port=port)
        self.procs.append(proc)
        return proc

    def devteam(self, name: str, *args: str, port: int | None = None,
                extra_env: dict[str, str] | None = None) -> Proc:
        """``devteam ARGS…`` from the project's environment."""
        return self.start(name, [str(DEVTEAM), *args], port=port, extra_env=extra_env)

    def gateway(self, port: int | None = None, **extra_env: str) -> Proc:
        """``devteam serve`` on ``port`` (a free one by default), once it answers."""
        port = port or free_port()
        proc = self.devteam("gateway", "serve", "--port", str(port), port=port,
                            extra_env=extra_env)
        wait_http(proc, "/health", timeout=60)
        return proc

    def relay(self, **extra_env: str) -> Proc:
        return self.devteam("relay", "relay", extra_env=extra_env)

    def worker(self, threads: int = 4, **extra_env: str) -> Proc:
        return self.devteam("worker", "worker", "--threads", str(threads), extra_env=extra_env)

    def named(self, prefix: str) -> list[Proc]:
        return [p for p in self.procs if p.name.startswith(prefix)]

    def check_alive(self) -> None:
        for proc in self.procs:
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited ({proc.popen.returncode}):\n"
                                   f"{proc.output()[-3000:]}")

    def close(self, timeout: float = 15) -> None:
        """SIGTERM every process (newest first) at once, then wait for them together and
        SIGKILL the groups of those not gone after ``timeout``: the processes shut down
        side by side, not one after another."""
        with uninterrupted():
            procs = list(reversed(self.procs))
            for proc in procs:
                if proc.alive():
                    proc.kill(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            for proc in procs:
                try:
                    proc.popen.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill(signal.SIGKILL)
                    proc.popen.wait(5)
                proc.kill(signal.SIGKILL)  # stragglers of the group (tool subprocesses)
            self.procs.clear()


def wait_http(proc: Proc, path: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited:\n{proc.output()[-4000:]}")
        try:
            httpx.get(proc.url + path, timeout=2)
            return
        except httpx.HTTPError as exc:
            last = exc
            time.sleep(0.1)
    raise RuntimeError(f"{proc.name} did not answer: {last}\n{proc.output()[-4000:]}")


def wait_for_log(proc: Proc, message: str, timeout: float = 30) -> None:
    """Wait until ``proc`` logged a line whose ``msg`` is ``message``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(line.get("msg") == message for line in proc.json_lines()):
            return
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited:\n{proc.output()[-3000:]}")
        time.sleep(0.1)
    raise RuntimeError(f"{proc.name} never logged {message}:\n{proc.output()[-3000:]}")


@contextlib.contextmanager
def processes(env: dict[str, str], logdir: Path) -> Iterator[Processes]:
    registry = Processes(env=env, logdir=logdir)
    try:
        yield registry
    finally:
        registry.close()
