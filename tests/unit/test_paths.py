"""Workspace paths are derived only from validated ids, and never collide across customers."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner.errors import Classification, ConfigError
from runner.git.paths import cache_dir, customer_root, split_project_id, workspace_paths

ROOT = Path("/srv/devteam/workspaces")
EXECUTION = "0b9a3f0e-6f1c-4d5e-9a57-2c8f1d7e4b21"


def test_given_valid_ids_then_the_worktree_is_under_the_customer_root():
    paths = workspace_paths(ROOT, "customer-123", "customer-123/project-abc", EXECUTION)

    assert paths.customer_root == ROOT / "customer-123"
    assert paths.worktree == ROOT / "customer-123" / "work" / "project-abc" / EXECUTION


def test_given_a_repository_url_then_the_cache_is_named_by_its_normalised_form():
    paths = workspace_paths(ROOT, "acme", "acme/web", EXECUTION)

    spellings = [
        "https://github.com/Org/Repo.git",
        "https://GITHUB.com/Org/Repo",
        "https://github.com:443/Org/Repo/",
    ]
    caches = {paths.cache_dir(url) for url in spellings}

    assert len(caches) == 1
    cache = caches.pop()
    assert cache.parent == ROOT / "acme" / "cache"
    assert cache.name.endswith(".git")
    assert paths.cache_dir("https://github.com/Org/Other") != cache
    assert paths.cache_dir("https://github.com/org/repo") != cache  # paths are case-sensitive


def test_given_two_customers_then_the_same_repository_gets_two_disjoint_caches():
    url = "https://github.com/org/repo.git"
    a = cache_dir(customer_root(ROOT, "acme"), url)
    b = cache_dir(customer_root(ROOT, "globex"), url)

    assert a != b
    assert a.is_relative_to(ROOT / "acme")
    assert b.is_relative_to(ROOT / "globex")


@pytest.mark.parametrize(
    "customer",
    ["..", ".", "", "a/b", "/etc", "a\\b", "acme\n", "a b", "é", "x" * 101, "acme/.."],
)
def test_given_a_hostile_customer_id_then_it_is_a_config_error(customer):
    with pytest.raises(ConfigError) as caught:
        workspace_paths(ROOT, customer, f"{customer}/web", EXECUTION)

    assert caught.value.classification is Classification.CONFIG


@pytest.mark.parametrize(
    "project_id",
    [
        "acme",
        "acme/",
        "/web",
        "acme/web/x",
        "acme/..",
        "acme/.",
        "acme/%2e%2e",
        "acme\\web",
        "acme/web\x00",
        "acme/" + "w" * 101,
    ],
)
def test_given_a_hostile_project_id_then_it_is_a_config_error(project_id):
    with pytest.raises(ConfigError):
        workspace_paths(ROOT, "acme", project_id, EXECUTION)


@pytest.mark.parametrize(
    "execution_id", ["", "..", "-rf", "../other", "/abs", "a/b", "x" * 101, "id\n"]
)
def test_given_a_hostile_execution_id_then_it_is_a_config_error(execution_id):
    with pytest.raises(ConfigError):
        workspace_paths(ROOT, "acme", "acme/web", execution_id)


def test_given_a_project_of_another_customer_then_it_is_refused():
    with pytest.raises(ConfigError, match="does not belong"):
        workspace_paths(ROOT, "acme", "globex/web", EXECUTION)


def test_given_a_relative_root_then_paths_are_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    paths = workspace_paths(Path("ws"), "acme", "acme/web", EXECUTION)

    assert paths.worktree.is_absolute()
    assert paths.worktree.is_relative_to(tmp_path / "ws" / "acme")


def test_split_project_id_returns_both_parts():
    assert split_project_id("customer-123/project_abc") == ("customer-123", "project_abc")


SAFE = string.ascii_letters + string.digits + "_-"
safe_ids = st.text(alphabet=SAFE, min_size=1, max_size=100)
hostile_ids = st.one_of(
    st.sampled_from(["", ".", "..", "/", "../x", "x/..", "/etc", "a/b", "x\x00", "a b", "é",
                     "~", "x" * 101, "-", "_x"]),
    st.text(max_size=120),
)
# mostly ids the service accepts (so the containment assertion is reached), some hostile
ids = st.one_of(safe_ids, safe_ids, safe_ids, hostile_ids)


def _acceptable(customer: str, project: str, execution: str) -> bool:
    """The documented rule, written independently: 1-100 of [A-Za-z0-9_-] per id, an
    execution id starting with a letter or digit, a project id of at most 200 characters."""
    def part(value: str) -> bool:
        return 1 <= len(value) <= 100 and all(c in SAFE for c in value)

    return (part(customer) and part(project) and part(execution)
            and execution[0] not in "_-" and len(customer) + 1 + len(project) <= 200)


@given(customer=ids, project=ids, execution=ids)
def test_any_accepted_ids_stay_inside_their_customer_root(customer, project, execution):
    try:
        paths = workspace_paths(ROOT, customer, f"{customer}/{project}", execution)
    except ConfigError:
        assert not _acceptable(customer, project, execution)
        return
    assert _acceptable(customer, project, execution)
    base = (ROOT / customer).resolve()
    assert paths.customer_root == base
    assert paths.worktree.resolve().is_relative_to(base / "work")
    assert paths.worktree == base / "work" / project / execution
    assert ".." not in paths.worktree.parts
