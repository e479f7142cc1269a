"""Start the service's real processes (gateway, relay, worker) for a test, and stop them.

Each process gets the test's environment (its own database, Redis db and workspace root),
its own log file under the test's tmp dir, and is killed at teardown whatever happened.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
DEVTEAM = ROOT / ".venv" / "bin" / "devteam"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    port: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)

    def stop(self, timeout: float = 10) -> None:
        if not self.alive():
            return
        self.kill(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill(signal.SIGKILL)
            self.popen.wait(5)

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""


@dataclass
class Processes:
    """A registry of started processes; ``close()`` stops them all."""

    env: dict[str, str]
    logdir: Path
    procs: list[Proc] = field(default_factory=list)

    def start(
        self,
        name: str,
        *args: str,
        port: int | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> Proc:
        self.logdir.mkdir(parents=True, exist_ok=True)
        log = self.logdir / f"{name}-{len(self.procs)}.log"
        env = {**self.env, **(extra_env or {})}
        fh = log.open("wb")
        popen = subprocess.Popen(
            [str(DEVTEAM), *args],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
            start_new_session=True,
        )
        proc = Proc(name=name, popen=popen, log=log, port=port)
        self.procs.append(proc)
        return proc

    def gateway(self, port: int | None = None, **extra_env: str) -> Proc:
        port = port or free_port()
        proc = self.start("gateway", "serve", "--port", str(port), port=port, extra_env=extra_env)
        wait_http(proc, "/health", timeout=30)
        return proc

    def relay(self) -> Proc:
        return self.start("relay", "relay")

    def worker(self, threads: int = 4) -> Proc:
        return self.start("worker", "worker", "--threads", str(threads))

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()


def wait_http(proc: Proc, path: str, timeout: float = 20) -> None:
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


@contextlib.contextmanager
def processes(env: dict[str, str], logdir: Path) -> Iterator[Processes]:
    registry = Processes(env=env, logdir=logdir)
    try:
        yield registry
    finally:
        registry.close()


def python() -> str:
    return sys.executable
