"""Git servers on loopback for tests: smart HTTP (``git http-backend`` behind Basic auth),
a server that redirects every request elsewhere, and a TCP port that answers with noise.

Unlike libgit2's local transport, pushes through ``GitHttpServer`` run the bare
repository's hooks (``pre-receive``, ``post-receive``), so tests can count pushes or make
the server refuse them, and it checks the token the client sends, so credentials are
really exercised. Every request is recorded with the ``Authorization`` header it carried,
so a test can prove a credential was (or was never) sent to a server.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class _Recording:
    """A loopback HTTP server on a free port that records each request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, int]] = []
        """``(method, path, status)`` of every request, in order."""
        self.authorizations: list[str] = []
        """The ``Authorization`` header of every request that carried one."""
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

            def do_GET(self) -> None:
                server._record(self)
                server.handle(self)

            def do_POST(self) -> None:
                server._record(self)
                server.handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, name: str) -> str:
        return f"{self.base}/{name}"

    def __enter__(self):  # noqa: ANN204 - the subclass
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _record(self, req: BaseHTTPRequestHandler) -> None:
        if req.headers.get("Authorization"):
            self.authorizations.append(req.headers["Authorization"])

    def handle(self, req: BaseHTTPRequestHandler) -> None:
        raise NotImplementedError


class GitHttpServer(_Recording):
    """``git http-backend`` serving the bare repositories under ``project_root``; with a
    ``token``, every request needs ``Authorization: Basic username:token`` (else 401)."""

    def __init__(self, project_root: Path, *, username: str = "", token: str = "") -> None:
        super().__init__()
        self.project_root = project_root
        self.expected = (
            "Basic " + base64.b64encode(f"{username}:{token}".encode()).decode() if token else ""
        )

    def __enter__(self) -> GitHttpServer:
        return super().__enter__()

    def handle(self, req: BaseHTTPRequestHandler) -> None:
        path, _, query = req.path.partition("?")
        if self.expected and req.headers.get("Authorization") != self.expected:
            self.requests.append((req.command, path, 401))
            req.send_response(401)
            req.send_header("WWW-Authenticate", 'Basic realm="git"')
            req.send_header("Content-Length", "0")
            req.end_headers()
            return
        body = self._body(req)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.project_root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": req.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": req.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": "tester",
            "REMOTE_ADDR": "127.0.0.1",
        }
        if req.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = req.headers["Content-Encoding"]
        if req.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = req.headers["Git-Protocol"]
        out = subprocess.run(
            ["git", "http-backend"], input=body, env=env, capture_output=True, check=False
        ).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = out.partition(b"\n\n")
        status = 200
        headers = []
        for line in head.decode("latin-1").splitlines():
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.strip().split()[0])
            elif key:
                headers.append((key, value.strip()))
        self.requests.append((req.command, path, status))
        req.send_response(status)
        for key, value in headers:
            req.send_header(key, value)
        req.send_header("Content-Length", str(len(payload)))
        req.end_headers()
        req.wfile.write(payload)

    @staticmethod
    def _body(req: BaseHTTPRequestHandler) -> bytes:
        if req.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(req.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    req.rfile.readline()
                    break
                chunks.append(req.rfile.read(size))
                req.rfile.readline()
            return b"".join(chunks)
        return req.rfile.read(int(req.headers.get("Content-Length") or 0))


class RedirectingServer(_Recording):
    """Answers every request with a redirect to the same path and query under ``target``
    (another server's base URL), as a compromised or hostile git host would; with a
    ``token``, it first demands Basic auth (401) so a client sends it its credential."""

    def __init__(self, target: str, *, status: int = 302, token: str = "",
                 username: str = "x-access-token") -> None:
        super().__init__()
        self.target = target.rstrip("/")
        self.status = status
        self.expected = (
            "Basic " + base64.b64encode(f"{username}:{token}".encode()).decode() if token else ""
        )

    def __enter__(self) -> RedirectingServer:
        return super().__enter__()

    def handle(self, req: BaseHTTPRequestHandler) -> None:
        path = req.path.partition("?")[0]
        if self.expected and req.headers.get("Authorization") != self.expected:
            self.requests.append((req.command, path, 401))
            req.send_response(401)
            req.send_header("WWW-Authenticate", 'Basic realm="git"')
            req.send_header("Content-Length", "0")
            req.end_headers()
            return
        self.requests.append((req.command, path, self.status))
        req.send_response(self.status)
        req.send_header("Location", self.target + req.path)
        req.send_header("Content-Length", "0")
        req.end_headers()


class NoiseServer:
    """A TCP port that accepts connections, writes ``banner`` and closes: an open port
    that is not a git server (an SSH-looking banner, an HTTP page, a database...)."""

    def __init__(self, banner: bytes = b"SSH-2.0-OpenSSH_9.2\r\n") -> None:
        self.banner = banner
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> NoiseServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                try:
                    conn.sendall(self.banner)
                    conn.settimeout(0.2)
                    conn.recv(4096)
                except OSError:
                    pass


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def repository_access(prefixes: dict[str, list[str]], private: str = "127.0.0.1"
                      ) -> dict[str, str]:
    """The ``DEVTEAM_GIT_*`` settings that let each customer use the repositories under its
    prefixes (e.g. a loopback server's ``base``), with ``private`` allowed as a destination:
    tests grant loopback explicitly, as an operator would an internal git host."""
    return {
        "DEVTEAM_GIT_CUSTOMER_REPOS": ";".join(
            f"{customer}={' '.join(urls)}" for customer, urls in prefixes.items()),
        "DEVTEAM_GIT_PRIVATE_HOSTS": private,
    }
