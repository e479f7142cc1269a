"""Running one command in a task container: streamed, timed, cancellable.

The command runs through the image's exec wrapper (``/opt/devteam/exec.py``), which puts
it in its own process group, enforces the timeout, and reports exit code and usage. A
reader thread feeds the exec's demultiplexed output to an :class:`OutputCollector` while
the calling thread watches the deadline and the cancel event. Docker cannot kill an exec,
so a cancel runs a second exec that kills the command's process group (or, when that is
impossible, kills the container).

The command runs as the wrapper's uid and must not forge its report: the report's nonce
goes to the wrapper on stdin (argv is readable by every process in the container), and the
report is checked against the exit status Docker records for the exec (see ``output``), so
that status is waited for. A wrapper killed under its command leaves the command running:
its process group is killed.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from docker.utils.socket import demux_adaptor, frames_iter

from runner.errors import InfrastructureError, RunnerError
from runner.ports import CommandResult, LineSink
from runner.sandbox.engine import call
from runner.sandbox.output import OutputCollector, command_result, distrust

WRAPPER = "/opt/devteam/exec.py"
QUOTA_ENV = "DEVTEAM_WORKSPACE_QUOTA_MB"
"""Read by the exec wrapper: how many MiB ``/workspace`` may hold (its default: 2048)."""
USER = "10001:10001"
WORKDIR = "/workspace"
GRACE_SECONDS = 5.0
"""How long past the command's timeout we wait for the wrapper before giving up on it."""
REPORT_WAIT_SECONDS = 1.5
"""After a kill, how long the wrapper gets to print its report before the stream is cut."""
WRAPPER_REFUSED = 2
"""The exec wrapper's exit status when it runs nothing (wrong arguments, no nonce)."""
EXIT_WAIT_SECONDS = 2.0
"""How long after the exec's stream ended Docker gets to record the wrapper's exit status."""
POLL_SECONDS = 0.05


def _read(stream: Any, collector: OutputCollector, done: threading.Event) -> None:
    try:
        for stdout, stderr in stream:
            if stdout:
                collector.feed(1, stdout)
            if stderr:
                collector.feed(2, stderr)
    except Exception:  # noqa: BLE001, S110 - the stream is closed under us on cancel
        pass
    finally:
        collector.close()
        done.set()


def exec_quiet(api: Any, container: str, argv: list[str], *, user: str = USER) -> int:
    """Run ``argv`` to completion without streaming; its exit code (-1 if unknown)."""
    exec_id = call(f"exec in {container}", api.exec_create, container, argv, user=user)["Id"]
    call(f"exec in {container}", api.exec_start, exec_id)
    code = call(f"exec in {container}", api.exec_inspect, exec_id).get("ExitCode")
    return code if isinstance(code, int) else -1


def _attach(
    api: Any, exec_id: str, what: str, nonce: str
) -> tuple[Iterator[tuple[bytes | None, bytes | None]], Callable[[], None]]:
    """Start the exec, write ``nonce`` on the wrapper's stdin, and return its ``(stdout,
    stderr)`` chunks with a function that cuts them off (from another thread too).

    The SDK either streams an exec's output or hands over its socket (needed to write
    stdin), so this is the SDK's own demultiplexed stream, read from that socket.
    """
    sock = call(what, api.exec_start, exec_id, socket=True)
    raw = getattr(sock, "_sock", sock)  # a unix socket comes wrapped in a SocketIO
    call(what, raw.sendall, f"{nonce}\n".encode())

    def chunks() -> Iterator[tuple[bytes | None, bytes | None]]:
        for stream, data in frames_iter(sock, tty=False):
            yield demux_adaptor(stream, data)

    def cut() -> None:
        with contextlib.suppress(Exception):  # already closed, or not a socket (ssh://)
            raw.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(Exception):
            sock.close()

    return chunks(), cut


def _kill_group(api: Any, container: str, collector: OutputCollector) -> bool:
    """Kill the process group the wrapper reported at its start; whether that was done."""
    pgid = (collector.start or {}).get("pgid")
    if isinstance(pgid, int) and pgid > 1:
        try:
            return exec_quiet(api, container, ["python3", WRAPPER, "kill", str(pgid)]) == 0
        except RunnerError:
            return False
    return False


def _stop(api: Any, container: str, collector: OutputCollector) -> None:
    """Kill the running command's process group; kill the container if that cannot be done."""
    collector.started.wait(timeout=1.0)
    if _kill_group(api, container, collector):
        return
    # No process group to kill (or no process left to kill it with: a fork bomb).
    with contextlib.suppress(RunnerError):
        call(f"kill {container}", api.kill, container)


