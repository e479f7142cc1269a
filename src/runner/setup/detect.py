"""What a repository needs installed before its checks can run: a :class:`SetupPlan`.

Decided from the repository's top-level files when ``.devteam.toml`` says nothing:

==========================  =================================================  ==============
file                        installs with                                      cached
==========================  =================================================  ==============
``package-lock.json``       ``npm ci``                                         ``node_modules``
``pnpm-lock.yaml``          ``corepack pnpm install --frozen-lockfile``        ``node_modules``
``yarn.lock``               ``corepack yarn install --frozen-lockfile``        ``node_modules``
``package.json`` with deps  ``npm install`` (no lockfile to follow)            ``node_modules``
``uv.lock``                 ``uv sync --frozen`` into ``.venv``                ``.venv``
``poetry.lock``             ``poetry install`` into ``.venv``                  ``.venv``
``requirements*.txt``       ``pip install -r`` into ``.venv``                  ``.venv``
``pyproject.toml``          ``pip install -e '.[test,dev]'`` into ``.venv``    ``.venv``
==========================  =================================================  ==============

A Python project's virtual environment sees the image's own packages
(``--system-site-packages``: pytest, coverage and mypy stay available) and is put first on
``PATH`` for every later command. A ``pyproject.toml`` that declares nothing to install
(no dependencies, no test or dev extras, no build system) needs no setup.

Given what the image offers, :func:`plan_setup` also chooses the project's Node.js line and
Python (:mod:`runner.setup.toolchain`): the plan's ``PATH`` then holds the chosen line, its
``toolchain`` says what was chosen and why, and a project asking for what the image lacks
is an ``EnvironmentFailure``. A plan with nothing to install still carries them.

``[commands] setup`` in ``.devteam.toml`` replaces the detected commands (``[setup] cache``
then names what to keep, top-level directories only, since that is where caches are
mounted; by default what detection would have kept). The caller passes the
project file read from the task's *base* commit, never from the model's change.

Everything read here is hostile input: files are read with the bounds of
:func:`runner.verify.config.read_repo_file`, and a manifest that cannot be parsed only
means the plain installer is used (the installer itself then reports the problem). A
top-level name that is not UTF-8 (``requirements\\xff.txt``) is not seen at all: no
manifest detection knows is named so, and the plan (its commands and manifests) must be
UTF-8 text to be hashed into the cache key and stored.
"""

from __future__ import annotations

import json
import shlex
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath

import msgspec

from runner.errors import ConfigError
from runner.setup.toolchain import Choice, Offered, choose, with_path
from runner.verify.config import ProjectFile, read_repo_file

VENV = ".venv"
NODE_MODULES = "node_modules"
TEST_EXTRAS = ("test", "tests", "testing", "dev")
"""Extras of ``[project.optional-dependencies]`` installed for verification, when present."""
MAX_REQUIREMENT_FILES = 8
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
"""The image's own ``PATH`` (its default Node.js line is in ``/usr/local/bin``)."""
VENV_ENV = {
    "VIRTUAL_ENV": f"/workspace/{VENV}",
    "PATH": f"/workspace/{VENV}/bin:/workspace/node_modules/.bin:{SYSTEM_PATH}",
}
NODE_ENV = {"PATH": f"/workspace/node_modules/.bin:{SYSTEM_PATH}"}
MAKE_VENV = f"python3 -m venv --system-site-packages {VENV}"
PIP = f"{VENV}/bin/python -m pip install --no-input --progress-bar off"

Reader = Callable[[str], bytes | None]


class SetupPlan(msgspec.Struct, frozen=True, kw_only=True):
    """How to install a project's dependencies, and what of it to keep."""

    tool: str
    """``npm``, ``pnpm``, ``yarn``, ``pip``, ``uv``, ``poetry``, ``custom`` or ``none``."""
    commands: list[str] = msgspec.field(default_factory=list)
    """Shell commands run in ``/workspace``, in order, with egress through the proxy."""
    cache_paths: list[str] = msgspec.field(default_factory=list)
    """Directories under ``/workspace`` that hold the result (cached, mounted read-only)."""
    manifests: list[str] = msgspec.field(default_factory=list)
    """Files whose content decides the result (their hashes key the cache)."""
    env: dict[str, str] = msgspec.field(default_factory=dict)
    """Variables every later command needs to use the result (``PATH``, ``VIRTUAL_ENV``)."""
    toolchain: list[Choice] = msgspec.field(default_factory=list)
    """The Node.js line and Python chosen for the project (empty: the image's defaults)."""

    @property
    def needed(self) -> bool:
        return bool(self.commands)


