"""Helpers for tests that run real Aider: the scripted model server and git working copies."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pygit2

from devtools.scripted_model import ScriptedModelServer, parse_script
from runner.settings import Settings, load_settings

AUTHOR = pygit2.Signature("Test Author", "author@devteam.test")


def make_working_copy(path: Path, files: Mapping[str, str]) -> Path:
    """A git repository at ``path`` whose ``main`` has one commit holding ``files``."""
    repo = pygit2.init_repository(str(path), initial_head="main")
    for name, content in files.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    repo.index.add_all()
    repo.index.write()
    tree = repo.index.write_tree()
    repo.create_commit("HEAD", AUTHOR, AUTHOR, "initial", tree, [])
    return path


def changed_paths(path: Path) -> set[str]:
    """Paths git sees as changed or new (ignored files included) in the working copy."""
    repo = pygit2.Repository(str(path))
    return set(repo.status(untracked_files="all", ignored=True))


@contextmanager
def scripted_server(script_toml: str) -> Iterator[ScriptedModelServer]:
    """A running scripted model server answering from ``script_toml``."""
    with ScriptedModelServer(parse_script(script_toml, source="test script")) as server:
        yield server


def model_settings(api_base: str, **overrides: str) -> Settings:
    """Settings pointing Aider at ``api_base``; ``overrides`` are ``DEVTEAM_*`` values."""
    env = {
        "DEVTEAM_MODEL_API_BASE": api_base,
        "DEVTEAM_MODEL_NAME": "openai/scripted",
        "DEVTEAM_MODEL_API_KEY": "sk-scripted-local",
        **overrides,
    }
    return load_settings(env)
