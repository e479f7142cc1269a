"""Real Aider under the host's limits: a task file too large for the model is refused before
Aider starts, and Aider itself runs under an address-space and a CPU-time limit."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from tests.support.scripted import make_working_copy, model_settings

from devtools.scripted_model import ScriptedModelServer, parse_script
from runner import toolprocess
from runner.aider import AiderTool
from runner.ports import ImplementRequest
from runner.redact import Redactor

pytestmark = pytest.mark.slow

SCRIPT = """
[tasks."BIG.1"]
edit_format = "whole"
[[tasks."BIG.1".edits]]
path = "src/app.py"
content = "VALUE = 2\\n"
"""
BIG = 64 * 1024 * 1024
"""The attack: a 64 MB file named in a task took the host-side Aider to 2.3 GB RSS."""


@pytest.fixture(scope="module")
def server() -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer(parse_script(SCRIPT, source="test_aider_limits")) as running:
        yield running


@pytest.fixture
def wc(tmp_path: Path) -> Path:
    path = make_working_copy(tmp_path / "wc", {"src/app.py": "VALUE = 1\n"})
    with (path / "data.py").open("w") as handle:  # untracked: only the task names it
        line = "x = 1  # padding padding padding padding padding padding padding\n"
        handle.write(line * (BIG // len(line) + 1))
    return path


def request(wc: Path) -> ImplementRequest:
    return ImplementRequest(workdir=wc, task_id="BIG.1", title="Use the data",
                            files=["src/app.py", "data.py"])


class Peak:
    """The largest address space and RSS of every tool process started meanwhile."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.vms = self.rss = 0
        original = toolprocess.ToolProcess.__init__
        peak = self

        def start(tool, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
            original(tool, *args, **kwargs)
            threading.Thread(target=peak.watch, args=(tool.proc,), daemon=True).start()

        monkeypatch.setattr(toolprocess.ToolProcess, "__init__", start)

    def watch(self, proc) -> None:  # type: ignore[no-untyped-def]
        process = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                info = process.memory_info()
            except psutil.Error:
                return
            self.vms, self.rss = max(self.vms, info.vms), max(self.rss, info.rss)
            time.sleep(0.02)


def test_given_a_64_mb_task_file_then_it_is_a_config_error_before_aider_starts(
    server: ScriptedModelServer, wc: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    peak = Peak(monkeypatch)
    asked = len(server.requests)

    artifact = AiderTool(model_settings(server.url), Redactor()).implement(request(wc))

    assert not artifact.success
    assert artifact.error is not None
    assert artifact.error["classification"] == "config"
    message = artifact.error["message"]
    assert "larger than 1,048,576 bytes" in message
    assert "DEVTEAM_LIMITS_MODEL_FILE_BYTES" in message
    size = (wc / "data.py").stat().st_size
    assert size > BIG
    assert f"data.py ({size:,} bytes)" in message  # the file and its size, repository-relative
    assert str(wc) not in message
    assert len(server.requests) == asked  # the model never saw it
    assert peak.vms == 0  # and no tool process was started
    assert (wc / "src/app.py").read_text() == "VALUE = 1\n"


def test_given_aider_past_its_memory_limit_then_it_stops_as_resource_limit(
    server: ScriptedModelServer, wc: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the operator lets the file through; the address-space limit still holds Aider
    peak = Peak(monkeypatch)
    settings = model_settings(server.url, DEVTEAM_LIMITS_MODEL_FILE_BYTES=str(10 * BIG),
                              DEVTEAM_AIDER_MEMORY_MB="700")

    artifact = AiderTool(settings, Redactor()).implement(request(wc))

    assert not artifact.success
    assert artifact.error is not None
    assert artifact.error["classification"] == "resource_limit", artifact.error
    assert artifact.error["message"] == (
        "aider ran out of memory (700 MiB, DEVTEAM_AIDER_MEMORY_MB) and was stopped")
    assert "MemoryError" in artifact.outputs.stdout
    assert 0 < peak.vms <= 700 * 1024 * 1024  # it ran, and never held more than allowed
    assert (wc / "src/app.py").read_text() == "VALUE = 1\n"


def test_given_aider_past_its_cpu_limit_then_it_is_killed_as_resource_limit(
    server: ScriptedModelServer, tmp_path: Path
) -> None:
    wc = make_working_copy(tmp_path / "small", {"src/app.py": "VALUE = 1\n"})
    settings = model_settings(server.url, DEVTEAM_AIDER_CPU_SECONDS="1")

    artifact = AiderTool(settings, Redactor()).implement(
        ImplementRequest(workdir=wc, task_id="BIG.1", title="t", files=["src/app.py"]))

    assert not artifact.success
    assert artifact.error == {
        "classification": "resource_limit",
        "message": "aider used up its CPU time (1 s, DEVTEAM_AIDER_CPU_SECONDS) and was stopped",
    }
    assert (wc / "src/app.py").read_text() == "VALUE = 1\n"