def _exit_code(api: Any, exec_id: str, what: str, *, settle: float) -> int | None:
    """The exec's exit status once Docker has recorded it; None when it has not within
    ``settle`` seconds or cannot say (the stream can end a moment before the exit is
    recorded)."""
    deadline = time.monotonic() + settle
    while True:
        try:
            info = call(what, api.exec_inspect, exec_id)
        except RunnerError:
            return None
        code = info.get("ExitCode")
        if isinstance(code, int) and not info.get("Running"):
            return code
        if time.monotonic() >= deadline:
            return None
        time.sleep(POLL_SECONDS)


def run_command(
    api: Any,
    container: str,
    command: str,
    *,
    timeout: float,
    on_line: LineSink | None = None,
    cancel: threading.Event | None = None,
    env: Mapping[str, str] | None = None,
) -> CommandResult:
    """Run ``command`` with ``sh -c`` in ``/workspace`` as uid 10001 and describe the outcome.

    Lines reach ``on_line`` as they are printed. Returns (never raises) for a failing,
    timed-out or cancelled command, and for one that tampered with the wrapper's report
    (a failure, see ``output.classify``); a cancel returns within about two seconds. Raises
    ``InfrastructureError``/``TransientError`` only when Docker itself fails (e.g. the
    container is gone, or no exit status was recorded for a command that finished).
    """
    nonce = secrets.token_hex(8)
    collector = OutputCollector(nonce, on_line)
    if cancel is not None and cancel.is_set():
        return command_result(
            command, collector, exit_code=None, duration=0.0, timed_out=False, cancelled=True
        )
    argv = ["python3", WRAPPER, "run", f"{timeout:.3f}", command]
    what = f"run in {container}"
    started = time.monotonic()
    exec_id = call(
        what,
        api.exec_create,
        container,
        argv,
        stdin=True,
        stdout=True,
        stderr=True,
        user=USER,
        workdir=WORKDIR,
        environment=dict(env or {}),
    )["Id"]
    stream, cut = _attach(api, exec_id, what, nonce)
    done = threading.Event()
    reader = threading.Thread(
        target=_read, args=(stream, collector, done), name=f"exec-{container}", daemon=True
    )
    reader.start()
    deadline = started + timeout + GRACE_SECONDS
    timed_out = cancelled = False
    try:
        while not done.wait(POLL_SECONDS):
            if cancel is not None and cancel.is_set():
                cancelled = True
            elif time.monotonic() > deadline:
                timed_out = True
            if cancelled or timed_out:
                _stop(api, container, collector)
                if not done.wait(REPORT_WAIT_SECONDS):
                    cut()
                    done.wait(0.5)
                break
        stopped = timed_out or cancelled
        exit_code = _exit_code(api, exec_id, what, settle=0.0 if stopped else EXIT_WAIT_SECONDS)
    finally:
        cut()
    if not stopped:
        _check_finished(api, container, command, collector, exit_code)
    return command_result(
        command,
        collector,
        exit_code=exit_code,
        duration=time.monotonic() - started,
        timed_out=timed_out,
        cancelled=cancelled,
    )


def _check_finished(
    api: Any, container: str, command: str, collector: OutputCollector, exit_code: int | None
) -> None:
    """After an exec the runner did not stop: raise when the infrastructure, not the command,
    decided its outcome; kill what the command left running when the wrapper's report is
    missing or not believed (the command may have killed the wrapper)."""
    details = {"container": container, "command": command[:200]}
    if collector.end is None and not _running(api, container):
        # The wrapper never reported because its container went away under it (the Docker
        # engine restarted, the container was removed): the command's fate is unknown, so
        # this is the infrastructure's failure, not the command's (the stage is retried).
        raise InfrastructureError(
            f"{container} stopped while a command was running in it", details=details
        )
    if collector.start is None and collector.end is None and exit_code == WRAPPER_REFUSED:
        # The wrapper refused to run at all (it prints its usage and exits 2 before any
        # command starts): an image built from another version of this service
        raise InfrastructureError(
            f"the exec wrapper in {container} refused to start a command: the runner image "
            "is older or newer than this service (rebuild it: devteam image build)",
            details=details)
    if exit_code is None:
        # The report cannot be checked without it (see ``output``); nothing the command
        # can do keeps Docker from recording how the wrapper exited.
        raise InfrastructureError(
            f"Docker recorded no exit status for a command in {container}", details=details
        )
    if collector.end is None or distrust(collector, exit_code, stopped=False) is not None:
        # The wrapper died before its report, or the report is not its own: the command
        # (or what it started) may still be running.
        _kill_group(api, container, collector)


def _running(api: Any, container: str, settle: float = 2.0) -> bool:
    """Whether ``container`` still runs ``settle`` seconds on (False as soon as it is seen
    stopped or gone, or Docker is unreachable): the exec's stream can end a moment before
    the engine records that the container died."""
    deadline = time.monotonic() + settle
    while True:
        try:
            info = call(f"inspect {container}", api.inspect_container, container)
        except RunnerError:
            return False
        if not (info.get("State") or {}).get("Running"):
            return False
        if time.monotonic() >= deadline:
            return True
        time.sleep(0.1)