NO_SETUP = SetupPlan(tool="none")


def plan_setup(workdir: Path, project: ProjectFile | None = None,
               offered: Offered | None = None) -> SetupPlan:
    """The setup of the working copy at ``workdir`` (see the module docstring).

    ``project`` is ``.devteam.toml`` from the trusted base commit (None when it has none);
    ``offered`` what the sandbox image offers (None: no toolchain is chosen). Raises
    ConfigError for a ``[setup] cache`` path that leaves the repository, EnvironmentFailure
    for a Node.js or Python version the image does not offer.
    """
    names = _top_level(workdir)

    def read(name: str) -> bytes | None:
        return read_repo_file(workdir, name) if name in names else None

    detected = detect(names, read)
    configured = _configured(project, detected)
    plan = configured if configured is not None else detected
    if offered is None:
        return plan
    chosen = choose(names, read, offered)
    if not chosen.choices:
        return plan
    return msgspec.structs.replace(plan, env=with_path(plan.env, chosen, SYSTEM_PATH),
                                   toolchain=chosen.choices)


def detect(names: Sequence[str] | set[str], read: Reader) -> SetupPlan:
    """The setup detected from top-level file ``names`` (``read`` gives their bytes)."""
    present = set(names)
    node = _node(present, read)
    python = _python(present, read)
    if node is None and python is None:
        return NO_SETUP
    if node is not None and python is not None:
        return SetupPlan(
            tool=f"{node.tool}+{python.tool}",
            commands=[*node.commands, *python.commands],
            cache_paths=[*node.cache_paths, *python.cache_paths],
            manifests=sorted({*node.manifests, *python.manifests}),
            env=dict(VENV_ENV),
        )
    plan = node or python
    assert plan is not None
    return plan


# ---------------------------------------------------------------------------------- node
def _node(present: set[str], read: Reader) -> SetupPlan | None:
    if "package.json" not in present:
        return None
    lockfiles = {
        "package-lock.json": ("npm", "npm ci --no-audit --no-fund"),
        "npm-shrinkwrap.json": ("npm", "npm ci --no-audit --no-fund"),
        "pnpm-lock.yaml": ("pnpm", "corepack pnpm install --frozen-lockfile"),
        "yarn.lock": ("yarn", "corepack yarn install --frozen-lockfile"),
    }
    for lockfile, (tool, command) in lockfiles.items():
        if lockfile in present:
            return SetupPlan(
                tool=tool,
                commands=[command],
                cache_paths=[NODE_MODULES],
                manifests=sorted({"package.json", lockfile, *(present & {".npmrc"})}),
                env=dict(NODE_ENV),
            )
    if not _has_node_dependencies(read("package.json")):
        return None
    return SetupPlan(
        tool="npm",
        commands=["npm install --no-audit --no-fund --no-package-lock"],
        cache_paths=[NODE_MODULES],
        manifests=sorted({"package.json", *(present & {".npmrc"})}),
        env=dict(NODE_ENV),
    )


def _has_node_dependencies(raw: bytes | None) -> bool:
    try:
        data = json.loads((raw or b"{}").decode("utf-8"))
    except (ValueError, RecursionError):
        return True  # let npm say what is wrong with it
    if not isinstance(data, dict):
        return True
    return any(data.get(k) for k in ("dependencies", "devDependencies", "optionalDependencies"))


