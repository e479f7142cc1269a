"""``devteam watch``: the terminal client over a real gateway, its reconnect policy, its view."""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import subprocess
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console
from sqlalchemy import text
from tests.support.procs import DEVTEAM, ROOT, wait_http
from tests.support.streams import finish, new_execution, write

from gateway.watch import BACKOFF_CAP, Backoff, WatchState, backoff_delay, render
from pipeline import stream

SEQ = re.compile(r"^\S+ #(\d+) ")


# -- the reconnect policy ----------------------------------------------------------------


@given(attempt=st.integers(min_value=0, max_value=10_000), r=st.floats(min_value=0, max_value=1))
def test_a_reconnect_delay_is_positive_and_never_over_30_seconds(attempt: int, r: float) -> None:
    delay = backoff_delay(attempt, rand=lambda: r)
    assert 0 < delay <= BACKOFF_CAP == 30.0


def test_the_delay_grows_with_each_attempt_until_the_cap() -> None:
    floors = [backoff_delay(a, rand=lambda: 0.0) for a in range(12)]
    ceilings = [backoff_delay(a, rand=lambda: 1.0) for a in range(12)]
    # the floor doubles until the cap bounds it, then stays at half the cap
    assert floors[:6] == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0]
    assert all(b >= a for a, b in zip(floors, floors[1:], strict=False))
    assert floors[-1] == 15.0 and ceilings[-1] == 30.0


def test_the_delay_is_jittered_so_clients_do_not_reconnect_in_lockstep() -> None:
    rng = random.Random(7)
    draws = [backoff_delay(4, rand=rng.random) for _ in range(200)]
    assert len({round(d, 6) for d in draws}) > 150
    assert 4.0 <= min(draws) < 5.0 and 7.0 < max(draws) <= 8.0  # spread over [4, 8]


# -- the view ----------------------------------------------------------------------------


def _frame(pos: int, seq: int, kind: str, payload: dict, execution: str = "e1",
           project: str = "acme/web") -> dict:
    return {"id": str(pos), "type": kind, "ts": "2026-01-01T00:00:00.000Z", "customerId": "acme",
            "projectId": project, "executionId": execution, "seq": seq, "payload": payload}


def test_the_live_view_shows_a_progress_bar_per_execution_and_the_log_tail() -> None:
    state = WatchState()
    state.apply(_frame(10, 1, "execution-update", {
        "status": "running", "stage": "VERIFY", "taskId": "1.2", "progress": 50,
        "branch": "task/1-2-mul", "completedTasks": 3, "totalTasks": 6}))
    state.apply(_frame(11, 2, "execution-log", {"level": "info", "stage": "VERIFY",
                                                 "taskId": "1.2", "lines": ["pytest: 4 passed"]}))
    console = Console(record=True, width=140, force_terminal=False)
    console.print(render(state, "connected"))
    shown = console.export_text()
    assert "acme/web" in shown and "running" in shown and " 50%" in shown
    assert "VERIFY" in shown and "task/1-2-mul" in shown
    assert "pytest: 4 passed" in shown
    assert state.cursor == "11"


def test_late_frames_of_an_older_execution_do_not_replace_the_one_the_snapshot_named() -> None:
    # Given the snapshot says acme/web's latest execution is e2, still running
    state = WatchState(projects=("acme/web",))
    state.seed({"executionId": "e2", "projectId": "acme/web", "status": "running",
                "progress": 0, "startedAt": "2026-01-01T00:01:00.000Z"})
    # When a frame of the previous execution e1, still in flight, arrives
    state.apply(_frame(5, 9, "completion", {"status": "completed", "completedTasks": 6,
                                             "totalTasks": 6, "durationMs": 1000}, "e1"))
    # Then e2 is still the one watched (and it has not ended)
    assert [v.execution_id for v in state.watched()] == ["e2"]
    assert not state.done()
    # and an execution seen starting on the stream afterwards is newer still
    state.apply(_frame(20, 1, "execution-update", {"status": "initializing", "progress": 0},
                       "e3"))
    assert [v.execution_id for v in state.watched()] == ["e3"]


# -- over a real gateway -----------------------------------------------------------------


