"""The dependency cache: ``cache_key``, volume names, and ``DepsCache`` over a fake engine."""

from __future__ import annotations

import hashlib
import re

import pytest
from tests.unit.setup.fake_docker import Clock, FakeVolumes

from runner.setup import DepsCache, SetupPlan, cache_key
from runner.setup.cache import UNFINISHED_GRACE_SECONDS, volume_prefix

IMAGE = "sha256:" + "a" * 64
PLAN = SetupPlan(
    tool="npm",
    commands=["npm ci --no-audit --no-fund"],
    cache_paths=["node_modules"],
    manifests=[".npmrc", "package-lock.json", "package.json"],
    env={"PATH": "/workspace/node_modules/.bin:/usr/bin:/bin", "NODE_ENV": "test"},
)
FILES: dict[str, bytes | None] = {
    "package.json": b'{"dependencies": {"left-pad": "1.3.0"}}',
    "package-lock.json": b'{"lockfileVersion": 3}',
    ".npmrc": None,
}
DOCKER_VOLUME_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
HOUR = 3600.0
GIB = 1024**3


def key_of(plan: SetupPlan = PLAN, files: dict[str, bytes | None] | None = None,
           image: str = IMAGE) -> str:
    return cache_key(plan, FILES if files is None else files, image)


def replaced(**changes: object) -> SetupPlan:
    fields = {"tool": PLAN.tool, "commands": PLAN.commands, "cache_paths": PLAN.cache_paths,
              "manifests": PLAN.manifests, "env": PLAN.env}
    return SetupPlan(**{**fields, **changes})  # type: ignore[arg-type]


def key(n: int) -> str:
    """A distinct, realistic cache key (64 hex digits, distinct prefixes)."""
    return hashlib.sha256(f"key-{n}".encode()).hexdigest()


# ---------------------------------------------------------------------------- cache_key
def test_given_equal_inputs_then_the_key_is_the_same_sha256():
    first = key_of()
    again = cache_key(replaced(), dict(FILES), IMAGE)

    assert first == again
    assert re.fullmatch(r"[0-9a-f]{64}", first)


def test_given_dicts_in_another_order_then_the_key_is_the_same():
    files = dict(reversed(list(FILES.items())))
    env = dict(reversed(list(PLAN.env.items())))

    assert key_of(replaced(env=env), files) == key_of()


@pytest.mark.parametrize(
    "files",
    [
        {**FILES, "package-lock.json": b'{"lockfileVersion": 2}'},
        {**FILES, "package.json": FILES["package.json"] + b"\n"},  # type: ignore[operator]
        {**FILES, ".npmrc": b"registry=https://npm.example/\n"},  # appears
        {**FILES, "package-lock.json": None},  # disappears
        {**FILES, ".npmrc": b""},  # empty is not absent
        {**FILES, "yarn.lock": b""},  # another manifest
    ],
    ids=["lockfile-content", "manifest-content", "appears", "disappears", "empty", "added"],
)
def test_given_a_manifest_change_then_the_key_changes(files):
    assert key_of(files=files) != key_of()


@pytest.mark.parametrize(
    "plan",
    [
        replaced(commands=["npm install"]),
        replaced(commands=[*PLAN.commands, "npm run prepare"]),
        replaced(cache_paths=["node_modules", ".venv"]),
        replaced(cache_paths=["vendor"]),
        replaced(env={**PLAN.env, "NODE_ENV": "production"}),
        replaced(env={"PATH": PLAN.env["PATH"]}),
        replaced(tool="custom"),
    ],
    ids=["command", "extra-command", "extra-path", "other-path", "env-value", "env-removed",
         "tool"],
)
def test_given_a_plan_change_then_the_key_changes(plan):
    assert key_of(plan) != key_of()


def test_given_commands_in_another_order_then_the_key_changes():
    plan = replaced(commands=["a", "b"])

    assert key_of(plan) != key_of(replaced(commands=["b", "a"]))
    assert key_of(replaced(commands=["ab"])) != key_of(plan)


def test_given_another_image_then_the_key_changes():
    assert key_of(image="sha256:" + "b" * 64) != key_of()


# ------------------------------------------------------------------------ volume names
def test_given_two_customers_with_the_same_project_id_then_their_prefixes_differ():
    assert volume_prefix("acme", "web") != volume_prefix("globex", "web")
    assert volume_prefix("acme", "web") != volume_prefix("acme", "api")
    # the boundary between customer and project cannot be shifted
    assert volume_prefix("ab", "c") != volume_prefix("a", "bc")