# -------------------------------------------------------------------------------- python
def _python(present: set[str], read: Reader) -> SetupPlan | None:
    if "uv.lock" in present:
        return _venv_plan("uv", [
            f"{PIP} uv",
            (f"UV_PROJECT_ENVIRONMENT={VENV} {VENV}/bin/uv sync --frozen --all-extras "
             f"--python {VENV}/bin/python"),
        ], present & {"uv.lock", "pyproject.toml"})
    if "poetry.lock" in present:
        return _venv_plan("poetry", [
            f"{PIP} poetry",
            (f"VIRTUAL_ENV=/workspace/{VENV} POETRY_VIRTUALENVS_CREATE=false "
             f"{VENV}/bin/poetry install --no-interaction --all-extras"),
        ], present & {"poetry.lock", "pyproject.toml"})
    requirements = sorted(
        n for n in present
        if n.startswith("requirements") and n.endswith(".txt") and _has_content(read(n))
    )[:MAX_REQUIREMENT_FILES]
    package = _python_package(present, read)
    commands: list[str] = []
    if requirements:
        commands.append(f"{PIP} " + " ".join(f"-r {shlex.quote(r)}" for r in requirements))
    if package is not None:
        commands.append(f"{PIP} -e {shlex.quote(package)}")
    if not commands:
        return None
    manifests = {*requirements, *(present & {"pyproject.toml", "setup.py", "setup.cfg"})}
    return _venv_plan("pip", commands, manifests)


def _venv_plan(tool: str, commands: list[str], manifests: set[str]) -> SetupPlan:
    return SetupPlan(
        tool=tool,
        commands=[MAKE_VENV, *commands],
        cache_paths=[VENV],
        manifests=sorted(manifests),
        env=dict(VENV_ENV),
    )


def _python_package(present: set[str], read: Reader) -> str | None:
    """``.`` or ``.[extras]`` when the project is an installable package with something to
    install; None when it declares nothing (a bare ``[project]`` name, tool settings)."""
    if "pyproject.toml" in present:
        try:
            data = tomllib.loads((read("pyproject.toml") or b"").decode("utf-8"))
        except (ValueError, RecursionError):
            return "."  # pip will explain what is wrong with it
        project = data.get("project") if isinstance(data.get("project"), dict) else {}
        assert isinstance(project, dict)
        optional = project.get("optional-dependencies")
        extras = [e for e in TEST_EXTRAS if isinstance(optional, dict) and optional.get(e)]
        wanted = bool(project.get("dependencies")) or bool(extras) or "build-system" in data
        if not wanted and "setup.py" not in present:
            return None
        return f".[{','.join(extras)}]" if extras else "."
    if "setup.py" in present:
        return "."
    return None


def _has_content(raw: bytes | None) -> bool:
    text = (raw or b"").decode("utf-8", errors="replace")
    return any(line.strip() and not line.lstrip().startswith("#") for line in text.splitlines())


# ------------------------------------------------------------------------------ configured
def _configured(project: ProjectFile | None, detected: SetupPlan) -> SetupPlan | None:
    """The plan ``.devteam.toml`` gives, or None when it leaves setup to detection."""
    if project is None:
        return None
    cache = _cache_paths(project.setup.cache) if project.setup.cache is not None else None
    if project.commands.setup is None:
        return None
    setup = project.commands.setup
    commands = [setup] if isinstance(setup, str) else list(setup)
    if cache is None:
        cache = list(detected.cache_paths)
    env = dict(VENV_ENV if VENV in cache else NODE_ENV if NODE_MODULES in cache else {})
    return SetupPlan(
        tool="custom",
        commands=[c for c in commands if c.strip()],
        cache_paths=cache,
        manifests=detected.manifests,
        env=env,
    )


def _cache_paths(paths: Sequence[str]) -> list[str]:
    """``[setup] cache`` normalised: each a directory at the top of the repository (where
    the cache is mounted); ConfigError for anything else."""
    out: list[str] = []
    for path in paths:
        pure = PurePosixPath(path)
        if (not path or pure.is_absolute() or ".." in pure.parts or "\0" in path
                or len(pure.parts) != 1 or pure.parts[0] in (".", ".git")):
            raise ConfigError(
                f".devteam.toml: setup.cache must name top-level directories of the "
                f"repository, not {path!r}", details={"key": "setup.cache"})
        if pure.parts[0] not in out:
            out.append(pure.parts[0])
    return out


def _top_level(workdir: Path) -> set[str]:
    """The names at the top of ``workdir`` that are UTF-8 (see the module docstring)."""
    try:
        return {p.name for p in workdir.iterdir() if _is_utf8(p.name)}
    except OSError:
        return set()


def _is_utf8(name: str) -> bool:
    """False for a name read from bytes that are not UTF-8 (surrogate-escaped)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
