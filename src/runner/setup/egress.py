"""Egress for setup containers: an allowlisting forward proxy reached through a unix socket.

A setup container has no network interface but loopback (``--network none``; this service's
``dockerd`` runs with ``--bridge=none``, so no container ever gets an address). For each
setup run the service starts, on the Docker host:

- ``tinyproxy`` (a small, long-standing forward proxy; it only relays CONNECT tunnels and
  plain HTTP, it never terminates TLS) on a free loopback port, with a filter that allows
  exactly the hosts of the allowlist and CONNECT only to the allowed ports;
- ``socat`` joining a unix socket in a fresh per-run directory to that port.

The directory is bind-mounted read-only into the container at :data:`CONTAINER_DIR`, where a
second ``socat`` (in the image) listens on the container's own ``127.0.0.1:3128`` and
forwards to the socket. ``HTTPS_PROXY`` and friends point the installers at it. Nothing
else leaves the container: a client that ignores the proxy variables finds no route.

The allowlist comes from operator settings only (``DEVTEAM_SETUP_ALLOW``, ``..._ALLOW_EXTRA``
and ``..._CUSTOMER_ALLOW``), never from the repository. Every refused request is read back
from tinyproxy's log as a :class:`Refusal` (host, port) and charged to the command that was
running, so a user sees "blocked: example.org:443 by `npm ci`" and the setting that allows it.

Because of the bind mount, the proxy must run on the Docker engine's own host: with a remote
engine (``DEVTEAM_SANDBOX_DOCKER_HOST=tcp://…``) setup that needs egress is refused with an
``environment`` error naming the cause (see the README, "Your own repository").
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import msgspec

from runner.errors import InfrastructureError
from runner.limits import clip
from runner.settings import Settings

CONTAINER_DIR = "/run/devteam-egress"
"""Where the per-run directory (the proxy's socket and the CA bundle) appears in a container."""
PROXY_PORT = 3128
"""The port the in-container forwarder listens on (container loopback only)."""
SOCKET_NAME = "proxy.sock"
CA_NAME = "ca.pem"
LOG_NAME = "tinyproxy.log"
START_SECONDS = 10.0
MAX_REFUSALS = 100
"""Distinct refusals of one setup run that are kept, shown and named in its error; those
past it are only counted (a command may try thousands of hosts)."""
LOG_READ_BYTES = 8 * 1024 * 1024
"""The most of the proxy's log read after one command (some 50,000 requests); what that
command had logged past it is skipped, and its size reported, not parsed."""
LOG_MAX_BYTES = 64 * 1024 * 1024
"""The most the proxy's log may hold on disk (some 400,000 requests). tinyproxy has no
such setting and a command may send requests as fast as it likes for the whole setup
timeout, so tinyproxy runs under a file-size limit (``ulimit -f``) with ``SIGXFSZ``
ignored: past it, its log writes fail and it goes on proxying and refusing as before.
What it refused after that is not recorded, and the setup's error says so."""
MAX_HOST_CHARS = 253
"""A refused host name is cut to this (the longest DNS name); the client chose it."""

_REQUEST = re.compile(r"\[(\d+)\]: Request \(file descriptor (\d+)\): (\S+) (\S+) HTTP")
_FILTERED = re.compile(r"\[(\d+)\]: Proxying refused on filtered domain \"([^\"]*)\"")
_PORT = re.compile(r"\[(\d+)\]: Refused CONNECT method on port (\d+)")
_HOST = re.compile(r"^(?:\*\.)?[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}"
                   r"[a-z0-9])?)*\Z")


class Refusal(msgspec.Struct, frozen=True, kw_only=True):
    """One request the proxy refused: where it wanted to go, and what asked."""

    host: str
    port: int
    command: str = ""

    def describe(self) -> str:
        by = f" by `{self.command}`" if self.command else ""
        return f"blocked: {self.host}:{self.port}{by}"


class Blocked:
    """The requests the proxy refused during one setup run: the first ``limit`` distinct
    refusals in order (``kept``), and how many refused requests came past them
    (``unlisted``: repeats of a kept refusal are not counted). Memory and time are
    bounded by ``limit``, however many hosts a command tries."""

    def __init__(self, limit: int = MAX_REFUSALS) -> None:
        self.limit = limit
        self.kept: list[Refusal] = []
        self.unlisted = 0
        self._seen: set[Refusal] = set()

    def add(self, refusal: Refusal) -> bool:
        """Note ``refusal``; True when it is a new one that was kept."""
        if refusal in self._seen:
            return False  # a client retrying the same request
        if len(self.kept) >= self.limit:
            self.unlisted += 1
            return False
        self._seen.add(refusal)
        self.kept.append(refusal)
        return True

    def hosts(self) -> str:
        """``host:port, …`` of the kept refusals, sorted, and the count of the rest."""
        listed = ", ".join(sorted({f"{r.host}:{r.port}" for r in self.kept}))
        if self.unlisted:
            listed += f" and {self.unlisted} more refused requests (not listed)"
        return listed


def allowlist(settings: Settings, customer_id: str) -> list[str]:
    """The hosts ``customer_id``'s setup may reach: defaults, deployment extras, customer's.

    Entries are host names, optionally ``*.`` for every subdomain; anything else in the
    settings (a URL, a path, a port) is refused with ``InfrastructureError`` naming it.
    """
    setup = settings.setup
    names = _split(setup.allow) + _split(setup.allow_extra)
    for entry in setup.customer_allow.split(";"):
        customer, _, hosts = entry.partition("=")
        if customer.strip() == customer_id:
            names += _split(hosts)
    out: list[str] = []
    for name in names:
        host = name.lower().rstrip(".")
        if not _HOST.match(host):
            raise InfrastructureError(
                f"egress allowlist entry {name!r} is not a host name (DEVTEAM_SETUP_ALLOW*)",
                details={"entry": name},
            )
        if host not in out:
            out.append(host)
    return out


def ports(settings: Settings) -> list[int]:
    """The ports tunnels may go to (``DEVTEAM_SETUP_PORTS``); InfrastructureError names a
    value that is not a port."""
    out = []
    for value in _split(settings.setup.ports):
        if not re.fullmatch(r"[0-9]{1,5}", value) or not 0 < int(value) < 65536:
            raise InfrastructureError(
                f"DEVTEAM_SETUP_PORTS entry {value!r} is not a port", details={"entry": value})
        out.append(int(value))
    return out or [443]


def filter_lines(hosts: Iterable[str]) -> list[str]:
    """tinyproxy filter patterns (extended regular expressions) matching exactly ``hosts``."""
    lines = []
    for host in hosts:
        if host.startswith("*."):
            lines.append(r"^([a-z0-9-]+\.)+" + re.escape(host[2:]) + "$")
        else:
            lines.append("^" + re.escape(host) + "$")
    return lines


def parse_refusals(log: str) -> list[Refusal]:
    """The requests tinyproxy refused, in order, from its log (``LogLevel Info``)."""
    pending: dict[str, tuple[str, str]] = {}
    refused: list[Refusal] = []
    for line in log.splitlines():
        if m := _REQUEST.search(line):
            pending[m[1]] = (m[3], m[4])  # one request at a time per tinyproxy process
            continue
        if m := _FILTERED.search(line):
            method, target = pending.pop(m[1], ("", ""))
            refused.append(Refusal(host=_host(m[2]), port=_port_of(method, target)))
        elif m := _PORT.search(line):
            method, target = pending.pop(m[1], ("", ""))
            host = target.rpartition(":")[0] if method == "CONNECT" else ""
            refused.append(Refusal(host=_host(host) or "?", port=int(m[2])))
    return refused


def _host(name: str) -> str:
    return clip(name.lower(), MAX_HOST_CHARS)


def _port_of(method: str, target: str) -> int:
    """The port a logged request asked for (the log line is the client's, so hostile: only
    one to five ASCII digits count; anything else is the scheme's default)."""
    if method == "CONNECT":
        port = target.rpartition(":")[2]
        return int(port) if re.fullmatch(r"[0-9]{1,5}", port) else 443
    match = re.match(r"^https?://[^/:]+:([0-9]{1,5})(?:[/?#]|$)", target)
    if match:
        return int(match[1])
    return 443 if target.startswith("https://") else 80


def ca_bundle(settings: Settings) -> Path | None:
    """The CA certificates sandboxes trust: the setting, else the host's system bundle."""
    if settings.setup.ca_bundle:
        path = settings.path(settings.setup.ca_bundle)
        if not path.is_file():
            raise InfrastructureError(
                f"DEVTEAM_SETUP_CA_BUNDLE names {path}, which is not a file",
                details={"path": str(path)},
            )
        return path
    for candidate in ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"):
        if Path(candidate).is_file():
            return Path(candidate)
    return None


def container_env(has_ca: bool) -> dict[str, str]:
    """What a setup command needs to go through the proxy (and trust the CA bundle)."""
    url = f"http://127.0.0.1:{PROXY_PORT}"
    env = {
        "HTTP_PROXY": url, "HTTPS_PROXY": url, "http_proxy": url, "https_proxy": url,
        "NO_PROXY": "localhost,127.0.0.1,::1", "no_proxy": "localhost,127.0.0.1,::1",
        "npm_config_proxy": url, "npm_config_https_proxy": url,
        "COREPACK_ENABLE_DOWNLOAD_PROMPT": "0",
    }
    if has_ca:
        ca = f"{CONTAINER_DIR}/{CA_NAME}"
        env.update({
            "SSL_CERT_FILE": ca, "REQUESTS_CA_BUNDLE": ca, "PIP_CERT": ca, "CURL_CA_BUNDLE": ca,
            "NODE_EXTRA_CA_CERTS": ca, "npm_config_cafile": ca, "GIT_SSL_CAINFO": ca,
        })
    return env


def forwarder_argv() -> list[str]:
    """The in-container forwarder: container loopback port → the proxy's unix socket."""
    return ["socat", f"TCP-LISTEN:{PROXY_PORT},bind=127.0.0.1,fork,reuseaddr",
            f"UNIX-CONNECT:{CONTAINER_DIR}/{SOCKET_NAME}"]


class EgressProxy:
    """The proxy of one setup run (see the module docstring). A context manager.

    ``directory`` is made fresh and holds the socket, the CA bundle, tinyproxy's
    configuration and its log; it is removed on close.
    """

    def __init__(self, settings: Settings, customer_id: str, directory: Path, *,
                 log_max_bytes: int = LOG_MAX_BYTES) -> None:
        self.settings = settings
        self.log_max_bytes = log_max_bytes
        self.customer_id = customer_id
        self.directory = directory
        self.hosts = allowlist(settings, customer_id)
        self.ports = ports(settings)
        self._procs: list[subprocess.Popen[bytes]] = []
        self._offset = 0
        """Bytes of the log already read (or skipped)."""
        self._resync = False
        """The last skip ended inside a line: drop up to the next newline."""
        self.unread_bytes = 0
        """Bytes of the log skipped, not parsed (see :data:`LOG_READ_BYTES`)."""
        self.has_ca = False

    # -- lifecycle -----------------------------------------------------------------------
    def __enter__(self) -> EgressProxy:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        tinyproxy = shutil.which(self.settings.setup.tinyproxy_bin)
        socat = shutil.which(self.settings.setup.socat_bin)
        if tinyproxy is None or socat is None:
            raise InfrastructureError(
                "the egress proxy needs tinyproxy and socat on the worker's host "
                "(`make setup` installs them)",
                details={"tinyproxy": bool(tinyproxy), "socat": bool(socat)},
            )
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory.mkdir(parents=True, mode=0o755)
        self.directory.chmod(0o755)  # the sandbox user must reach the socket
        bundle = ca_bundle(self.settings)
        if bundle is not None:
            shutil.copyfile(bundle, self.directory / CA_NAME)
            (self.directory / CA_NAME).chmod(0o644)
            self.has_ca = True
        (self.directory / "filter").write_text("\n".join(filter_lines(self.hosts)) + "\n")
        port = self._start_tinyproxy(tinyproxy)
        sock = self.directory / SOCKET_NAME
        self._procs.append(subprocess.Popen(
            [socat, f"UNIX-LISTEN:{sock},fork,mode=0666,unlink-early",
             f"TCP:127.0.0.1:{port}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True,
        ))
        _wait_for(sock.exists, "the egress socket")

    def _start_tinyproxy(self, binary: str) -> int:
        for _ in range(5):
            port = _free_port()
            conf = self.directory / "tinyproxy.conf"
            conf.write_text("\n".join([
                f"Port {port}",
                "Listen 127.0.0.1",
                "Timeout 600",
                "MaxClients 64",
                f'LogFile "{self.directory / LOG_NAME}"',
                "LogLevel Info",
                f'PidFile "{self.directory / "tinyproxy.pid"}"',
                f'Filter "{self.directory / "filter"}"',
                "FilterType ere",
                "FilterDefaultDeny Yes",
                "FilterURLs Off",
                "DisableViaHeader Yes",
                *(f"ConnectPort {p}" for p in self.ports),
            ]) + "\n")
            proc = subprocess.Popen(
                self._limited([binary, "-d", "-c", str(conf)]), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            )
            self._procs.append(proc)
            def up(p: int = port, started: subprocess.Popen[bytes] = proc) -> bool:
                return _listening(p) or started.poll() is not None

            try:
                _wait_for(up, "tinyproxy")
            except InfrastructureError:
                proc.kill()
                raise
            if proc.poll() is None:
                return port
        raise InfrastructureError("tinyproxy did not start (no free loopback port?)")

    def _limited(self, argv: list[str]) -> list[str]:
        """``argv`` under the log's size limit (:data:`LOG_MAX_BYTES`): ``sh`` ignores
        ``SIGXFSZ`` (an ignored signal stays ignored across ``exec``), sets the limit in
        its 512-byte blocks, and becomes the command."""
        blocks = max(1, self.log_max_bytes // 512)
        return ["sh", "-c", f"trap '' XFSZ; ulimit -f {blocks} && exec \"$0\" \"$@\"",
                *argv]

    @property
    def log_full(self) -> bool:
        """The log reached its size limit: later refusals were not recorded."""
        try:
            return (self.directory / LOG_NAME).stat().st_size >= self.log_max_bytes
        except OSError:
            return False

    def close(self) -> None:
        for proc in reversed(self._procs):
            with contextlib.suppress(OSError):
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        self._procs.clear()
        shutil.rmtree(self.directory, ignore_errors=True)

    # -- what it refused -----------------------------------------------------------------
    def new_refusals(self, command: str) -> list[Refusal]:
        """Refusals logged since the last call, charged to ``command``.

        Reads on from where the last call stopped, whole lines only (a line still being
        written is left for the next call), at most :data:`LOG_READ_BYTES`: past that the
        rest of what is logged so far is skipped and counted in ``unread_bytes``.
        """
        text = self._read_new().decode(errors="replace")
        return [msgspec.structs.replace(r, command=command) for r in parse_refusals(text)]

    def _read_new(self) -> bytes:
        try:
            with (self.directory / LOG_NAME).open("rb") as log:
                size = os.fstat(log.fileno()).st_size
                if size < self._offset:
                    self._offset = 0  # not expected: tinyproxy only appends
                log.seek(self._offset)
                data = log.read(min(size - self._offset, LOG_READ_BYTES))
                skip, mid_line = self._offset + len(data) < size, False
                if skip:
                    log.seek(size - 1)
                    mid_line = log.read(1) != b"\n"
        except OSError:
            return b""
        lines = data[: data.rfind(b"\n") + 1]
        self._offset += len(lines)
        if self._resync and lines:  # the last skip ended inside this first line
            lines, self._resync = lines[lines.find(b"\n") + 1:], False
        if skip:  # more than one read's worth: what is past it is not parsed
            self.unread_bytes += size - self._offset
            self._offset, self._resync = size, mid_line
        return lines


def _split(value: str) -> list[str]:
    return [part for part in re.split(r"[\s,]+", value) if part]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _wait_for(ready: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.02)
    raise InfrastructureError(f"{what} did not come up within {START_SECONDS:.0f} s")