@pytest.mark.parametrize(
    ("customer", "project"),
    [("acme", "web"), ("Ünïcødé / cust", "../../etc"), ("", ""), ("c" * 500, "p" * 500)],
)
def test_given_any_ids_then_the_prefix_is_a_valid_fixed_length_volume_name(customer, project):
    prefix = volume_prefix(customer, project)

    assert DOCKER_VOLUME_NAME.fullmatch(prefix)
    assert prefix.startswith("dtdeps-")
    assert len(prefix) == len(volume_prefix("x", "y"))


def test_given_a_prepared_entry_then_every_volume_name_is_valid_and_tenant_prefixed():
    cache = DepsCache(FakeVolumes(), max_bytes_per_customer=GIB, per_project=3,
                      max_age_seconds=HOUR)

    volumes = cache.prepare("acme", "web", key(1), ["node_modules", ".venv", "a/b c"])

    assert set(volumes) == {"node_modules", ".venv", "a/b c"}
    assert len(set(volumes.values())) == 3
    for name in volumes.values():
        assert DOCKER_VOLUME_NAME.fullmatch(name)
        assert name.startswith(volume_prefix("acme", "web") + "-")


# --------------------------------------------------------------------------- DepsCache
@pytest.fixture
def engine() -> FakeVolumes:
    return FakeVolumes()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def deps_cache(engine: FakeVolumes, clock: Clock, *, max_bytes: int = GIB, per_project: int = 3,
               max_age: float = 7 * 24 * HOUR) -> DepsCache:
    return DepsCache(engine, max_bytes_per_customer=max_bytes, per_project=per_project,
                     max_age_seconds=max_age, now=clock)


def complete(cache: DepsCache, customer: str, project: str, k: str, *, size: int = 1000,
             paths: tuple[str, ...] = ("node_modules",)) -> dict[str, str]:
    volumes = cache.prepare(customer, project, k, list(paths))
    cache.commit(customer, project, k, list(paths), size=size, seconds=12.5)
    return volumes


def test_given_an_empty_cache_then_lookup_misses(engine, clock):
    cache = deps_cache(engine, clock)

    assert cache.lookup("acme", "web", key(1), ["node_modules"]) is None


def test_given_a_setup_that_committed_then_lookup_hits_with_its_volumes(engine, clock):
    cache = deps_cache(engine, clock)
    paths = ["node_modules", ".venv"]

    volumes = cache.prepare("acme", "web", key(1), paths)
    missed_before_commit = cache.lookup("acme", "web", key(1), paths)
    committed = cache.commit("acme", "web", key(1), paths, size=4096, seconds=12.5)
    clock.advance(60)
    found = cache.lookup("acme", "web", key(1), paths)

    assert missed_before_commit is None
    assert set(volumes.values()) <= engine.names()
    assert found is not None
    assert found == committed
    assert found.key == key(1)
    assert found.volumes == volumes
    assert found.bytes == 4096
    assert found.seconds == 12.5
    assert found.created == int(Clock().value)


def test_given_fresh_data_volumes_then_they_are_labelled_as_data_of_their_owner(engine, clock):
    cache = deps_cache(engine, clock)

    volumes = cache.prepare("acme", "web", key(1), ["node_modules"])

    labels = engine.volumes_by_name[volumes["node_modules"]]
    assert labels["devteam.deps"] == "true"
    assert labels["devteam.customer"] == "acme"
    assert labels["devteam.project"] == "web"
    assert labels["devteam.deps.key"] == key(1)
    assert labels["devteam.deps.role"] == "data"


def test_given_another_customers_entry_then_lookup_misses(engine, clock):
    cache = deps_cache(engine, clock)
    complete(cache, "acme", "web", key(1))

    assert cache.lookup("globex", "web", key(1), ["node_modules"]) is None
    assert cache.lookup("acme", "api", key(1), ["node_modules"]) is None
    assert cache.lookup("acme", "web", key(2), ["node_modules"]) is None
    assert cache.lookup("acme", "web", key(1), ["node_modules"]) is not None


def test_given_a_marker_of_another_key_with_the_same_prefix_then_lookup_misses(engine, clock):
    cache = deps_cache(engine, clock)
    complete(cache, "acme", "web", key(1))
    same_prefix = key(1)[:20] + "0" * 44

    assert cache.lookup("acme", "web", same_prefix, ["node_modules"]) is None


def test_given_a_marker_whose_data_volume_vanished_then_it_misses_and_is_discarded(
    engine, clock
):
    cache = deps_cache(engine, clock)
    paths = ["node_modules", ".venv"]
    volumes = complete(cache, "acme", "web", key(1), paths=tuple(paths))
    before = engine.names()
    del engine.volumes_by_name[volumes[".venv"]]

    found = cache.lookup("acme", "web", key(1), paths)

    assert found is None
    assert len(before) == 3
    assert engine.names() == set()
    assert cache.lookup("acme", "web", key(1), paths) is None


