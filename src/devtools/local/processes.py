"""The service processes a terminal command runs an execution with: a relay and a worker
(the ``devteam`` executable, each in a session of its own, logging to a file), plus, when
a model script is given, the scripted model in this process. Stopped again whatever
happened, newest first.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from devtools.local.errors import CommandError
from runner.settings import Settings, load_settings

DEVTEAM = Path(sys.executable).parent / "devteam"
ALLOWED_FILE_ROOTS = "DEVTEAM_WORKSPACE_ALLOWED_FILE_ROOTS"


@dataclass
class Spawned:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path


@dataclass
class LocalPipeline:
    """What :func:`local_pipeline` started: the environment its processes run with (and the
    settings read from it), the processes, and where they log."""

    env: dict[str, str]
    settings: Settings
    logdir: Path
    procs: list[Spawned] = field(default_factory=list)
    model_url: str | None = None

    def check(self) -> None:
        """Raise CommandError when a process we started has exited (it never should)."""
        for proc in self.procs:
            code = proc.popen.poll()
            if code is not None:
                raise CommandError(f"the {proc.name} exited (code {code}); see {proc.log}")


def pipeline_env(
    base: dict[str, str], *, allowed_roots: Sequence[Path], model_url: str | None
) -> dict[str, str]:
    """``base`` plus what our processes need: ``file://`` access to ``allowed_roots`` (added
    to any roots already configured), the scripted model's URL, and JSON logs."""
    roots = [r for r in base.get(ALLOWED_FILE_ROOTS, "").split(":") if r.strip()]
    roots += [str(p.resolve()) for p in allowed_roots]
    env = {**base, ALLOWED_FILE_ROOTS: ":".join(dict.fromkeys(roots)), "DEVTEAM_LOG_FORMAT": "json"}
    if model_url is not None:
        env["DEVTEAM_MODEL_API_BASE"] = model_url
    # A run on this machine opens no metrics port unless asked to (the service's own relay
    # and worker may hold the default ones).
    env.setdefault("DEVTEAM_METRICS_RELAY_PORT", "0")
    env.setdefault("DEVTEAM_METRICS_WORKER_PORT", "0")
    return env


@contextlib.contextmanager
def local_pipeline(
    logdir: Path,
    *,
    allowed_roots: Sequence[Path] = (),
    model_script: Path | None = None,
    threads: int = 4,
) -> Iterator[LocalPipeline]:
    """Start the scripted model (with ``model_script``), a relay and a worker; yield; stop
    them. The processes get this process's environment with :func:`pipeline_env`."""
    logdir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        model_url = None
        if model_script is not None:
            from devtools.scripted_model import ScriptedModelServer, load_script

            model = stack.enter_context(ScriptedModelServer(load_script(model_script)))
            model_url = model.url
        env = pipeline_env(dict(os.environ), allowed_roots=allowed_roots, model_url=model_url)
        running = LocalPipeline(
            env=env, settings=load_settings(env), logdir=logdir, model_url=model_url
        )
        stack.callback(_stop, running.procs)
        running.procs.append(_spawn("relay", ["relay"], env, logdir))
        running.procs.append(_spawn("worker", ["worker", "--threads", str(threads)], env, logdir))
        yield running


def _spawn(name: str, args: list[str], env: dict[str, str], logdir: Path) -> Spawned:
    log = logdir / f"{name}.log"
    with log.open("ab") as out:
        popen = subprocess.Popen(
            [str(DEVTEAM), *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return Spawned(name=name, popen=popen, log=log)


def _stop(procs: list[Spawned]) -> None:
    """SIGTERM every process group, newest first; SIGKILL what is left after 15 s."""
    for proc in reversed(procs):
        if proc.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.popen.pid, signal.SIGTERM)
    for proc in reversed(procs):
        try:
            proc.popen.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.popen.pid, signal.SIGKILL)
            proc.popen.wait(5)
