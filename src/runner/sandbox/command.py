"""Running one command in a task container: streamed, timed, cancellable.

The command runs through the image's exec wrapper (``/opt/devteam/exec.py``), which puts
it in its own process group, enforces the timeout, and reports exit code and usage. A
reader thread feeds the exec's demultiplexed output to an :class:`OutputCollector` while
the calling thread watches the deadline and the cancel event. Docker cannot kill an exec,
so a cancel runs a second exec that kills the command's process group (or, when that is
impossible, kills the container).
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from collections.abc import Mapping
from typing import Any

from runner.errors import InfrastructureError, RunnerError
from runner.ports import CommandResult, LineSink
from runner.sandbox.engine import call
from runner.sandbox.output import OutputCollector, command_result

WRAPPER = "/opt/devteam/exec.py"
QUOTA_ENV = "DEVTEAM_WORKSPACE_QUOTA_MB"
"""Read by the exec wrapper: how many MiB ``/workspace`` may hold (its default: 2048)."""
USER = "10001:10001"
WORKDIR = "/workspace"
GRACE_SECONDS = 5.0
"""How long past the command's timeout we wait for the wrapper before giving up on it."""
REPORT_WAIT_SECONDS = 1.5
"""After a kill, how long the wrapper gets to print its report before the stream is cut."""
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


def _stop(api: Any, container: str, collector: OutputCollector) -> None:
    """Kill the running command's process group; kill the container if that cannot be done."""
    collector.started.wait(timeout=1.0)
    pgid = (collector.start or {}).get("pgid")
    if isinstance(pgid, int) and pgid > 1:
        try:
            if exec_quiet(api, container, ["python3", WRAPPER, "kill", str(pgid)]) == 0:
                return
        except RunnerError:
            pass
    # No process group to kill (or no process left to kill it with: a fork bomb).
    with contextlib.suppress(RunnerError):
        call(f"kill {container}", api.kill, container)


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
    timed-out or cancelled command; a cancel returns within about two seconds. Raises
    ``InfrastructureError``/``TransientError`` only when Docker itself fails (e.g. the
    container is gone).
    """
    nonce = secrets.token_hex(8)
    collector = OutputCollector(nonce, on_line)
    if cancel is not None and cancel.is_set():
        return command_result(
            command, collector, exit_code=None, duration=0.0, timed_out=False, cancelled=True
        )
    argv = ["python3", WRAPPER, "run", nonce, f"{timeout:.3f}", command]
    what = f"run in {container}"
    started = time.monotonic()
    exec_id = call(
        what,
        api.exec_create,
        container,
        argv,
        stdout=True,
        stderr=True,
        user=USER,
        workdir=WORKDIR,
        environment=dict(env or {}),
    )["Id"]
    stream = call(what, api.exec_start, exec_id, stream=True, demux=True)
    done = threading.Event()
    reader = threading.Thread(
        target=_read, args=(stream, collector, done), name=f"exec-{container}", daemon=True
    )
    reader.start()
    deadline = started + timeout + GRACE_SECONDS
    timed_out = cancelled = False
    while not done.wait(POLL_SECONDS):
        if cancel is not None and cancel.is_set():
            cancelled = True
        elif time.monotonic() > deadline:
            timed_out = True
        if cancelled or timed_out:
            _stop(api, container, collector)
            if not done.wait(REPORT_WAIT_SECONDS):
                with contextlib.suppress(Exception):  # ssh:// streams cannot be cut
                    stream.close()
                done.wait(0.5)
            break
    exit_code: int | None = None
    try:
        exit_code = call(what, api.exec_inspect, exec_id).get("ExitCode")
    except RunnerError:
        exit_code = None
    if collector.end is None and not (timed_out or cancelled) and not _running(api, container):
        # The wrapper never reported because its container went away under it (the Docker
        # engine restarted, the container was removed): the command's fate is unknown, so
        # this is the infrastructure's failure, not the command's (the stage is retried).
        raise InfrastructureError(
            f"{container} stopped while a command was running in it",
            details={"container": container, "command": command[:200]},
        )
    return command_result(
        command,
        collector,
        exit_code=exit_code,
        duration=time.monotonic() - started,
        timed_out=timed_out,
        cancelled=cancelled,
    )


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
