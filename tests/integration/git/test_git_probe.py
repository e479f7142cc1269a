"""Repository validation without a working copy: probe_remote."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pygit2
import pytest
from tests.support.git_http import GitHttpServer

from runner.errors import ConfigError
from runner.git import CredentialStore, GitWorkspace, probe_remote

TASKS = "- [ ] 1.1 First task\n- [ ] 1.2 Second (Dependencies: [1.1])\n"


def probe(url: str, settings, **kwargs):
    return probe_remote(url, "customer-123", CredentialStore(), settings=settings, **kwargs)


def test_given_a_repository_with_a_task_list_then_probe_returns_its_bytes(settings, make_remote):
    remote = make_remote("tasks", {"tasks_list.md": TASKS, "README.md": "x"}, branch="trunk")

    info = probe(remote.url, settings, paths=["task_lists.md", "tasks_list.md"])

    assert info.reachable is True
    assert info.error is None
    assert info.default_branch == "trunk"
    assert info.branches == ["trunk"]
    assert info.file_path == "tasks_list.md"
    assert info.file_bytes == TASKS.encode()


def test_given_a_named_branch_then_the_file_is_read_from_it(settings, make_remote):
    remote = make_remote("tasks", {"README.md": "x"})
    remote.commit({"tasks_list.md": "- [ ] 9.9 On dev\n"}, "dev list", branch="dev")

    on_main = probe(remote.url, settings, paths=["tasks_list.md"])
    on_dev = probe(remote.url, settings, branch="dev", paths=["tasks_list.md"])

    assert on_main.file_path is None
    assert on_main.error is None
    assert on_dev.file_bytes == b"- [ ] 9.9 On dev\n"


def test_given_a_missing_branch_then_the_result_says_so(settings, remote):
    info = probe(remote.url, settings, branch="release", paths=["tasks_list.md"])

    assert info.reachable is True
    assert info.error == "branch 'release' does not exist"
    assert info.classification == "config"


@pytest.mark.parametrize(
    ("url", "classification"),
    [
        ("not a url", "config"),
        ("ftp://example.com/repo.git", "config"),
        ("file:///etc", "config"),
        ("http://example.com/repo.git", "config"),
    ],
)
def test_given_a_bad_url_then_probe_returns_a_result_not_an_exception(
    settings, url, classification
):
    info = probe(url, settings)

    assert info.reachable is False
    assert info.classification == classification
    assert info.error


def test_given_a_missing_repository_then_it_is_unreachable_with_config_classification(
    settings, remotes_dir: Path
):
    info = probe(f"file://{remotes_dir}/missing.git", settings)

    assert info.reachable is False
    assert info.classification == "config"
    assert "not found" in (info.error or "")


@pytest.mark.sockets
def test_given_an_http_remote_then_the_file_is_fetched_over_the_wire(
    allow, make_remote, remotes_dir: Path
):
    make_remote("web", {"tasks_list.md": TASKS})
    with GitHttpServer(remotes_dir) as server:
        settings = allow({"customer-123": [server.base]})
        info = probe(server.url("web.git"), settings, paths=["tasks_list.md"])

    assert info.default_branch == "main"
    assert info.file_bytes == TASKS.encode()


def test_given_a_path_escaping_the_repository_then_the_result_is_a_config_error(settings, remote):
    info = probe(remote.url, settings, paths=["../../etc/passwd"])

    assert info.classification == "config"
    assert info.file_bytes is None


def test_given_an_empty_repository_then_checkout_says_it_has_no_commits(
    workspace: GitWorkspace, remotes_dir: Path, settings
):
    pygit2.init_repository(str(remotes_dir / "empty.git"), bare=True, initial_head="main")
    url = f"file://{remotes_dir}/empty.git"

    with pytest.raises(ConfigError, match="has no commits"):
        workspace.checkout("customer-123", "customer-123/p", str(uuid.uuid4()), url)
    assert probe(url, settings).error == "repository is empty"


PROBE_PEAK = """
import sys
from runner.git import CredentialStore, probe_remote

def peak_kib():  # this process's own peak (ru_maxrss starts from the parent's at fork)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

before = peak_kib()
info = probe_remote(sys.argv[1], "customer-123", CredentialStore(), paths=["tasks_list.md"])
print("error:", info.error)
print("grew_kib", peak_kib() - before)
"""


@pytest.mark.sockets
def test_given_a_task_list_over_the_limit_then_the_probe_refuses_it_without_inflating_it(
    allow, make_remote, remotes_dir: Path,
):
    """A 64 MB task list of one repeated character packs into about 64 KB. Fetched over
    HTTP (the packing is the server's, another process, as it is in production) the
    probe receives and indexes the pack without holding the file, and learns its size
    from the object's header: reading the blob's own size inflated all of it into the
    process that validates (the gateway)."""
    make_remote("huge", {"tasks_list.md": "x" * (64 * 1024 * 1024)})
    with GitHttpServer(remotes_dir) as server:
        allow({"customer-123": [server.base]})
        done = subprocess.run([sys.executable, "-c", PROBE_PEAK, server.url("huge.git")],
                              capture_output=True, text=True, timeout=120, check=True)

    assert "error: tasks_list.md is larger than 5242880 bytes" in done.stdout, done.stdout
    grew_kib = int(done.stdout.rsplit("grew_kib", 1)[1])
    assert grew_kib < 16 * 1024, done.stdout
