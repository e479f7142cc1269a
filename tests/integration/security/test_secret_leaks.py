"""Secrets planted everywhere a real run touches, then searched for everywhere it leaves
a trace.

Planted: a GitHub token in a repository file that the project's test command prints; an
OpenAI key, the model API key and an environment secret in the scripted model's reply
(Aider prints it); the model API key in ``DEVTEAM_MODEL_API_KEY``; a secret-named
environment variable in every process; and a git token in the server-side credentials
file, which the loopback HTTP git server (Basic auth) demands for every clone, fetch and
push. After the run: every row of every table, every log line of every process, every
frame (the notifications table and a live WebSocket), every API answer about the run and
every prompt the model received is searched for each value, URL-quoted and base64 (at
each alignment). None may be found; and the run must really have printed the file, relayed
the reply and pushed with the token, or the search would prove nothing.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import string
import threading
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import text
from tests.e2e.checks import remote_task_list
from tests.e2e.conftest import start, wait_status
from tests.integration.security.helpers import (
    dump_tables,
    find_secrets,
    model_script,
    project_files,
)
from tests.support.git_http import GitHttpServer, repository_access
from tests.support.streams import ws_url
from websockets.sync.client import connect

from devtools.demo.sample import create_sample
from devtools.scripted_model import ScriptedModelServer, parse_script

pytestmark = [pytest.mark.docker, pytest.mark.slow]

PROJECT = "acme/calc"
ALNUM = string.ascii_letters + string.digits


def random(n: int) -> str:
    return "".join(secrets.choice(ALNUM) for _ in range(n))


@pytest.fixture
def planted() -> dict[str, str]:
    return {
        "repository file (GitHub token)": "ghp_" + random(36),
        "model reply (OpenAI key)": "sk-proj-" + random(48),
        "DEVTEAM_MODEL_API_KEY": "mk-" + random(40),
        "DEVTEAM_EXTRA_TOKEN (environment)": random(40),
        "git credentials token": "gct" + random(37),
    }


def collect_frames(url: str, done: threading.Event, out: list[str]) -> None:
    """Every frame the live stream sends until ``done`` (raw text, as received)."""
    with connect(url, open_timeout=10, max_size=2**24) as ws:
        while not done.is_set():
            try:
                out.append(ws.recv(timeout=0.5))
            except TimeoutError:
                continue


async def _until_received(store, execution, live: list[str], timeout: float = 60) -> None:
    """Until the live stream has delivered the execution's last frame (its ``last_seq``)."""
    async with store.transaction() as session:
        last = (await session.execute(text("SELECT last_seq FROM executions WHERE id = :e"),
                                      {"e": execution})).scalar_one()
    for _ in range(int(timeout / 0.05)):
        if any(json.loads(raw).get("seq") == last for raw in list(live)):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the live stream never delivered frame {last}")


