"""Real Aider against the scripted model, on real git working copies."""

from __future__ import annotations

import re
import shutil
import socket
import stat
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from tests.support.scripted import changed_paths, make_working_copy, model_settings

from devtools.scripted_model import ScriptedModelServer, parse_script
from runner.aider import AiderTool, failure_kind
from runner.errors import InfrastructureError
from runner.ports import ImplementRequest, OperationArtifact
from runner.redact import Redactor, default_redactor
from runner.settings import PROJECT_ROOT, reset_settings_cache
from runner.toolprocess import ToolProcess

pytestmark = pytest.mark.slow

GH_TOKEN = "ghp_" + "Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0FeDcBa"
ENV_SECRET = "plantedEnvSecret42Value"
MODEL_KEY = "sk-model-secret-key-0042"
ESCAPE = f"/tmp/devteam-escape-{uuid.uuid4().hex}.txt"

BASE = {
    "README.md": "# Demo\n",
    "src/calc.py": "def add(a, b):\n    return a - b\n",
    ".gitignore": "*.pyc\n",
}

SCRIPT = f'''
[tasks."W.1"]
edit_format = "whole"
reply = "Creating the greeting and updating the readme."
[[tasks."W.1".edits]]
path = "src/app/greet.py"
content = "def greet(name: str) -> str:\\n    return f'Hello, {{name}}!'\\n"
[[tasks."W.1".edits]]
path = "README.md"
content = "# Demo\\n\\nNow with greetings.\\n"

[tasks."D.1"]
edit_format = "diff"
[[tasks."D.1".edits]]
path = "src/calc.py"
search = "    return a - b\\n"
replace = "    return a + b\\n"
[[tasks."D.1".edits]]
path = "docs/calc.md"
search = ""
replace = "# calc\\n"

[tasks."R.1"]
fail_attempts = 1
[[tasks."R.1".failing]]
path = "src/calc.py"
content = "def add(a, b):\\n    return 0\\n"
[[tasks."R.1".edits]]
path = "src/calc.py"
content = "def add(a, b):\\n    return a + b\\n"

[tasks."SLOW.1"]
delay_seconds = 120
[tasks."SLOW.2"]
delay_seconds = 120

[tasks."AUTH.1"]
http_status = 401
reply = "Incorrect API key provided"

[tasks."SAYS.1"]
reply = """I could not do it.
litellm.AuthenticationError: AuthenticationError: OpenAIException - Incorrect API key provided
The API provider is not able to authenticate you. Check your API key."""

[tasks."SAYS.2"]
reply = """I could not do it (litellm.RateLimitError).
litellm.RateLimitError: RateLimitError: OpenAIException - Rate limit reached
The API provider has rate limited you. Try again later or check your quotas."""

[tasks."S.1"]
reply = "I used {GH_TOKEN} and {ENV_SECRET} and {MODEL_KEY} to do it."
[[tasks."S.1".edits]]
path = "src/settings.py"
content = "GITHUB_TOKEN = '{GH_TOKEN}'\\nDEPLOY = '{ENV_SECRET}'\\n"

[tasks."ESC.1"]
[[tasks."ESC.1".edits]]
path = "../escape.txt"
content = "outside\\n"
[[tasks."ESC.1".edits]]
path = "{ESCAPE}"
content = "outside\\n"
[[tasks."ESC.1".edits]]
path = ".git/hooks/post-commit"
content = "#!/bin/sh\\necho pwned\\n"
'''


@pytest.fixture(scope="module")
def server() -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer(parse_script(SCRIPT, source="test_aider")) as running:
        yield running


@pytest.fixture
def wc(tmp_path: Path) -> Path:
    return make_working_copy(tmp_path / "wc", BASE)


def _tool(server: ScriptedModelServer, **kwargs: object) -> AiderTool:
    settings = model_settings(server.url, DEVTEAM_MODEL_API_KEY=MODEL_KEY)
    return AiderTool(settings, kwargs.pop("redactor", Redactor()), **kwargs)  # type: ignore[arg-type]


def _request(wc: Path, task_id: str, files: list[str], **kw: object) -> ImplementRequest:
    return ImplementRequest(workdir=wc, task_id=task_id, title=f"Task {task_id}", files=files, **kw)  # type: ignore[arg-type]


def _requests_for(server: ScriptedModelServer, task_id: str) -> list:
    return [r for r in server.requests if r.task_id == task_id]


