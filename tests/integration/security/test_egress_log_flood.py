"""A setup command that floods the egress proxy with refused requests cannot fill the
worker's disk: tinyproxy's log stops at its size limit, the proxy goes on refusing (and
serving) as before, and the setup's error says the refusals after it are not listed.

The flood goes to the proxy's own unix socket on the host, as the in-container forwarder
would send it; every request is refused by the proxy, so nothing leaves the machine."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from runner.settings import load_settings
from runner.setup import EgressProxy
from runner.setup.egress import LOG_NAME, SOCKET_NAME

pytestmark = pytest.mark.sockets  # tinyproxy and socat on loopback and a unix socket

LIMIT = 64 * 1024


def refused(sock_path: Path, host: str) -> bytes:
    """CONNECT to ``host`` through the proxy: its answer's status line."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(sock_path))
        s.sendall(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode())
        return s.recv(64).split(b"\r\n")[0]


def test_a_flood_of_refused_requests_stops_the_log_at_its_limit_not_the_proxy(
        tmp_path: Path) -> None:
    settings = load_settings({"DEVTEAM_SETUP_ALLOW": "registry.npmjs.org"})
    with EgressProxy(settings, "acme", tmp_path / "egress", log_max_bytes=LIMIT) as proxy:
        sock = proxy.directory / SOCKET_NAME
        assert b"403" in refused(sock, "first.example.org")
        assert [r.host for r in proxy.new_refusals("npm ci")] == ["first.example.org"]
        assert not proxy.log_full
        # Given a command that sends thousands of requests to hosts off the list
        for i in range(1500):
            refused(sock, f"flood{i}.example.org")
        # Then the log stops at its limit, and the proxy still answers
        assert (proxy.directory / LOG_NAME).stat().st_size == LIMIT
        assert proxy.log_full
        assert b"403" in refused(sock, "after.example.org")
        kept = proxy.new_refusals("npm ci")
        assert 0 < len(kept) < 1500  # what fitted in the log, whole lines only
        assert "after.example.org" not in {r.host for r in kept}