class Watcher:
    """``devteam watch`` as a subprocess, its stdout collected line by line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.stderr = b""
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, env: dict[str, str], token: str, *args: str) -> Watcher:
        proc = await asyncio.create_subprocess_exec(
            str(DEVTEAM), "watch", *args, "--plain",
            env={**env, "DEVTEAM_TOKEN": token}, cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            self.lines.append(raw.decode().rstrip("\n"))
            self._changed.set()
        self._changed.set()

    async def wait_for(self, predicate: Callable[[str], bool], timeout: float = 30) -> str:
        async with asyncio.timeout(timeout):
            while True:
                for line in self.lines:
                    if predicate(line):
                        return line
                self._changed.clear()
                await self._changed.wait()

    async def exit_code(self, timeout: float = 30) -> int:
        async with asyncio.timeout(timeout):
            code = await self.proc.wait()
            await self._reader
            assert self.proc.stderr is not None
            self.stderr = await self.proc.stderr.read()
        return code

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()

    def seqs(self) -> list[int]:
        """Sequence numbers of the log lines shown."""
        return [int(m.group(1)) for line in self.lines if " | " in line
                for m in [SEQ.match(line)] if m]


@pytest.fixture
async def watchers():
    started: list[Watcher] = []
    yield started
    for w in started:
        w.kill()


async def _cursor_of(store, execution, seq: int) -> str:
    async with store.transaction() as session:
        pos = (await session.execute(
            text("SELECT pos FROM notifications WHERE execution_id = :e AND seq = :s"),
            {"e": execution, "s": seq})).scalar_one()
    return str(pos)


async def _complete(store, execution, status: str = "completed") -> None:
    async with store.tx() as tx:
        await stream.append(tx, execution, [("completion", {
            "status": status, "completedTasks": 1, "totalTasks": 1, "durationMs": 1500})])
    await finish(store, execution)


async def test_watch_survives_a_gateway_restart_and_resumes_from_its_cursor_without_duplicates(
    store, procs, env, token_for, watchers
) -> None:
    # Given a gateway, an execution of acme/web and a watcher following it
    gateway = procs.gateway()
    execution = await new_execution(store, "acme/web")
    token = token_for("alice", ["acme/*"])
    watcher = await Watcher.start(env, token, "acme/web", "--url", gateway.url, "--once-complete")
    watchers.append(watcher)
    await watcher.wait_for(lambda line: line.startswith("# connected"))
    await write(store, execution, 3)
    await watcher.wait_for(lambda line: line.startswith("acme/web #4 info TEST 1 | line 2"))
    # When the gateway dies, frames are written while it is down, and another one starts
    gateway.kill(signal.SIGKILL)
    gateway.popen.wait(10)
    await watcher.wait_for(lambda line: "reconnecting in" in line)
    await write(store, execution, 3)
    revived = procs.devteam("gateway", "serve", "--port", str(gateway.port), port=gateway.port)
    await asyncio.to_thread(wait_http, revived, "/health", 30)
    # Then the watcher resumes from the last cursor it saw
    cursor = await _cursor_of(store, execution, 4)
    await watcher.wait_for(lambda line: line == f"# connected (resumed from {cursor})")
    await write(store, execution, 2)
    await _complete(store, execution)
    # and, once the execution completed, exits 0 having shown every frame exactly once
    assert await watcher.exit_code() == 0
    assert watcher.seqs() == list(range(2, 10))
    assert "acme/web #10 completed: 1/1 tasks in 1.5 s" in watcher.lines
    assert token not in "\n".join(watcher.lines) + watcher.stderr.decode()
    assert all(token not in proc.output() for proc in procs.procs)  # nor the gateways' logs


async def test_once_complete_exits_at_once_for_an_execution_that_already_completed(
    store, procs, env, token_for, watchers
) -> None:
    gateway = procs.gateway()
    execution = await new_execution(store, "acme/web")
    await _complete(store, execution)
    watcher = await Watcher.start(env, token_for("alice", ["acme/web"]), "acme/web",
                                  "--url", gateway.url, "--once-complete")
    watchers.append(watcher)
    assert await watcher.exit_code() == 0


async def test_since_0_shows_the_whole_history_before_exiting(
    store, procs, env, token_for, watchers
) -> None:
    gateway = procs.gateway()
    execution = await new_execution(store, "acme/web")
    await write(store, execution, 3)
    await _complete(store, execution)
    watcher = await Watcher.start(env, token_for("alice", ["acme/web"]), "acme/web",
                                  "--url", gateway.url, "--since", "0", "--once-complete")
    watchers.append(watcher)
    assert await watcher.exit_code() == 0
    assert watcher.lines[0] == "# connected (resumed from 0)"
    assert watcher.lines[1].startswith("acme/web #1 initializing 0%")
    assert watcher.seqs() == [2, 3, 4]
    assert watcher.lines[-1] == "acme/web #5 completed: 1/1 tasks in 1.5 s"


async def test_once_complete_exits_1_when_an_execution_stopped(
    store, procs, env, token_for, watchers
) -> None:
    gateway = procs.gateway()
    done = await new_execution(store, "acme/web")
    halted = await new_execution(store, "acme/api")
    watcher = await Watcher.start(env, token_for("alice", ["acme/*"]), "acme/web", "acme/api",
                                  "--url", gateway.url, "--once-complete")
    watchers.append(watcher)
    await watcher.wait_for(lambda line: line.startswith("# connected"))
    await _complete(store, done)
    await watcher.wait_for(lambda line: line.startswith("acme/web #2 completed"))
    assert watcher.proc.returncode is None  # acme/api is still running
    await _complete(store, halted, status="stopped")
    assert await watcher.exit_code() == 1
    assert any(line.startswith("acme/api #2 stopped") for line in watcher.lines)


async def test_a_rejected_token_stops_the_watcher_with_code_2_without_printing_it(
    procs, env, watchers
) -> None:
    gateway = procs.gateway()
    bad = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJtYWxsb3J5In0.c2lnbmF0dXJl"
    watcher = await Watcher.start(env, bad, "--url", gateway.url)
    watchers.append(watcher)
    assert await watcher.exit_code() == 2
    assert any("token rejected (4401)" in line for line in watcher.lines)
    assert bad not in "\n".join(watcher.lines) + watcher.stderr.decode()


async def test_an_expired_token_stops_the_watcher_with_the_cursor_to_resume_from(
    store, procs, env, token_for, watchers
) -> None:
    # Given a watcher whose token expires after fifteen seconds (no leeway), connected and
    # receiving frames; on a machine so busy that the CLI's start-up or the first frames
    # took the token's whole life, again with a longer-lived one: the expiry under test is
    # the one that comes while the stream is live
    gateway = procs.gateway(DEVTEAM_JWT_LEEWAY_SECONDS="0")
    execution = await new_execution(store, "acme/web")
    seq = 1  # the execution's first update
    for ttl in (15, 45, 120):
        watcher = await Watcher.start(env, token_for("alice", ["acme/*"], ttl=ttl), "acme/web",
                                      "--url", gateway.url)
        watchers.append(watcher)
        line = await watcher.wait_for(lambda line: line.startswith(("# connected", "# stopped")),
                                      timeout=ttl + 60)
        if line.startswith("# stopped"):
            continue
        await write(store, execution, 2)
        seq += 2
        shown = f"acme/web #{seq} "
        line = await watcher.wait_for(lambda line, shown=shown: line.startswith((shown, "# stopped")),
                                      timeout=ttl + 60)
        if line.startswith(shown):
            break
    else:
        pytest.fail("the token expired before the watcher was live, three times")
    # When the token expires, the server ends the stream; the watcher stops (code 2) and
    # says where to resume
    assert await watcher.exit_code(timeout=ttl + 60) == 2
    cursor = await _cursor_of(store, execution, seq)
    assert watcher.lines[-1] == (f"# stopped: token rejected (4401): token expired; "
                                 f"resume with a fresh token and --since {cursor}")


def test_watch_without_a_token_says_how_to_give_one() -> None:
    clean = {k: v for k, v in os.environ.items() if k != "DEVTEAM_TOKEN"}
    result = subprocess.run([str(DEVTEAM), "watch", "--plain"], env=clean, cwd=ROOT,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert "DEVTEAM_TOKEN" in result.stderr


def test_the_attempts_start_again_after_a_connection_succeeded() -> None:
    backoff = Backoff()
    first = [backoff.next_delay() for _ in range(8)]
    assert first[-1] >= 15.0  # the 8th retry waits at least half the cap
    backoff.reset()
    assert backoff.next_delay() <= 0.5  # back to the first window