def _text(artifact: OperationArtifact) -> str:
    return f"{artifact.outputs.stdout}\n{artifact.outputs.diff}\n{artifact.error}"


class _Recorder:
    """A TCP listener counting connections (Aider's proxy: nothing should arrive)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def test_given_whole_format_when_implementing_then_files_are_created_and_changed_only_in_the_repo(
    server: ScriptedModelServer, wc: Path
) -> None:
    lines: list[str] = []
    recorder = _Recorder()
    try:
        tool = _tool(server, edit_format="whole", deny_proxy=f"http://127.0.0.1:{recorder.port}")
        artifact = tool.implement(
            _request(wc, "W.1", ["src/app/greet.py", "README.md"]), on_line=lines.append
        )
    finally:
        recorder.close()

    assert artifact.success, artifact.error
    assert (wc / "src/app/greet.py").read_text().startswith("def greet(name: str) -> str:")
    assert (wc / "README.md").read_text() == "# Demo\n\nNow with greetings.\n"
    assert sorted(artifact.outputs.files_modified) == ["README.md", "src/app/greet.py"]
    assert artifact.outputs.lines_changed == 4
    assert "+++ b/src/app/greet.py" in artifact.outputs.diff
    assert "+Now with greetings." in artifact.outputs.diff
    assert changed_paths(wc) == {"README.md", "src/app/greet.py"}
    assert any("Applied edit to README.md" in line for line in lines)
    assert "Applied edit to src/app/greet.py" in artifact.outputs.stdout
    assert (artifact.operation, artifact.tool, artifact.task_id) == ("implement", "aider", "W.1")
    assert artifact.duration > 0
    sent = _requests_for(server, "W.1")
    assert [(r.attempt, r.edit_format) for r in sent] == [(1, "whole")]
    assert "- src/app/greet.py\n- README.md" in sent[0].prompt
    assert recorder.connections == 0


def test_given_diff_format_when_implementing_then_search_replace_and_new_file_are_applied(
    server: ScriptedModelServer, wc: Path
) -> None:
    artifact = _tool(server, edit_format="diff").implement(
        _request(wc, "D.1", ["src/calc.py", "docs/calc.md"])
    )

    assert artifact.success, artifact.error
    assert (wc / "src/calc.py").read_text() == "def add(a, b):\n    return a + b\n"
    assert (wc / "docs/calc.md").read_text() == "# calc\n"
    assert sorted(artifact.outputs.files_modified) == ["docs/calc.md", "src/calc.py"]
    assert artifact.outputs.lines_changed == 3
    assert _requests_for(server, "D.1")[0].edit_format == "diff"


def test_given_fail_attempts_when_retrying_with_feedback_then_attempt_two_gets_the_good_edit(
    server: ScriptedModelServer, tmp_path: Path
) -> None:
    tool = _tool(server, edit_format="whole")
    first_wc = make_working_copy(tmp_path / "first", BASE)
    first = tool.implement(_request(first_wc, "R.1", ["src/calc.py"]))
    feedback = "FAILED tests/test_calc.py::test_add - assert 0 == 3"
    second_wc = make_working_copy(tmp_path / "second", BASE)
    second = tool.implement(
        _request(second_wc, "R.1", ["src/calc.py"], attempt=2, feedback=feedback)
    )

    assert first.success
    assert second.success
    assert (first_wc / "src/calc.py").read_text() == "def add(a, b):\n    return 0\n"
    assert (second_wc / "src/calc.py").read_text() == "def add(a, b):\n    return a + b\n"
    sent = _requests_for(server, "R.1")
    assert [r.attempt for r in sent] == [1, 2]
    assert "Previous attempt failed" not in sent[0].prompt
    assert "## Previous attempt failed verification" in sent[1].prompt
    assert feedback in sent[1].prompt


def test_given_an_unknown_task_when_implementing_then_no_change_is_a_tool_failure(
    server: ScriptedModelServer, wc: Path
) -> None:
    artifact = _tool(server, edit_format="whole").implement(_request(wc, "UNKNOWN.9", []))

    assert not artifact.success
    assert artifact.error is not None
    assert artifact.error["classification"] == "tool"
    assert "no change" in artifact.error["message"]
    assert artifact.outputs.files_modified == []
    assert artifact.outputs.lines_changed == 0
    assert changed_paths(wc) == set()


def test_given_the_endpoint_rejects_the_key_when_implementing_then_the_failure_is_config(
    server: ScriptedModelServer, wc: Path
) -> None:
    artifact = _tool(server, edit_format="whole").implement(_request(wc, "AUTH.1", ["README.md"]))

    assert not artifact.success
    assert artifact.error is not None
    assert artifact.error["classification"] == "config"
    assert "rejected" in artifact.error["message"]
    assert "AuthenticationError" in artifact.outputs.stdout
    assert len(_requests_for(server, "AUTH.1")) == 1


def test_given_aider_gave_up_on_an_unreachable_endpoint_then_the_failure_is_transient() -> None:
    # The errors the guard saw Aider's model calls raise after its own retries (it exits 0)
    assert failure_kind(["InternalServerError"] * 8)[0] == "transient"
    assert failure_kind(["RateLimitError"])[0] == "transient"
    assert failure_kind(["RateLimitError", "AuthenticationError"])[0] == "config"
    assert failure_kind(["ContextWindowExceededError"])[0] == "tool"
    assert failure_kind([])[0] == "tool"


@pytest.mark.parametrize("task_id", ["SAYS.1", "SAYS.2"])
def test_given_a_reply_that_prints_a_model_error_then_the_failure_is_the_rounds_not_the_endpoints(
    server: ScriptedModelServer, wc: Path, task_id: str
) -> None:
    # Given a model that answers with no edit and Aider's error lines in its words: read
    # from the output, one ended the whole execution as "config", the other retried it
    artifact = _tool(server, edit_format="whole").implement(_request(wc, task_id, ["README.md"]))

    assert not artifact.success
    assert artifact.error is not None
    assert (artifact.error["classification"], artifact.error["message"]) == (
        "tool", "aider made no change to the working copy")
    assert "litellm." in artifact.outputs.stdout
    assert len(artifact.outputs.usage_lines) == 1


def test_given_a_model_that_never_answers_when_the_timeout_passes_then_aider_is_killed(
    server: ScriptedModelServer, wc: Path
) -> None:
    started = time.monotonic()
    artifact = _tool(server, edit_format="whole", timeout_seconds=20).implement(
        _request(wc, "SLOW.1", [])
    )
    elapsed = time.monotonic() - started

    assert not artifact.success
    assert artifact.error is not None
    assert artifact.error["classification"] == "tool"
    assert "timed out after 20 s" in artifact.error["message"]
    assert 20 <= elapsed < 25
    assert _requests_for(server, "SLOW.1"), "aider should have been waiting on the model"
    assert not _aider_processes(wc)


def test_given_a_running_aider_when_cancelled_then_it_stops_promptly(
    server: ScriptedModelServer, wc: Path
) -> None:
    cancel = threading.Event()
    result: list[OperationArtifact] = []
    thread = threading.Thread(
        target=lambda: result.append(
            _tool(server, edit_format="whole").implement(_request(wc, "SLOW.2", []), cancel=cancel)
        )
    )
    thread.start()
    deadline = time.monotonic() + 90
    while not _requests_for(server, "SLOW.2") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _requests_for(server, "SLOW.2"), "aider never reached the model"

    cancelled_at = time.monotonic()
    cancel.set()
    thread.join(30)
    latency = time.monotonic() - cancelled_at

    assert result
    assert not result[0].success
    assert result[0].error == {"classification": "cancelled", "message": "cancelled"}
    assert latency < 3
    assert not _aider_processes(wc)


def test_given_secrets_in_the_reply_and_environment_when_implementing_then_the_artifact_has_none(
    server: ScriptedModelServer, wc: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUSTOMER_DEPLOY_TOKEN", ENV_SECRET)
    reset_settings_cache()
    lines: list[str] = []
    try:
        tool = _tool(server, edit_format="whole", redactor=default_redactor())
        artifact = tool.implement(_request(wc, "S.1", ["src/settings.py"]), on_line=lines.append)
    finally:
        reset_settings_cache()

    assert artifact.success, artifact.error
    assert ENV_SECRET in (wc / "src/settings.py").read_text()
    everything = _text(artifact) + "\n".join(lines)
    for secret in (GH_TOKEN, ENV_SECRET, MODEL_KEY):
        assert secret not in everything
    assert "I used [REDACTED:github-token] and [REDACTED:secret]" in artifact.outputs.stdout
    assert "+GITHUB_TOKEN = '[REDACTED:github-token]'" in artifact.outputs.diff


def test_given_a_model_writing_outside_the_repo_when_implementing_then_every_such_edit_is_refused(
    server: ScriptedModelServer, wc: Path
) -> None:
    artifact = _tool(server, edit_format="whole").implement(_request(wc, "ESC.1", []))

    assert not Path(ESCAPE).exists()
    assert not (wc.parent / "escape.txt").exists()
    assert not (wc / ".git/hooks/post-commit").exists()
    assert not artifact.success
    assert artifact.error is not None
    assert artifact.error["classification"] == "tool"
    assert "Refused edit outside the working copy" in artifact.outputs.stdout


@pytest.mark.parametrize("bad", ["../outside.txt", "/etc/passwd", "link/evil.txt", ".git/config"])
def test_given_task_files_outside_the_repo_when_implementing_then_aider_is_not_run(
    server: ScriptedModelServer, wc: Path, tmp_path: Path, bad: str
) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (wc / "link").symlink_to(outside)
    task_id = f"BAD.{uuid.uuid4().hex[:6]}"

    artifact = _tool(server).implement(_request(wc, task_id, ["README.md", bad]))

    assert not artifact.success
    assert artifact.error is not None
    assert artifact.error["classification"] == "tool"
    assert bad in artifact.error["message"]
    assert artifact.duration < 1
    assert not _requests_for(server, task_id)


def test_given_a_stand_in_aider_when_run_then_it_gets_a_scrubbed_env_and_no_key_in_argv(
    server: ScriptedModelServer, wc: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUSTOMER_DEPLOY_TOKEN", ENV_SECRET)
    dump = tmp_path / "dump"
    fake = tmp_path / "fake-aider"
    fake.write_text(f'#!/bin/sh\nenv > {dump}.env\nprintf "%s\\n" "$PWD" "$@" > {dump}.args\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    settings = model_settings(
        server.url, DEVTEAM_MODEL_API_KEY=MODEL_KEY, DEVTEAM_AIDER_BIN=str(fake)
    )

    artifact = AiderTool(settings, Redactor(), edit_format="diff").implement(
        _request(wc, "ENV.1", ["README.md", "src/new.py"])
    )

    env = dict(line.split("=", 1) for line in Path(f"{dump}.env").read_text().splitlines())
    cwd, *argv = Path(f"{dump}.args").read_text().splitlines()
    assert not artifact.success
    assert env["OPENAI_API_KEY"] == MODEL_KEY
    assert ENV_SECRET not in env.values()
    assert set(env) - {"PWD", "SHLVL", "_"} == {
        *("PATH", "HOME", "LANG", "LC_ALL", "TERM", "NO_COLOR", "PYTHONUNBUFFERED"),
        *("PYTHONPATH", "DEVTEAM_AIDER_ROOT", "LITELLM_LOCAL_MODEL_COST_MAP", "HF_HUB_OFFLINE"),
        *("TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY", "OPENAI_API_KEY"),
        *("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "MALLOC_ARENA_MAX"),
        *("DEVTEAM_AIDER_REPORT_MARK", "COLUMNS"),
    }
    assert env["NO_PROXY"] == "127.0.0.1"
    assert not Path(env["HOME"]).is_relative_to(wc)
    assert env["HOME"] != str(Path.home())
    assert not Path(cwd).is_relative_to(wc)
    assert MODEL_KEY not in " ".join(argv)
    for flag in ("--yes-always", "--no-git", "--no-auto-commits", "--no-gitignore"):
        assert flag in argv
    assert argv[argv.index("--edit-format") + 1] == "diff"
    assert argv[argv.index("--openai-api-base") + 1] == server.url
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--file"] == [str(wc / "README.md")]
    message = Path(argv[argv.index("--message-file") + 1])
    assert not message.is_relative_to(wc)
    assert not message.exists(), "the temporary directory is removed afterwards"


def test_given_an_aider_without_the_expected_internals_then_the_guard_stops_it_before_it_acts(
    server: ScriptedModelServer, wc: Path, tmp_path: Path
) -> None:
    # A Python without the aider package stands in for an Aider whose internals changed.
    marker = tmp_path / "ran"
    fake = tmp_path / "other-aider"
    python = PROJECT_ROOT / ".venv/bin/python"
    fake.write_text(f"#!/bin/sh\nexec {python} -c \"open('{marker}', 'w').write('x')\"\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    settings = model_settings(server.url, DEVTEAM_AIDER_BIN=str(fake))

    with pytest.raises(InfrastructureError) as caught:
        AiderTool(settings, Redactor()).implement(_request(wc, "W.1", ["README.md"]))

    assert "guard could not be installed" in caught.value.message
    assert not marker.exists()


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace to watch connections")
def test_given_a_loopback_model_when_aider_runs_then_it_connects_nowhere_else(
    server: ScriptedModelServer, wc: Path, tmp_path: Path
) -> None:
    trace = tmp_path / "connect.trace"
    wrapper = tmp_path / "traced-aider"
    real = PROJECT_ROOT / ".venv-aider/bin/aider"
    wrapper.write_text(f'#!/bin/sh\nexec strace -f -qq -e trace=connect -o {trace} {real} "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    settings = model_settings(server.url, DEVTEAM_AIDER_BIN=str(wrapper))

    artifact = AiderTool(settings, Redactor(), edit_format="whole").implement(
        _request(wc, "W.1", ["README.md"])
    )

    assert artifact.success, artifact.error
    calls = [c for c in trace.read_text().splitlines() if "connect(" in c]
    inet = [c for c in calls if "AF_INET" in c]
    assert inet, "aider must have connected to the model"
    for call in inet:
        assert re.search(
            rf'sin_port=htons\({server.port}\), sin_addr=inet_addr\("127\.0\.0\.1"\)', call
        ), call


# --------------------------------------------------------------------------- the process
def _sh(script: str, tmp_path: Path, **kwargs: object) -> ToolProcess:
    env = {"PATH": "/usr/bin:/bin"}
    return ToolProcess(["/bin/sh", "-c", script], env, tmp_path, Redactor(), **kwargs)  # type: ignore[arg-type]


def test_given_a_tool_with_background_children_when_cancelled_then_the_whole_group_dies(
    tmp_path: Path,
) -> None:
    pids = tmp_path / "pids"
    proc = _sh(f"sleep 300 & echo $! > {pids}; sleep 300", tmp_path)
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()

    started = time.monotonic()
    proc.wait(60, cancel)

    assert proc.cancelled
    assert time.monotonic() - started < 3
    child = int(pids.read_text())
    assert _dies(child), f"background child {child} outlived the cancelled tool"


def _dies(pid: int, within: float = 5.0) -> bool:
    """Whether ``pid`` is gone (or a zombie) within ``within`` seconds: a SIGKILL sent to
    the group takes effect when the kernel next runs the process, which on a loaded
    machine is not at once."""
    deadline = time.monotonic() + within
    while True:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def test_given_a_chatty_tool_when_it_ends_then_only_the_redacted_tail_is_kept(
    tmp_path: Path,
) -> None:
    seen: list[str] = []
    script = (
        "i=0; while [ $i -lt 500 ]; do echo line-$i; i=$((i+1)); done;"
        f"echo token={GH_TOKEN}; echo '-----BEGIN RSA PRIVATE KEY-----'; echo MIIEsecretbody;"
        "echo '-----END RSA PRIVATE KEY-----'; echo done"
    )
    proc = _sh(script, tmp_path, on_line=seen.append, limit=400)
    proc.wait(30, None)

    out = proc.output()
    assert proc.returncode == 0
    assert out.startswith("[... earlier output omitted ...]\n")
    assert out.endswith("[REDACTED:private-key]\n[REDACTED:private-key]\ndone")
    assert len(out) < 500
    assert "line-499" in out
    assert "line-10\n" not in out
    assert len(seen) == 505
    assert GH_TOKEN not in "\n".join(seen)
    assert "MIIEsecretbody" not in "\n".join(seen)


def test_given_a_sink_that_raises_when_the_tool_prints_then_the_tool_still_finishes(
    tmp_path: Path,
) -> None:
    def broken(line: str) -> None:
        raise RuntimeError("sink is gone")

    proc = _sh(
        "i=0; while [ $i -lt 20000 ]; do echo $i; i=$((i+1)); done", tmp_path, on_line=broken
    )
    proc.wait(30, None)

    assert not proc.timed_out
    assert proc.returncode == 0
    assert proc.output().endswith("19999")


def _aider_processes(wc: Path) -> list[psutil.Process]:
    """Processes still running Aider on ``wc`` (found by the root the guard is given)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("DEVTEAM_AIDER_ROOT") == str(wc.resolve()):
                found.append(proc)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return found
