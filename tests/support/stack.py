"""Faults for tests: restart the local stack's servers the way an outage would."""

from __future__ import annotations

import os
import subprocess

from gateway.localstack import LocalStack
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