async def test_given_secrets_planted_everywhere_when_a_run_completes_then_none_is_found_anywhere(
    store, tmp_path, attack_env, procs, token_for, planted
):
    repo_token = planted["repository file (GitHub token)"]
    openai_key = planted["model reply (OpenAI key)"]
    model_key = planted["DEVTEAM_MODEL_API_KEY"]
    env_token = planted["DEVTEAM_EXTRA_TOKEN (environment)"]
    git_token = planted["git credentials token"]
    devteam_toml = (
        '[commands]\ntest = "cat secrets.txt && python3 -m pytest -q -p no:cacheprovider"\n'
        '[criteria]\n"test.pass" = "pass"\n'
    )
    reply = (f"Implementing task 1.1. The key is {openai_key}; mine is {model_key}; "
             f"and the deploy token is {env_token}.")
    script = model_script(reply)
    sample = create_sample(
        tmp_path / "sample",
        files=project_files(**{".devteam.toml": devteam_toml,
                               "secrets.txt": f"GITHUB_TOKEN={repo_token}\n"}),
        script=script,
    )
    credentials = tmp_path / "git-credentials.toml"
    with (
        GitHttpServer(sample.remote.parent, username="x-access-token", token=git_token) as git,
        ScriptedModelServer(parse_script(script)) as model,
    ):
        credentials.write_text(
            f'[customers."acme"]\ntoken = "{git_token}"\nhosts = ["127.0.0.1:{git.port}"]\n')
        attack_env(model.url, DEVTEAM_MODEL_API_KEY=model_key, DEVTEAM_EXTRA_TOKEN=env_token,
                   DEVTEAM_WORKSPACE_GIT_CREDENTIALS=str(credentials),
                   **repository_access({"acme": [git.base]}))
        gateway = procs.gateway()
        procs.relay()
        procs.worker(threads=4)
        token = token_for("owner", ["acme/*"])
        live: list[str] = []
        done = threading.Event()
        listener = threading.Thread(
            target=collect_frames, args=(ws_url(gateway.url, token, PROJECT), done, live))
        listener.start()
        try:
            url = git.url(sample.remote.name)
            execution = await start(store, PROJECT, url)
            row = await wait_status(store, execution, {"completed", "error", "paused", "stopped"},
                                    timeout=600)
            async with httpx.AsyncClient(base_url=gateway.url, timeout=120,
                                         headers={"Authorization": f"Bearer {token}"}) as client:
                answers = [
                    await client.get(f"/api/devteam/automation/status/{PROJECT}"),
                    await client.get(f"/events/{row['event_id']}"),
                    await client.get("/api/devteam/executions/history/owner"),
                    await client.get(f"/api/devteam/repository/tasks/{PROJECT}"),
                    await client.post("/api/devteam/repository/validate",
                                      json={"repositoryUrl": url}),
                ]
            await _until_received(store, execution, live)  # the last frame reached the socket
        finally:
            done.set()
            await asyncio.to_thread(listener.join, 10)
        prompts = [r.prompt for r in model.requests]
        pushes = [r for r in git.requests if r[0] == "POST" and r[1].endswith("git-receive-pack")]
        refused = [r for r in git.requests if r[2] == 401]

    # the run did what the search relies on
    assert row["status"] == "completed", row
    assert remote_task_list(sample).progress() == (1, 1)
    assert pushes and all(status == 200 for _, _, status in pushes), git.requests
    assert refused  # the server asked for the token, so the pushes above carried it
    assert all(a.status_code == 200 for a in answers), [a.text[:200] for a in answers]
    async with store.transaction() as session:
        logged = "\n".join(
            line
            for (payload,) in (await session.execute(text(
                "SELECT payload FROM notifications WHERE execution_id = :e "
                "AND type = 'execution-log'"), {"e": execution})).all()
            for line in payload["lines"])
    assert "GITHUB_TOKEN=[REDACTED:github-token]" in logged  # the file was printed
    assert "[REDACTED:openai-key]" in logged  # the model's reply was relayed
    assert logged.count("[REDACTED:secret]") >= 2  # so were the model key and the env token
    assert prompts  # Aider asked the model, with its key, and printed the answer

    # and no planted value is anywhere
    haystacks = {f"table {name}": dump for name, dump in (await dump_tables(store)).items()}
    haystacks.update({f"log {proc.log.name}": proc.output() for proc in procs.procs})
    haystacks["live frames"] = "\n".join(live)
    haystacks.update({f"answer {a.request.url.path}": a.text for a in answers})
    haystacks.update({f"answer headers {a.request.url.path}": json.dumps(dict(a.headers))
                      for a in answers})
    model_may_see = {"git credentials token": git_token,
                     "DEVTEAM_EXTRA_TOKEN (environment)": env_token,
                     "repository file (GitHub token)": repo_token}
    assert len(live) > 10
    # the search finds a value in each form it looks for (so an empty result means absent)
    embedded = base64.b64encode(b"user:" + git_token.encode() + b"\n").decode()
    assert len(find_secrets({"plain": f"[{git_token}]", "quoted": quote(f"={model_key}"),
                             "base64": embedded}, planted)) == 3
    assert find_secrets(haystacks, planted) == []
    assert find_secrets({"model prompts": "\n".join(prompts)}, model_may_see) == []
    # the credentials file itself was never copied into the workspace or a working copy
    for path in Path(tmp_path / "workspaces").rglob("*"):
        if path.is_file() and path.stat().st_size < 5_000_000:
            assert git_token not in path.read_text(errors="replace"), path
