"""Tenants cannot reach each other through git: each attack of the hostile review replayed
against real git servers on loopback (``git http-backend`` behind Basic auth, a server
that redirects, a port that is open but no git server, a closed port).

The servers record every request and every ``Authorization`` header they receive, so
"refused before any network request" and "the credential never left" are observed, not
assumed.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from tests.support.git_http import (
    GitHttpServer,
    NoiseServer,
    RedirectingServer,
    closed_port,
    repository_access,
)

from runner.errors import ConfigError, RunnerError
from runner.git import CredentialStore, GitWorkspace, probe_remote
from runner.git.remote import UNREACHABLE
from runner.settings import Settings, get_settings, reset_settings_cache

SHARED = "ghp_" + "SharedOperatorToken0123456789abcdefgh"
"""One token the git server accepts for every repository (an operator's app installed on
both customers' organisations): the "host-wide credential" of the review."""
TASKS = "- [ ] 1.1 Victim's secret roadmap\n"


@pytest.fixture
def configure(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Write the operator's configuration: credentials file text and per-customer
    prefixes; returns the settings read afresh."""

    def apply(credentials: str, prefixes: dict[str, list[str]],
              private: str = "127.0.0.1") -> Settings:
        path = tmp_path / "git-credentials.toml"
        path.write_text(credentials)
        monkeypatch.setenv("DEVTEAM_WORKSPACE_GIT_CREDENTIALS", str(path))
        for key, value in repository_access(prefixes, private).items():
            monkeypatch.setenv(key, value)
        reset_settings_cache()
        return get_settings()

    return apply


def bound(base: str) -> str:
    """The shared token, bound per customer to its own organisation on ``base``."""
    return "".join(
        f'[[credentials]]\ncustomers = ["{c}"]\nurls = ["{base}/{c}/"]\ntoken = "{SHARED}"\n'
        for c in ("victim", "evil"))


@pytest.fixture
def orgs(make_remote):
    victim = make_remote("victim/app", {"tasks_list.md": TASKS, "src/app.py": "x = 1\n"})
    evil = make_remote("evil/app", {"tasks_list.md": "- [ ] 1.1 Evil\n"})
    return victim, evil


def run(workspace: GitWorkspace, customer: str, url: str) -> RunnerError | None:
    """Check out ``url`` for ``customer`` and push a commit to its main branch (what an
    execution of a project initialised on that URL does); the error, if refused."""
    try:
        checkout = workspace.checkout(customer, f"{customer}/p", str(uuid.uuid4()), url)
        workspace.commit_files(checkout, {"pwned.txt": "evil was here\n"}, "pwned", {})
        workspace.push(checkout, [checkout.default_branch])
    except RunnerError as exc:
        return exc
    return None


# ------------------------------------------------------------- the host-wide credential
def test_the_readmes_old_host_wide_credential_is_refused_when_the_service_starts(
    configure,
):
    settings = configure(f'[hosts."127.0.0.1"]\ntoken = "{SHARED}"\n', {})

    with pytest.raises(ConfigError, match="name the customers") as caught:
        CredentialStore.from_settings(settings)
    assert SHARED not in caught.value.message


@pytest.mark.sockets
def test_evil_cannot_use_victims_repository_url_and_nothing_is_sent_anywhere(
    configure, orgs, remotes_dir: Path
):
    victim, _ = orgs
    before = victim.tip().id
    with GitHttpServer(remotes_dir, username="x-access-token", token=SHARED) as server:
        settings = configure(bound(server.base), {
            "victim": [f"{server.base}/victim/"], "evil": [f"{server.base}/evil/"]})
        workspace = GitWorkspace(settings)
        victim_url = server.url("victim/app.git")

        refused = run(workspace, "evil", victim_url)
        probed = probe_remote(victim_url, "evil", CredentialStore.from_settings(settings),
                              paths=["tasks_list.md"], settings=settings)
        seen_by_attack = list(server.requests)
        own = run(workspace, "evil", server.url("evil/app.git"))

    assert isinstance(refused, ConfigError)
    assert "not allowed for customer 'evil'" in refused.message
    assert probed.reachable is False and probed.file_bytes is None
    assert seen_by_attack == []  # refused before any network request
    assert victim.tip().id == before
    assert own is None  # evil's own repository still works, with the same token
    assert server.authorizations


@pytest.mark.sockets
def test_even_where_the_operator_lets_evil_name_any_url_the_credential_stays_victims(
    configure, orgs, remotes_dir: Path
):
    victim, _ = orgs
    before = victim.tip().id
    with GitHttpServer(remotes_dir, username="x-access-token", token=SHARED) as server:
        settings = configure(bound(server.base), {"*": [server.base]})
        workspace = GitWorkspace(settings)

        refused = run(workspace, "evil", server.url("victim/app.git"))
        probed = probe_remote(server.url("victim/app.git"), "evil",
                              CredentialStore.from_settings(settings), paths=["tasks_list.md"],
                              settings=settings)
        anonymous = list(server.authorizations)
        ok = run(workspace, "victim", server.url("victim/app.git"))

    assert isinstance(refused, ConfigError)
    assert refused.message == f"clone: {UNREACHABLE}"
    assert probed.reachable is False and probed.file_bytes is None
    assert anonymous == []  # every request evil caused went without a credential
    assert ok is None and victim.tip().id != before  # the victim's own run pushes


# ------------------------------------------------------------------------- redirects
@pytest.mark.sockets
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_redirect_elsewhere_is_refused_and_the_credential_never_follows(
    configure, orgs, remotes_dir: Path, host
):
    """The victim's own git host (which demands the token, so the client has it in hand)
    redirects to a server of the attacker: another port, or another host name."""
    with (
        GitHttpServer(remotes_dir, username="x-access-token", token=SHARED) as attacker,
        RedirectingServer(attacker.base.replace("127.0.0.1", host), token=SHARED) as host_a,
    ):
        settings = configure(
            f'[[credentials]]\ncustomers = ["victim"]\nurls = ["{host_a.base}/"]\n'
            f'token = "{SHARED}"\n', {"victim": [host_a.base]})
        workspace = GitWorkspace(settings)
        url = host_a.url("victim/app.git")

        refused = run(workspace, "victim", url)
        probed = probe_remote(url, "victim", CredentialStore.from_settings(settings),
                              paths=["tasks_list.md"], settings=settings)

    assert isinstance(refused, RunnerError)
    assert refused.message == f"clone: {UNREACHABLE}"
    assert probed.reachable is False and probed.file_bytes is None
    assert host_a.authorizations  # the configured host got its credential...
    assert attacker.authorizations == []  # ...and the redirect target never did
    assert not any(status == 200 for _, _, status in attacker.requests)
    assert list(settings.path(settings.workspace.root).rglob("*.git")) == []  # nothing fetched


# -------------------------------------------------------------------- port scanning
@pytest.mark.sockets
def test_loopback_is_refused_for_tenants_unless_the_operator_allows_it(
    configure, remotes_dir: Path, make_remote
):
    make_remote("acme/app")
    with GitHttpServer(remotes_dir) as server, NoiseServer() as noise:
        prefixes = {"acme": [server.base, f"ssh://127.0.0.1:{noise.port}",
                             f"ssh://localhost:{noise.port}"]}
        settings = configure("", prefixes, private="")
        refused = [probe_remote(url, "acme", CredentialStore(), settings=settings)
                   for url in (server.url("acme/app.git"), f"ssh://127.0.0.1:{noise.port}/x",
                               f"ssh://localhost:{noise.port}/x")]
        unseen = (list(server.requests), noise.connections)
        settings = configure("", prefixes, private="127.0.0.1")
        allowed = probe_remote(server.url("acme/app.git"), "acme", CredentialStore(),
                               settings=settings)

    assert unseen == ([], 0)  # nothing was sent to either port
    assert len({r.error for r in refused}) == 1
    assert "private network" in (refused[0].error or "")
    assert allowed.reachable is True and server.requests  # the operator's allowance works


@pytest.mark.sockets
def test_failures_read_the_same_whatever_the_port_state(
    configure, remotes_dir: Path, make_remote
):
    """The operator allows loopback ports for a customer; whatever listens there (nothing,
    a non-git service, a git server without that repository, one that wants a token, one
    that redirects), the tenant reads the same words."""
    make_remote("acme/app")
    closed = closed_port()
    with (
        GitHttpServer(remotes_dir) as git,
        GitHttpServer(remotes_dir, username="x-access-token", token=SHARED) as locked,
        RedirectingServer(git.base.replace("127.0.0.1", "localhost")) as redirect,
        NoiseServer() as ssh_like,
        NoiseServer(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello") as web,
    ):
        urls = {
            "closed http": f"http://127.0.0.1:{closed}/acme/app.git",
            "closed ssh": f"ssh://git@127.0.0.1:{closed}/acme/app.git",
            "ssh banner": f"ssh://git@127.0.0.1:{ssh_like.port}/acme/app.git",
            "ssh banner over http": f"http://127.0.0.1:{ssh_like.port}/acme/app.git",
            "web page": f"http://127.0.0.1:{web.port}/acme/app.git",
            "no such repository": git.url("acme/missing.git"),
            "wants a token": locked.url("acme/app.git"),
            "redirects": redirect.url("acme/app.git"),
        }
        settings = configure("", {"acme": [u.rsplit("/acme/", 1)[0] for u in urls.values()]})
        answers = {name: probe_remote(url, "acme", CredentialStore(), settings=settings,
                                      paths=["tasks_list.md"])
                   for name, url in urls.items()}
        working = probe_remote(git.url("acme/app.git"), "acme", CredentialStore(),
                               settings=settings)

    assert working.reachable is True  # the servers really answer
    assert ssh_like.connections > 0 and web.connections > 0 and locked.requests
    assert {name: (a.reachable, a.error) for name, a in answers.items()} == dict.fromkeys(
        urls, (False, f"connect: {UNREACHABLE}"))


@pytest.mark.sockets
def test_a_name_that_does_not_resolve_reads_like_any_unreachable_repository(configure):
    settings = configure("", {"acme": ["https://no-such-host.invalid"]})

    info = probe_remote("https://no-such-host.invalid/acme/app.git", "acme", CredentialStore(),
                        settings=settings)

    assert (info.reachable, info.error) == (False, f"connect: {UNREACHABLE}")
