"""A checked-in file whose name is not UTF-8 (``requirements\\xff.txt``) is not seen by
setup detection: before, it reached the plan as ``requirements\\udcff.txt`` and SETUP
failed (as infrastructure, retried) hashing it into the cache key or storing the plan."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from runner.setup import NO_SETUP, plan_setup
from runner.setup.cache import cache_key


def put(root: Path, name: bytes, data: bytes) -> None:
    with open(os.path.join(os.fsencode(root), name), "wb") as handle:
        handle.write(data)


def test_given_a_non_utf8_requirements_file_then_the_plan_leaves_it_out(tmp_path: Path) -> None:
    put(tmp_path, b"requirements.txt", b"requests==2.32.3\n")
    put(tmp_path, b"requirements\xff.txt", b"evil==1.0\n")

    plan = plan_setup(tmp_path)

    assert plan.tool == "pip"
    assert plan.manifests == ["requirements.txt"]
    assert not any("\udcff" in command for command in plan.commands)
    assert len(cache_key(plan, {"requirements.txt": b"requests==2.32.3\n"}, "sha256:i")) == 64
    assert msgspec.json.decode(msgspec.json.encode(plan)) == msgspec.to_builtins(plan)


def test_given_only_non_utf8_manifest_names_then_nothing_is_installed(tmp_path: Path) -> None:
    put(tmp_path, b"requirements\xff.txt", b"evil==1.0\n")
    put(tmp_path, b"pyproject\xfe.toml", b"[project]\ndependencies = ['x']\n")

    assert plan_setup(tmp_path) == NO_SETUP