def test_given_a_complete_entry_when_prepared_again_then_the_old_entry_is_gone(engine, clock):
    cache = deps_cache(engine, clock)
    complete(cache, "acme", "web", key(1))

    volumes = cache.prepare("acme", "web", key(1), ["node_modules"])

    assert cache.lookup("acme", "web", key(1), ["node_modules"]) is None
    assert engine.names() == set(volumes.values())


def test_given_a_discard_of_nothing_then_it_is_quiet(engine, clock):
    cache = deps_cache(engine, clock)

    cache.discard("acme", "web", key(1), ["node_modules"])

    assert engine.names() == set()


# -------------------------------------------------------------------------------- reap
def test_given_more_entries_than_per_project_then_reap_keeps_the_newest(engine, clock):
    cache = deps_cache(engine, clock, per_project=2)
    oldest = complete(cache, "acme", "web", key(1))
    clock.advance(10)
    complete(cache, "acme", "web", key(2))
    clock.advance(10)
    complete(cache, "acme", "web", key(3))
    clock.advance(10)
    complete(cache, "acme", "api", key(4))  # another project: its own count

    removed = cache.reap()

    assert cache.lookup("acme", "web", key(1), ["node_modules"]) is None
    assert not set(oldest.values()) & engine.names()
    for k in (2, 3):
        assert cache.lookup("acme", "web", key(k), ["node_modules"]) is not None
    assert cache.lookup("acme", "api", key(4), ["node_modules"]) is not None
    assert len(removed) == 1
    assert removed[0].endswith("-ok")


def test_given_an_entry_older_than_the_max_age_then_reap_drops_it(engine, clock):
    cache = deps_cache(engine, clock, max_age=10 * HOUR)
    complete(cache, "acme", "web", key(1))
    clock.advance(9 * HOUR)
    complete(cache, "acme", "web", key(2))
    clock.advance(2 * HOUR)  # key 1 is 11 h old, key 2 is 2 h old

    cache.reap()

    assert cache.lookup("acme", "web", key(1), ["node_modules"]) is None
    assert cache.lookup("acme", "web", key(2), ["node_modules"]) is not None


def test_given_a_customer_over_the_byte_bound_then_reap_drops_the_oldest(engine, clock):
    cache = deps_cache(engine, clock, max_bytes=100)
    complete(cache, "acme", "web", key(1), size=60)
    complete(cache, "globex", "web", key(2), size=90)  # another customer's own bound
    clock.advance(10)
    complete(cache, "acme", "api", key(3), size=60)

    cache.reap()

    assert cache.lookup("acme", "web", key(1), ["node_modules"]) is None
    assert cache.lookup("acme", "api", key(3), ["node_modules"]) is not None
    assert cache.lookup("globex", "web", key(2), ["node_modules"]) is not None


def test_given_a_customer_within_the_byte_bound_then_reap_keeps_everything(engine, clock):
    cache = deps_cache(engine, clock, max_bytes=120)
    complete(cache, "acme", "web", key(1), size=60)
    clock.advance(10)
    complete(cache, "acme", "api", key(2), size=60)
    before = engine.names()

    removed = cache.reap()

    assert removed == []
    assert engine.names() == before


def test_given_data_volumes_without_a_marker_then_reap_waits_for_the_grace_period(
    engine, clock
):
    cache = deps_cache(engine, clock, max_age=30 * 24 * HOUR)
    unfinished = cache.prepare("acme", "web", key(1), ["node_modules", ".venv"])
    finished = complete(cache, "acme", "web", key(2))

    clock.advance(UNFINISHED_GRACE_SECONDS)
    early = cache.reap()
    still_there = set(unfinished.values()) <= engine.names()
    clock.advance(1)
    late = cache.reap()

    assert early == []
    assert still_there
    assert sorted(late) == sorted(unfinished.values())
    assert not set(unfinished.values()) & engine.names()
    assert set(finished.values()) <= engine.names()
    assert cache.lookup("acme", "web", key(2), ["node_modules"]) is not None


def test_given_volumes_that_are_not_dependency_caches_then_reap_leaves_them(engine, clock):
    cache = deps_cache(engine, clock, per_project=1, max_age=1)
    engine.add("postgres-data")
    engine.add("dt-workspace", {"devteam.customer": "acme"})
    complete(cache, "acme", "web", key(1))
    clock.advance(10 * 24 * HOUR)

    cache.reap()

    assert engine.names() == {"postgres-data", "dt-workspace"}


def test_given_an_empty_engine_then_reap_removes_nothing(engine, clock):
    assert deps_cache(engine, clock).reap() == []
