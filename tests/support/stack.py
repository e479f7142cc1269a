"""Faults for tests: restart the local stack's servers the way an outage would."""

from __future__ import annotations

import os
import subprocess

from devtools.localstack import LocalStack
from runner.settings import load_settings


def restart_postgres() -> None:
    """Restart the project-local Postgres (fast shutdown: every connection is dropped)."""
    stack = LocalStack(load_settings())
    data = stack.dir / "pg" / "data"
    argv = [str(stack._pg_bin() / "pg_ctl"), "-D", str(data), "-l",
            str(stack.logs / "postgres.log"), "-m", "fast", "-w", "restart"]
    if os.geteuid() == 0:
        argv = ["runuser", "-u", "postgres", "--", *argv]
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=60)


def restart_redis() -> None:
    """Shut Redis down (it saves its append-only file) and start it again on its port."""
    import socket
    import time

    stack = LocalStack(load_settings())
    port = stack.settings.stack.redis_port
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(b"SHUTDOWN\r\n")
        time.sleep(0.2)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            time.sleep(0.1)
        except OSError:
            break
    stack._redis_up(lambda _m: None)


def restart_docker() -> None:
    """Stop the project's dockerd (containers stop with it) and start it again."""
    stack = LocalStack(load_settings())
    stack.stop_dockerd(lambda _m: None)
    stack._docker_up(lambda _m: None)
