"""``devteam ping``, the containers' health check: 0 and ``ok`` when Postgres answers a
query and Redis a PING, else 1 and ``unhealthy: <what failed>`` (never a URL or secret)."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

DEVTEAM = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "devteam"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the socket is


def _ping(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(DEVTEAM), "ping"], env=env, capture_output=True, text=True,
                          timeout=60, check=False)


def test_ping_is_ok_when_postgres_and_redis_answer(env: dict[str, str]) -> None:
    done = _ping(env)
    assert (done.returncode, done.stdout.strip()) == (0, "ok"), done.stderr


@pytest.mark.parametrize("service", ["DEVTEAM_DATABASE_URL", "DEVTEAM_REDIS_URL"])
def test_ping_is_unhealthy_when_a_service_does_not_answer(
        env: dict[str, str], service: str) -> None:
    secret = "s3cr3t-pw-" + service.lower()
    scheme = "postgresql+asyncpg" if service == "DEVTEAM_DATABASE_URL" else "redis"
    done = _ping({**env, service: f"{scheme}://u:{secret}@127.0.0.1:{_closed_port()}/0"})
    assert done.returncode == 1
    assert done.stdout.startswith("unhealthy: "), done.stdout
    assert secret not in done.stdout + done.stderr
