"""The scripted model: its script format, and its OpenAI-compatible API over real HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devtools.scripted_model import (
    ScriptedModelServer,
    ScriptError,
    parse_script,
    render_reply,
)
from runner.errors import Classification

SCRIPT = """
[tasks."1.1"]
edit_format = "whole"
reply = "Adding the greeting."
[[tasks."1.1".edits]]
path = "src/greet.py"
content = "def greet(name):\\n    return f'Hello, {name}!'\\n"

[tasks."2.1"]
edit_format = "diff"
fail_attempts = 1
[[tasks."2.1".edits]]
path = "README.md"
search = "# Demo\\n"
replace = "# Demo project\\n"
[[tasks."2.1".edits]]
path = "docs/new.md"
search = ""
replace = "New page"
[[tasks."2.1".failing]]
path = "README.md"
search = "# Demo\\n"
replace = "# Broken\\n"

[tasks."slow"]
delay_seconds = 1.5

[tasks."denied"]
http_status = 401
reply = "Incorrect API key provided"

[tasks."counted"]
prompt_tokens = 321
completion_tokens = 45
"""

WHOLE_REPLY = (
    "Adding the greeting.\n\nsrc/greet.py\n```\ndef greet(name):\n"
    "    return f'Hello, {name}!'\n```\n"
)
DIFF_REPLY = (
    "Here is the change (attempt 2).\n\n"
    "README.md\n```\n<<<<<<< SEARCH\n# Demo\n=======\n# Demo project\n>>>>>>> REPLACE\n```\n\n"
    "docs/new.md\n```\n<<<<<<< SEARCH\n=======\nNew page\n>>>>>>> REPLACE\n```\n"
)


def _body(task: str | None, attempt: int = 1, *, stream: bool = False, system: str = "") -> dict:
    prompt = f"Task-Id: {task}\nAttempt: {attempt}\n\nDo it." if task else "Hello"
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": prompt})
    return {"model": "scripted", "messages": messages, "stream": stream}


@pytest.fixture(scope="module")
def server() -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer(parse_script(SCRIPT)) as running:
        yield running


def _complete(server: ScriptedModelServer, body: dict, path: str = "/chat/completions") -> str:
    response = httpx.post(server.url + path, json=body, timeout=10)
    response.raise_for_status()
    return response.json()["choices"][0]["message"]["content"]


def _stream(server: ScriptedModelServer, body: dict) -> tuple[str, list[str]]:
    events: list[str] = []
    with httpx.stream("POST", server.url + "/chat/completions", json=body, timeout=10) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    finishes = [c["choices"][0].get("finish_reason") for c in chunks if c["choices"]]
    assert finishes[-1] == "stop"
    return text, events


# --------------------------------------------------------------------------- script format
def test_given_a_whole_task_when_rendered_then_it_is_aiders_file_listing() -> None:
    task = parse_script(SCRIPT).tasks["1.1"]
    assert render_reply(task, 1) == WHOLE_REPLY


def test_given_a_diff_task_past_its_failing_attempts_then_search_replace_blocks() -> None:
    task = parse_script(SCRIPT).tasks["2.1"]
    assert render_reply(task, 2) == DIFF_REPLY
    assert "# Broken" in render_reply(task, 1)


def test_given_the_attempt_mark_when_rendered_then_each_attempt_writes_its_number() -> None:
    task = parse_script(
        '[tasks."a"]\nfail_attempts = 9\n[[tasks."a".failing]]\npath = "x.py"\n'
        'content = "x = 0  # try @@attempt@@"\n'
    ).tasks["a"]
    assert "x = 0  # try 2\n" in render_reply(task, 2)
    assert "x = 0  # try 3\n" in render_reply(task, 3)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[tasks.a\n", "not valid TOML"),
        ('[tasks."a"]\ncolour = "red"\n', "colour"),
        ('[tasks."a"]\nedit_format = "udiff"\n', "edit_format"),
        ('[[tasks."a".edits]]\npath = "x"\n', "task 'a': edits[0] ('x'): the whole format needs"),
        (
            '[tasks."a"]\nedit_format = "diff"\n[[tasks."a".failing]]\npath = "x"\ncontent = "y"\n',
            "task 'a': failing[0] ('x'): the diff format needs `replace`",
        ),
        ('[tasks."a"]\nfail_attempts = -1\n', "fail_attempts must be >= 0"),
        ('[tasks."a"]\nhttp_status = 302\n', "http_status must be 200 or an error status"),
        ('[tasks."a"]\nprompt_tokens = -1\n', "prompt_tokens must be >= 0"),
        ('[tasks."a"]\ncompletion_tokens = -5\n', "completion_tokens must be >= 0"),
    ],
)
def test_given_a_broken_script_when_parsed_then_a_config_error_names_the_problem(
    text: str, fragment: str
) -> None:
    with pytest.raises(ScriptError) as caught:
        parse_script(text, source="demo.toml")
    assert caught.value.classification is Classification.CONFIG
    assert caught.value.message.startswith("demo.toml: ")
    assert fragment in caught.value.message


# --------------------------------------------------------------------------- HTTP API
@pytest.mark.sockets
def test_given_a_known_task_when_asked_without_streaming_then_the_scripted_edits_come_back(
    server: ScriptedModelServer,
) -> None:
    response = httpx.post(server.url + "/chat/completions", json=_body("1.1"), timeout=10)
    payload = response.json()
    assert response.status_code == 200
    assert payload["object"] == "chat.completion"
    assert payload["choices"][0]["message"] == {"role": "assistant", "content": WHOLE_REPLY}
    assert payload["choices"][0]["finish_reason"] == "stop"
    assert payload["usage"]["total_tokens"] > 0


@pytest.mark.sockets
def test_given_a_known_task_when_streamed_then_sse_chunks_add_up_to_the_reply(
    server: ScriptedModelServer,
) -> None:
    body = _body("2.1", 2, stream=True) | {"stream_options": {"include_usage": True}}
    text, events = _stream(server, body)
    assert text == DIFF_REPLY
    assert len(events) > 4
    assert json.loads(events[-2])["usage"]["total_tokens"] > 0


@pytest.mark.sockets
def test_given_scripted_token_counts_then_usage_reports_them_as_openai_servers_do(
    server: ScriptedModelServer,
) -> None:
    expected = {"prompt_tokens": 321, "completion_tokens": 45, "total_tokens": 366}
    whole = httpx.post(server.url + "/chat/completions", json=_body("counted"), timeout=10)
    assert whole.json()["usage"] == expected
    # streamed: a last chunk with empty choices carries usage, only when asked for
    asked = _body("counted", stream=True) | {"stream_options": {"include_usage": True}}
    _, events = _stream(server, asked)
    last = json.loads(events[-2])
    assert (last["choices"], last["usage"]) == ([], expected)
    _, events = _stream(server, _body("counted", stream=True))
    assert not any("usage" in json.loads(e) for e in events if e != "[DONE]")


@pytest.mark.sockets
def test_given_fail_attempts_when_attempts_one_and_two_then_failing_then_good_edits(
    server: ScriptedModelServer,
) -> None:
    assert "# Broken" in _complete(server, _body("2.1", 1))
    assert _complete(server, _body("2.1", 2)) == DIFF_REPLY


@pytest.mark.sockets
def test_given_an_unknown_task_or_no_task_when_asked_then_the_reply_has_no_edits(
    server: ScriptedModelServer,
) -> None:
    for body in (_body("9.9.9"), _body(None)):
        text = _complete(server, body)
        assert "changed nothing" in text
        assert "```" not in text


@pytest.mark.sockets
def test_given_aider_asked_for_quadruple_fences_when_answered_then_the_reply_uses_them(
    server: ScriptedModelServer,
) -> None:
    system = "Use this *file listing* format:\n\npath/to/file.js\n````\ncontent\n````\n"
    text = _complete(server, _body("1.1", system=system))
    assert "src/greet.py\n````\ndef greet" in text
    assert text.rstrip().endswith("````")


@pytest.mark.sockets
def test_given_aider_wants_another_edit_format_when_asked_then_it_is_told_and_gets_no_edits(
    server: ScriptedModelServer,
) -> None:
    system = "Describe each change with a *SEARCH/REPLACE block*."
    text = _complete(server, _body("1.1", system=system))
    assert "scripted in the 'whole' edit format but Aider asked for 'diff'" in text
    assert "```" not in text


@pytest.mark.sockets
def test_given_requests_when_listed_then_task_attempt_and_prompt_are_recorded(
    server: ScriptedModelServer,
) -> None:
    server.model.clear()
    _complete(server, _body("2.1", 2), path="/v1/chat/completions".removeprefix("/v1"))
    _stream(server, _body("1.1", 1, stream=True))

    recorded = httpx.get(f"http://{server.host}:{server.port}/_requests", timeout=5).json()

    assert [(r["taskId"], r["attempt"], r["stream"]) for r in recorded] == [
        ("2.1", 2, False),
        ("1.1", 1, True),
    ]
    assert recorded[0]["prompt"] == "Task-Id: 2.1\nAttempt: 2\n\nDo it."


@pytest.mark.sockets
def test_given_a_task_scripted_to_fail_when_asked_then_an_openai_error_comes_back(
    server: ScriptedModelServer,
) -> None:
    response = httpx.post(server.url + "/chat/completions", json=_body("denied"), timeout=10)
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "Incorrect API key provided"


@pytest.mark.sockets
def test_given_a_body_that_is_not_json_when_posted_then_it_is_a_400_error(
    server: ScriptedModelServer,
) -> None:
    response = httpx.post(server.url + "/chat/completions", content=b"{nope", timeout=10)
    assert response.status_code == 400
    assert "invalid JSON body" in response.json()["error"]["message"]


@pytest.mark.sockets
def test_given_the_models_endpoint_when_listed_then_the_scripted_model_is_there(
    server: ScriptedModelServer,
) -> None:
    payload = httpx.get(server.url + "/models", timeout=5).json()
    assert payload["data"][0]["id"] == "scripted"


@pytest.mark.sockets
def test_given_a_slow_task_when_another_request_comes_then_it_is_answered_meanwhile(
    server: ScriptedModelServer,
) -> None:
    slow_done: list[float] = []

    def slow() -> None:
        _complete(server, _body("slow"))
        slow_done.append(time.monotonic())

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.2)
    _complete(server, _body("1.1"))
    fast_done = time.monotonic()
    thread.join(10)

    assert slow_done
    assert fast_done < slow_done[0] - 0.5


@pytest.mark.sockets
def test_given_a_script_file_when_it_changes_then_the_next_reply_follows_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "script.toml"
    path.write_text('[tasks."t"]\nreply = "first version"\n')
    with ScriptedModelServer(path) as running:
        assert _complete(running, _body("t")).startswith("first version")
        path.write_text('[tasks."t"]\nreply = "second version"\n')
        os.utime(path, (time.time() + 5, time.time() + 5))
        assert _complete(running, _body("t")).startswith("second version")


# --------------------------------------------------------------------------- command line
_CLI = "import typer; from devtools.scripted_model.cli import command; typer.run(command)"


@pytest.mark.sockets
def test_given_the_command_when_started_on_port_zero_then_it_serves_until_terminated(
    tmp_path: Path,
) -> None:
    script = tmp_path / "script.toml"
    script.write_text(SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, "-c", _CLI, "--script", str(script), "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        banner = proc.stderr.readline()
        assert "5 scripted task(s)" in banner
        url = banner.rsplit(" ", 1)[-1].strip()
        for _ in range(100):
            try:
                response = httpx.post(url + "/chat/completions", json=_body("1.1"), timeout=5)
                break
            except httpx.ConnectError:
                time.sleep(0.05)
        assert response.json()["choices"][0]["message"]["content"] == WHOLE_REPLY
        assert proc.stderr.readline().strip() == "scripted model: task 1.1 attempt 1"
    finally:
        proc.terminate()
        proc.wait(10)


def test_given_a_broken_script_when_the_command_starts_then_it_exits_2_with_the_reason(
    tmp_path: Path,
) -> None:
    script = tmp_path / "bad.toml"
    script.write_text('[tasks."a"]\nbogus = 1\n')
    result = subprocess.run(
        [sys.executable, "-c", _CLI, "--script", str(script), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "bogus" in result.stderr
    assert str(script) in result.stderr
