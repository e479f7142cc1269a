"""Tenant vs tenant through repositories, each attack of the hostile review reproduced
against a real ``devteam serve`` process and real git servers on loopback.

The operator runs one git host for two customers, ``victim`` and ``evil``, with one token
that the host accepts for every repository (an app installed on both organisations: the
review's "host-wide credential"), now bound per customer to its own organisation. Every
server records each request and each ``Authorization`` header, so "refused before any
network request" and "the credential never left" are observed.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pygit2
import pytest
from tests.integration.gateway.conftest import add_project
from tests.integration.security.helpers import dump_tables, row_counts
from tests.support.git_http import GitHttpServer, NoiseServer, closed_port, repository_access

from runner.git.remote import UNREACHABLE

pytestmark = [pytest.mark.slow]

SHARED = "ghp_" + "SharedOperatorToken0123456789abcdefgh"
LEAKED = "ghp_" + "LeakedInAUrl000000000000000000000000"
VICTIM_TASKS = "- [ ] 1.1 Victim's secret roadmap\n- [ ] 1.2 Acquire evil corp\n"
SIG = pygit2.Signature("Owner", "owner@example.com")
VALIDATE = "/api/devteam/repository/validate"
INITIALIZE = "/api/devteam/automation/initialize"


def bare(root: Path, name: str, files: dict[str, str]) -> pygit2.Repository:
    repo = pygit2.init_repository(str(root / name), bare=True, initial_head="main")
    index = pygit2.Index()
    for path, text in files.items():
        index.add(pygit2.IndexEntry(path, repo.create_blob(text.encode()),
                                    pygit2.enums.FileMode.BLOB))
    repo.create_commit("refs/heads/main", SIG, SIG, "initial", index.write_tree(repo), [])
    return repo


def tip(repo: pygit2.Repository) -> str:
    return str(repo.references["refs/heads/main"].target)


@pytest.fixture
def world(tmp_path: Path, store, procs, token_for):
    """The git host, a port that is open but no git server, a closed port, and a gateway
    configured by the operator: victim and evil each on their own organisation, acme
    allowed (on purpose) on every loopback port below, loopback allowed as a
    destination only as 127.0.0.1."""
    root = tmp_path / "git"
    repos = {c: bare(root, f"{c}/app.git", {"tasks_list.md": VICTIM_TASKS if c == "victim"
                                            else "- [ ] 1.1 Evil\n"})
             for c in ("victim", "evil")}
    credentials = tmp_path / "git-credentials.toml"
    with GitHttpServer(root, username="x-access-token", token=SHARED) as git, \
            NoiseServer() as noise:
        closed = closed_port()
        credentials.write_text("".join(
            f'[[credentials]]\ncustomers = ["{c}"]\nurls = ["{git.base}/{c}/"]\n'
            f'token = "{SHARED}"\n' for c in ("victim", "evil")))
        scan = {
            "git server": git.url("acme/missing.git"),
            "open, not git (http)": f"http://127.0.0.1:{noise.port}/acme/x.git",
            "open, not git (ssh)": f"ssh://git@127.0.0.1:{noise.port}/acme/x.git",
            "closed (http)": f"http://127.0.0.1:{closed}/acme/x.git",
            "closed (ssh)": f"ssh://git@127.0.0.1:{closed}/acme/x.git",
        }
        access = repository_access({
            "victim": [f"{git.base}/victim/"], "evil": [f"{git.base}/evil/"],
            "acme": sorted({u.rsplit("/acme/", 1)[0] for u in scan.values()}),
            "globex": [f"http://127.0.0.2:{git.port}/"],
        }, private="127.0.0.1")
        gateway = procs.gateway(DEVTEAM_WORKSPACE_GIT_CREDENTIALS=str(credentials), **access)
        yield {
            "gateway": gateway.url, "git": git, "noise": noise, "repos": repos, "scan": scan,
            "victim_url": git.url("victim/app.git"), "evil_url": git.url("evil/app.git"),
            "tokens": {
                "evil dev": token_for("mallory", ["evil/*"]),
                "evil manager": token_for("boss", ["evil/*"], role="manager"),
                "victim dev": token_for("vera", ["victim/*"]),
                "acme dev": token_for("ann", ["acme/*"]),
                "globex dev": token_for("gus", ["globex/*"]),
                "admin": token_for("root", [], role="admin"),
            },
        }


def client(world, who: str) -> httpx.Client:
    return httpx.Client(base_url=world["gateway"], timeout=60,
                        headers={"Authorization": f"Bearer {world['tokens'][who]}"})


# ------------------------------------------------- a customer uses only its own URLs
async def test_evil_cannot_initialise_on_victims_url_nor_read_nor_push_it(world, store):
    git, victim = world["git"], world["repos"]["victim"]
    before, counts = tip(victim), await row_counts(store)
    url = world["victim_url"]
    with client(world, "evil dev") as evil:
        initialised = evil.post(INITIALIZE, json={"projectId": "evil/steal", "repositoryUrl": url})
        evented = evil.post("/events", json={"workflow_type": "DEVTEAM_AUTOMATION", "data": {
            "projectId": "evil/steal", "repositoryUrl": url}})
        # a project row stored before the fix: the pipeline refuses it before any request
        await add_project(store, "evil/old", url)
        listed = evil.get("/api/devteam/repository/tasks/evil/old")
        edited = evil.put("/api/devteam/repository/tasks/evil/old/1.1", json={"status": "done"})

    for answer, field in ((initialised, "repositoryUrl"), (evented, "data.repositoryUrl")):
        assert answer.status_code == 422, answer.text
        assert answer.json()["errors"] == [{"field": field, "message": (
            "this repository URL is not allowed for customer 'evil'; the operator allows "
            "repositories per customer (DEVTEAM_GIT_CUSTOMER_REPOS)")}]
    for answer in (listed, edited):
        assert answer.status_code == 422, answer.text
        assert "not allowed for customer 'evil'" in answer.json()["detail"]
        assert "roadmap" not in answer.text
    counts_after = await row_counts(store)
    assert counts_after.pop("projects") == counts.pop("projects") + 1  # only the planted row
    assert counts_after == counts
    assert git.requests == []  # nothing was sent to the git host
    assert tip(victim) == before


async def test_evils_manager_cannot_probe_victims_repository(world):
    git = world["git"]
    with client(world, "evil manager") as boss, client(world, "admin") as admin:
        answers = [
            boss.post(VALIDATE, json={"repositoryUrl": world["victim_url"]}),
            boss.post(VALIDATE, json={"repositoryUrl": world["victim_url"],
                                      "projectId": "evil/x", "taskListPath": "tasks_list.md"}),
            admin.post(VALIDATE, json={"repositoryUrl": world["victim_url"]}),
        ]
        other = boss.post(VALIDATE, json={"repositoryUrl": world["victim_url"],
                                          "projectId": "victim/app"})
    seen_by_probes = list(git.requests)
    with client(world, "victim dev") as vera:
        own = vera.post(VALIDATE, json={"repositoryUrl": world["victim_url"]})

    for answer in answers:
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["valid"] is False and body["hasTaskList"] is False
        assert body["taskCount"] == 0 and body["defaultBranch"] is None
        assert "is not allowed for" in body["problems"][0]
    assert other.status_code == 403  # a project the token does not grant
    assert seen_by_probes == []
    assert own.json()["valid"] is True and own.json()["taskCount"] == 2  # the host works
    assert git.authorizations  # ...with the victim's credential


# ----------------------------------------------------------- credentials in URLs
@pytest.mark.parametrize("leaky", [
    "{base}/evil/app.git?access_token={secret}",
    "http://x-access-token:{secret}@127.0.0.1:{port}/evil/app.git",
])
async def test_a_url_carrying_credentials_is_422_and_never_stored_or_echoed(
    world, store, leaky
):
    git = world["git"]
    url = leaky.format(base=git.base, port=git.port, secret=LEAKED)
    counts = await row_counts(store)
    with client(world, "evil dev") as evil:
        answers = {
            "repositoryUrl": evil.post(INITIALIZE, json={"projectId": "evil/app",
                                                         "repositoryUrl": url}),
            "data.repositoryUrl": evil.post("/events", json={
                "workflow_type": "DEVTEAM_AUTOMATION",
                "data": {"projectId": "evil/app", "repositoryUrl": url}}),
            "repositoryUrl ": evil.post(VALIDATE, json={"repositoryUrl": url}),
        }

    for field, answer in answers.items():
        assert answer.status_code == 422, answer.text
        assert answer.json()["errors"][0]["field"] == field.strip()
        assert "credentials" in answer.json()["detail"]
        assert LEAKED not in answer.text
    assert await row_counts(store) == counts
    assert LEAKED not in json.dumps(await dump_tables(store))
    assert git.requests == []


# ------------------------------------------------------------------- port scanning
async def test_validate_is_no_port_scanner(world):
    """Refused outright for a customer the operator did not allow there; where it did
    allow the ports (acme), every state reads the same; loopback other than the allowed
    address is refused for globex before anything is sent."""
    scan, git, noise = world["scan"], world["git"], world["noise"]
    with client(world, "evil dev") as evil:
        refused = {name: evil.post(VALIDATE, json={"repositoryUrl": url})
                   for name, url in scan.items()}
    untouched = (list(git.requests), noise.connections)
    with client(world, "acme dev") as acme:
        allowed = {name: acme.post(VALIDATE, json={"repositoryUrl": url})
                   for name, url in scan.items()}
    with client(world, "globex dev") as globex:
        loopback = globex.post(INITIALIZE, json={
            "projectId": "globex/app", "repositoryUrl": f"http://127.0.0.2:{git.port}/x.git"})

    assert untouched == ([], 0)
    assert len({r.text for r in refused.values()}) == 1, {n: r.text for n, r in refused.items()}
    assert all(r.status_code == 200 for r in refused.values())
    assert noise.connections > 0 and git.requests  # acme's probes really went out
    assert {name: r.text for name, r in allowed.items()} == dict.fromkeys(
        scan, allowed["closed (http)"].text)  # byte for byte, whatever listens
    assert allowed["closed (http)"].json() == {
        "valid": False, "defaultBranch": None, "hasTaskList": False, "taskListPath": None,
        "taskCount": 0, "problems": [f"connect: {UNREACHABLE}"]}
    assert loopback.status_code == 422
    assert "private network" in loopback.json()["errors"][0]["message"]

