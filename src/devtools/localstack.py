"""The local stack: a project-local Postgres cluster, a Redis server and, if needed, dockerd.

``devteam services up`` starts what is missing and waits until each answers; ``down``
stops exactly what ``up`` started (recorded in ``.devteam/stack.json``), plus any service
process of ours (gateway, relay, worker, scripted model) still registered in
``.devteam/run/``. Postgres refuses to run as root, so as root it runs as ``postgres``.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil
import redis
from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from runner.dockerhost import docker_reachable, local_docker_socket
from runner.settings import Settings


class StackError(RuntimeError):
    """A service of the local stack could not be started or did not answer."""


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    port: str
    up: bool
    ours: bool
    detail: str


class LocalStack:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = settings.path(settings.stack.dir)
        self.state_file = self.dir / "stack.json"
        self.logs = self.dir / "logs"

    # -- state -------------------------------------------------------------------------
    def _state(self) -> dict[str, dict[str, object]]:
        try:
            data = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _save(self, state: dict[str, dict[str, object]]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_file)

    def _mark(self, name: str, **info: object) -> None:
        state = self._state()
        state[name] = info
        self._save(state)

    # -- public ------------------------------------------------------------------------
    def up(self, *, docker: bool = True, log: Callable[[str], None] = print) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        self._postgres_up(log)
        self._redis_up(log)
        if docker:
            self._docker_up(log)

    def down(self, log: Callable[[str], None] = print) -> None:
        self._stop_registered_processes(log)
        state = self._state()
        if state.get("dockerd", {}).get("ours"):
            self.stop_dockerd(log)
        if state.get("redis", {}).get("ours"):
            self._stop_pidfile(self.dir / "redis" / "redis.pid", "redis", log)
        if state.get("postgres", {}).get("ours"):
            self._postgres_down(log)
        with contextlib.suppress(FileNotFoundError):
            self.state_file.unlink()

    def status(self) -> list[ServiceStatus]:
        state = self._state()
        pg_port = self.settings.stack.pg_port
        redis_port = self.settings.stack.redis_port
        docker_ok, docker_detail = docker_reachable(self.settings, timeout=2.0)
        return [
            ServiceStatus(
                "postgres",
                str(pg_port),
                _port_open(pg_port),
                bool(state.get("postgres", {}).get("ours")),
                str(self.dir / "pg" / "data"),
            ),
            ServiceStatus(
                "redis",
                str(redis_port),
                _redis_ping(redis_port),
                bool(state.get("redis", {}).get("ours")),
                str(self.dir / "redis"),
            ),
            ServiceStatus(
                "docker",
                "unix socket",
                docker_ok,
                bool(state.get("dockerd", {}).get("ours")),
                docker_detail,
            ),
        ]

    # -- postgres ----------------------------------------------------------------------
    def _pg_bin(self) -> Path:
        if self.settings.stack.pg_bin:
            return Path(self.settings.stack.pg_bin)
        candidates = sorted(
            Path("/usr/lib/postgresql").glob("*/bin/postgres"),
            key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
        )
        if candidates:
            return candidates[-1].parent
        found = shutil.which("postgres")
        if found:
            return Path(found).parent
        raise StackError("PostgreSQL server binaries not found; run `make setup`")

    def _as_pg_user(self, argv: list[str]) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *argv]
        return argv

    def _pg_owner(self, path: Path) -> None:
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            for p in [path, *path.rglob("*")] if path.exists() else []:
                os.chown(p, pw.pw_uid, pw.pw_gid)

    def _postgres_up(self, log: Callable[[str], None]) -> None:
        port = self.settings.stack.pg_port
        base = self.dir / "pg"
        data, run = base / "data", base / "run"
        if _port_open(port):
            log(f"postgres: already answering on 127.0.0.1:{port}")
            self._ensure_database(port)
            return
        bin_dir = self._pg_bin()
        base.mkdir(parents=True, exist_ok=True)
        run.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            # postgres must be able to reach its directories.
            for p in (self.dir, base):
                p.chmod(0o755)
            self._pg_owner(base)
        if not (data / "PG_VERSION").exists():
            log("postgres: initialising a new cluster")
            _run(
                self._as_pg_user(
                    [
                        str(bin_dir / "initdb"),
                        "-D",
                        str(data),
                        "-U",
                        "devteam",
                        "-A",
                        "trust",
                        "-E",
                        "UTF8",
                        "--no-instructions",
                    ]
                )
            )
            conf = data / "postgresql.auto.conf"
            with conf.open("a") as fh:
                fh.write(
                    "listen_addresses = '127.0.0.1'\n"
                    f"port = {port}\n"
                    f"unix_socket_directories = '{run}'\n"
                    "max_connections = 400\n"
                    "shared_buffers = '256MB'\n"
                    "fsync = on\n"
                )
            self._pg_owner(base)
        log(f"postgres: starting on 127.0.0.1:{port}")
        pg_log = self.logs / "postgres.log"
        pg_log.touch()
        if os.geteuid() == 0:
            self.logs.chmod(0o777)
            pw = pwd.getpwnam("postgres")
            os.chown(pg_log, pw.pw_uid, pw.pw_gid)
        _run(
            self._as_pg_user(
                [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(pg_log), "-w", "start"]
            )
        )
        _wait(lambda: _port_open(port), "postgres", 30)
        self._mark("postgres", ours=True, port=port)
        self._ensure_database(port)

    def _ensure_database(self, port: int) -> None:
        bin_dir = self._pg_bin()
        psql = shutil.which("psql") or str(bin_dir / "psql")
        base = [psql, "-h", "127.0.0.1", "-p", str(port), "-U", "devteam", "-d", "postgres"]
        out = _run([*base, "-tAc", "SELECT 1 FROM pg_database WHERE datname = 'devteam'"])
        if out.strip() != "1":
            _run([*base, "-c", "CREATE DATABASE devteam"])

    def _postgres_down(self, log: Callable[[str], None]) -> None:
        data = self.dir / "pg" / "data"
        if not (data / "postmaster.pid").exists():
            return
        log("postgres: stopping")
        bin_dir = self._pg_bin()
        subprocess.run(
            self._as_pg_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"]),
            check=False,
            capture_output=True,
        )

    # -- redis -------------------------------------------------------------------------
    def _redis_up(self, log: Callable[[str], None]) -> None:
        port = self.settings.stack.redis_port
        if _redis_ping(port):
            log(f"redis: already answering on 127.0.0.1:{port}")
            return
        binary = shutil.which("redis-server")
        if not binary:
            raise StackError("redis-server not found; run `make setup`")
        rdir = self.dir / "redis"
        rdir.mkdir(parents=True, exist_ok=True)
        log(f"redis: starting on 127.0.0.1:{port}")
        _run(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--daemonize",
                "yes",
                "--pidfile",
                str(rdir / "redis.pid"),
                "--dir",
                str(rdir),
                "--logfile",
                str(self.logs / "redis.log"),
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
                "--protected-mode",
                "yes",
            ]
        )
        _wait(lambda: _redis_ping(port), "redis", 20)
        self._mark("redis", ours=True, port=port)

    # -- docker ------------------------------------------------------------------------
    def _docker_up(self, log: Callable[[str], None]) -> None:
        ok, detail = docker_reachable(self.settings, timeout=2.0)
        if ok:
            log(f"docker: reachable ({detail})")
            return
        binary = shutil.which("dockerd")
        if not binary:
            raise StackError(
                "no Docker daemon reachable and dockerd not installed; run `make setup`"
            )
        if os.geteuid() != 0:
            raise StackError(
                "no Docker daemon reachable; start one (rootless or system) or run as root "
                "so `make services` can start dockerd"
            )
        ddir = self.dir / "docker"
        ddir.mkdir(parents=True, exist_ok=True)
        sock = local_docker_socket(self.settings)
        log(f"docker: starting dockerd on unix://{sock} (bridge=none, iptables=false)")
        with (self.logs / "dockerd.log").open("ab") as out:
            subprocess.Popen(
                [
                    binary,
                    "--bridge=none",
                    "--iptables=false",
                    "--ip6tables=false",
                    "--ip-forward=false",
                    "--ip-masq=false",
                    "--data-root",
                    str(ddir / "data"),
                    "--exec-root",
                    str(ddir / "exec"),
                    "--pidfile",
                    str(ddir / "docker.pid"),
                    "--host",
                    f"unix://{sock}",
                ],
                stdout=out,
                stderr=out,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        _wait(lambda: docker_reachable(self.settings, timeout=1.0)[0], "dockerd", 60)
        self._mark("dockerd", ours=True, socket=str(sock))

    def stop_dockerd(self, log: Callable[[str], None] = print) -> None:
        """Stop the dockerd this stack started. Running containers stop with it. dockerd
        sometimes lingers long after "shutdown complete" (waiting on its containerd): after
        15 s its whole process group (dockerd and the containerd it started) is killed."""
        self._stop_pidfile(self.dir / "docker" / "docker.pid", "dockerd", log, timeout=15,
                           group=True)

    # -- processes ---------------------------------------------------------------------
    def _stop_pidfile(
        self, pidfile: Path, name: str, log: Callable[[str], None], timeout: float = 10,
        *, group: bool = False,
    ) -> None:
        proc = _process_of(pidfile)
        if proc is None:
            return
        log(f"{name}: stopping (pid {proc.pid})")
        _terminate(proc.pid, timeout, group=group)

    def _stop_registered_processes(self, log: Callable[[str], None]) -> None:
        run_dir = self.dir / "run"
        for pidfile in sorted(run_dir.glob("*.pid")) if run_dir.exists() else []:
            proc = _process_of(pidfile)
            if proc is not None and _alive(proc.pid):
                log(f"{pidfile.stem}: stopping (pid {proc.pid})")
                _terminate(proc.pid, 10)
            pidfile.unlink(missing_ok=True)


def register_process(settings: Settings, name: str) -> Callable[[], None]:
    """Record this process under ``.devteam/run/`` so ``devteam services down`` can stop it:
    its pid and its start time (so a later process that got the same pid is left alone).

    Returns a function that removes the record (call it on a clean exit).
    """
    run_dir = settings.path(settings.stack.dir) / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    pidfile = run_dir / f"{name}-{os.getpid()}.pid"
    pidfile.write_text(f"{os.getpid()} {psutil.Process().create_time()!r}")

    def unregister() -> None:
        pidfile.unlink(missing_ok=True)

    return unregister


def _process_of(pidfile: Path) -> psutil.Process | None:
    """The process a pidfile names (``pid`` or ``pid start-time``), if it still exists and,
    when the file says when it started, is that very process (not a reuse of its pid)."""
    try:
        fields = pidfile.read_text().split()
        pid = int(fields[0])
        started = float(fields[1]) if len(fields) > 1 else None
        proc = psutil.Process(pid)
        if started is not None and abs(proc.create_time() - started) > 0.01:
            return None
    except (OSError, ValueError, IndexError, psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return proc


def _run(argv: list[str]) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise StackError(f"{Path(argv[0]).name} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def _redis_ping(port: int) -> bool:
    """Whether a Redis server answers PING on ``port`` (redis-py)."""
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=0.5,
                         socket_connect_timeout=0.5)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs (psutil); a zombie (exited, not yet reaped) does not, and
    is reaped here when it is this process's child (a dockerd this process started)."""
    try:
        proc = psutil.Process(pid)
        if proc.status() != psutil.STATUS_ZOMBIE:
            return True
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    return False


def _terminate(pid: int, timeout: float, *, group: bool = False) -> None:
    """SIGTERM ``pid``; SIGKILL it (and, with ``group``, the process group it leads) if it
    is still there after ``timeout`` seconds; return once it is gone (psutil)."""
    try:
        proc = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
        proc.terminate()
    if _gone(pid, timeout):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
        proc.kill()
    _gone(pid, 10)


def _gone(pid: int, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for ``pid`` to be gone; whether it is."""
    return _poll(lambda: not _alive(pid), timeout, every=0.1)


def _poll(check: Callable[[], bool], timeout: float, *, every: float) -> bool:
    """Ask ``check`` every ``every`` seconds until it holds or ``timeout`` passed
    (tenacity); whether it held."""
    retrying = Retrying(retry=retry_if_result(lambda held: not held),
                        stop=stop_after_delay(timeout), wait=wait_fixed(every),
                        retry_error_callback=lambda _state: False)
    return bool(retrying(check))


def _wait(check: Callable[[], bool], name: str, timeout: float) -> None:
    if not _poll(check, timeout, every=0.2):
        raise StackError(f"{name} did not answer within {timeout:.0f}s")
