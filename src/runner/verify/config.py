"""Per-project verification config: ``.devteam.toml`` in the repository, plus detected defaults.

::

    [commands]
    setup = ["pip install -e ."]          # string or list: the SETUP stage's commands
    test = "python3 -m coverage run -m pytest -q"
    coverage = "python3 -m coverage json -q -o .devteam-coverage.json"
    typecheck = "mypy --strict ."
    build = ["python3 -m compileall -q src"]
    [reports]
    coverage = ".devteam-coverage.json"   # coverage.py JSON or Istanbul json-summary
    [setup]
    cache = [".venv"]                     # what setup makes that later commands need
    [criteria]                            # applied to every task (a task's own win)
    "test.coverage" = "≥80%"
    [limits]
    timeout_seconds = 600                 # per command; only lowers the operator's limit

Fields left out are filled from what the repository looks like (Python: pyproject.toml,
setup.py or a tests directory; Node: package.json). A ``[criteria]`` table replaces the
default criteria (``test.pass`` when there is a test command). Unknown keys, wrong types and
unreadable requirements are ``config`` errors that name the key. Verification always runs
without network: dependencies come from the SETUP stage (``runner.setup``), so
``[limits] network = true`` is a ``config`` error that says so rather than being ignored.

These files come from the customer's repository and are read on the host, so they are
read as untrusted input: only regular files (a symbolic link could point anywhere on the
host, ``/dev/zero`` included), at most ``MAX_FILE_BYTES``, nesting that would exhaust the
parser's recursion is a ``config`` error, report paths must stay inside the repository,
and ``[setup] cache`` names at most ``MAX_CACHE_PATHS`` directories.
"""

from __future__ import annotations

import json
import keyword
import os
import shlex
import stat
import tomllib
from pathlib import Path, PurePosixPath
from typing import Annotated

import msgspec

from runner.errors import ConfigError
from runner.settings import get_settings
from runner.verify.evaluate import parse_requirements

CONFIG_FILE = ".devteam.toml"
PY_COVERAGE_REPORT = ".devteam-coverage.json"
NODE_COVERAGE_REPORT = "coverage/coverage-summary.json"
MAX_FILE_BYTES = 1024 * 1024
"""``.devteam.toml`` and ``package.json`` larger than this are refused (``config``)."""
MAX_CACHE_PATHS = 16
"""``[setup] cache`` names at most this many directories: each is a Docker volume of its
own, made and measured on every setup (a real project keeps one or two)."""

Commands = str | list[str]


class _CommandsTable(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    setup: Commands | None = None
    test: str | None = None
    coverage: str | None = None
    typecheck: str | None = None
    build: Commands | None = None


class _ReportsTable(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    coverage: str | None = None


class _LimitsTable(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    timeout_seconds: Annotated[int, msgspec.Meta(gt=0, le=86_400)] | None = None
    network: bool | None = None


class _SetupTable(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    cache: list[Annotated[str, msgspec.Meta(max_length=255)]] | None = None


class _ProtectTable(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    paths: Annotated[list[Annotated[str, msgspec.Meta(min_length=1, max_length=200)]],
                     msgspec.Meta(max_length=100)] = msgspec.field(default_factory=list)


class ProjectFile(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """``.devteam.toml`` as written (every field optional)."""

    commands: _CommandsTable = msgspec.field(default_factory=_CommandsTable)
    setup: _SetupTable = msgspec.field(default_factory=_SetupTable)
    reports: _ReportsTable = msgspec.field(default_factory=_ReportsTable)
    criteria: dict[str, str] | None = None
    limits: _LimitsTable = msgspec.field(default_factory=_LimitsTable)
    protect: _ProtectTable = msgspec.field(default_factory=_ProtectTable)


class ProjectConfig(msgspec.Struct, frozen=True, kw_only=True):
    """The commands and defaults verification runs with (file values over detected ones)."""

    kind: str = "unknown"
    """``python``, ``node`` or ``unknown`` (what the repository looks like)."""
    setup: list[str] = msgspec.field(default_factory=list)
    test: str | None = None
    coverage: str | None = None
    coverage_report: str | None = None
    typecheck: str | None = None
    """Run only when a task asks for ``type.strict``."""
    build: list[str] = msgspec.field(default_factory=list)
    """Run only when a task asks for ``build``."""
    criteria: dict[str, str] = msgspec.field(default_factory=dict)
    timeout_seconds: int | None = None
    protected: list[str] = msgspec.field(default_factory=list)
    """``[protect] paths``: what no task may change, besides the operator's list."""


def parse_project_file(data: str | bytes, source: str = CONFIG_FILE) -> ProjectFile:
    """Parse and validate ``.devteam.toml`` text; ConfigError names the offending key."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        parsed = msgspec.convert(tomllib.loads(text), ProjectFile)
    except UnicodeDecodeError:
        raise ConfigError(f"{source} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source} is not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{source} is nested too deeply", details={"file": source}) from None
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {exc}", details={"file": source}) from None
    _check_command_count(parsed.commands, source)
    _check_cache_count(parsed.setup, source)
    if parsed.limits.network:
        raise ConfigError(
            f"{source}: limits.network is not supported: verification runs without network, "
            "and dependencies are installed before it by the setup stage through the egress "
            "allowlist (remove the key; see the README, 'Your own repository')",
            details={"file": source, "key": "limits.network"},
        )
    if parsed.reports.coverage is not None and not _inside(parsed.reports.coverage):
        raise ConfigError(
            f"{source}: reports.coverage must be a relative path inside the repository, "
            f"not {parsed.reports.coverage!r}",
            details={"file": source, "key": "reports.coverage"},
        )
    try:
        parse_requirements(parsed.criteria or {})
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc.message}", details={"file": source, **exc.details}
                          ) from None
    return parsed


def _check_command_count(commands: _CommandsTable, source: str) -> None:
    """More commands than ``DEVTEAM_LIMITS_MAX_COMMANDS`` is a ``config`` error naming the
    limit (each command runs, streams and is recorded: the list bounds all of that)."""
    limit = get_settings().limits.max_commands
    listed = sum(len(_as_list(value)) for value in (
        commands.setup, commands.test, commands.coverage, commands.typecheck, commands.build))
    if listed > limit:
        raise ConfigError(
            f"{source} lists {listed} commands; at most {limit} are allowed "
            "(DEVTEAM_LIMITS_MAX_COMMANDS, [commands] tables together)",
            details={"file": source, "key": "commands", "commands": listed, "limit": limit},
        )


def _check_cache_count(setup: _SetupTable, source: str) -> None:
    """More ``[setup] cache`` paths than ``MAX_CACHE_PATHS`` is a ``config`` error naming
    the limit (each path becomes a Docker volume for every setup of the project)."""
    listed = len(setup.cache or ())
    if listed > MAX_CACHE_PATHS:
        raise ConfigError(
            f"{source}: setup.cache lists {listed} paths; at most {MAX_CACHE_PATHS} are "
            "allowed (each is a volume of its own)",
            details={"file": source, "key": "setup.cache", "paths": listed,
                     "limit": MAX_CACHE_PATHS},
        )


def load_project_config(workdir: Path) -> ProjectConfig:
    """The project's config: ``.devteam.toml`` (if any) over defaults detected in ``workdir``."""
    data = read_repo_file(workdir, CONFIG_FILE)
    file = parse_project_file(data) if data is not None else ProjectFile()
    base = detect_defaults(workdir)
    cmds = file.commands
    return ProjectConfig(
        kind=base.kind,
        setup=_as_list(cmds.setup) if cmds.setup is not None else base.setup,
        test=cmds.test if cmds.test is not None else base.test,
        coverage=cmds.coverage if cmds.coverage is not None else base.coverage,
        coverage_report=file.reports.coverage or base.coverage_report,
        typecheck=cmds.typecheck if cmds.typecheck is not None else base.typecheck,
        build=_as_list(cmds.build) if cmds.build is not None else base.build,
        criteria=(dict(file.criteria) if file.criteria is not None
                  else ({"test.pass": "pass"} if (cmds.test or base.test) else {})),
        timeout_seconds=file.limits.timeout_seconds,
        protected=list(file.protect.paths),
    )


def detect_defaults(workdir: Path) -> ProjectConfig:
    """Commands guessed from the repository's files.

    Python: pytest under coverage.py, a JSON coverage report, ``mypy --strict``. Node:
    ``npm test`` (when package.json has a test script), Istanbul's json-summary, ``tsc``.
    Installing dependencies is the SETUP stage's (``runner.setup.detect``), not this.

    The only repository-derived words in these commands are the coverage sources, which
    are Python identifiers (see ``coverage_sources``) and are shell-quoted besides: the
    model can create directories, and a name must never become shell syntax.
    """
    package = workdir / "package.json"
    if package.is_file():
        scripts = _npm_scripts(package)
        return ProjectConfig(
            kind="node",
            test="npm test" if "test" in scripts else None,
            coverage_report=NODE_COVERAGE_REPORT,
            typecheck="npx tsc --noEmit",
            build=["npm run build"] if "build" in scripts else [],
        )
    markers = ("pyproject.toml", "setup.py", "setup.cfg")
    if any((workdir / m).is_file() for m in markers) or (workdir / "tests").is_dir():
        sources = coverage_sources(workdir)
        source = f"{shlex.quote('--source=' + ','.join(sources))} " if sources else ""
        return ProjectConfig(
            kind="python",
            test=f"python3 -m coverage run {source}-m pytest -q",
            coverage=f"python3 -m coverage json -q -o {PY_COVERAGE_REPORT}",
            coverage_report=PY_COVERAGE_REPORT,
            typecheck="mypy --strict .",
        )
    return ProjectConfig()


NOT_SOURCES = {"tests", "test", "testing", "docs", "doc", "examples", "scripts", "benchmarks",
               "bench", "build", "dist", "node_modules", "venv", "site-packages"}
NOT_SOURCE_FILES = {"setup.py", "conftest.py", "noxfile.py", "tasks.py", "manage.py"}


def coverage_sources(workdir: Path) -> list[str]:
    """What the default coverage run measures: the project's own code, never the
    interpreter's or the virtual environment's packages.

    ``src/`` when there is one (src layout); otherwise the top-level packages and modules
    (flat layout) besides tests, docs and tooling. Empty (coverage's own choice) when the
    project configures coverage itself (``.coveragerc``, ``[tool.coverage.run] source``
    or ``[coverage:run]`` in ``setup.cfg``) or nothing qualifies.

    Only names that are importable Python identifiers (not keywords) qualify: the names
    go into the test command, and a working copy may hold directories the model made and
    git ignores (``x;echo 999 passed;exit 0;#.egg-info``), which are no package anyway.
    """
    if (workdir / ".coveragerc").is_file() or _configures_coverage(workdir):
        return []
    if (workdir / "src").is_dir() and not (workdir / "src").is_symlink():
        return ["src"]
    found: list[str] = []
    try:
        entries = sorted(workdir.iterdir())
    except OSError:
        return []
    for entry in entries:
        name = entry.name
        if name.startswith((".", "_")) or entry.is_symlink() or name in NOT_SOURCES:
            continue
        package = entry.is_dir() and (entry / "__init__.py").is_file()
        module = (entry.suffix == ".py" and entry.is_file() and name not in NOT_SOURCE_FILES
                  and not name.startswith("test_") and not name.endswith("_test.py"))
        source = entry.stem if module else name  # a module's name, or a directory's
        if (package or module) and _importable(source):
            found.append(source)
    return found


def _importable(name: str) -> bool:
    """Whether ``name`` can be imported as a top-level package or module."""
    return name.isidentifier() and not keyword.iskeyword(name)


def _configures_coverage(workdir: Path) -> bool:
    for name, marker in (("pyproject.toml", b"[tool.coverage.run]"),
                         ("setup.cfg", b"[coverage:run]"), ("tox.ini", b"[coverage:run]")):
        try:
            raw = read_repo_file(workdir, name)
        except ConfigError:
            continue
        if raw is not None and marker in raw and b"source" in raw:
            return True
    return False


def read_repo_file(workdir: Path, name: str) -> bytes | None:
    """The bytes of the repository's top-level file ``name``; None when there is none.

    ConfigError when it is not a regular file (a link, a directory, a device) or larger
    than ``MAX_FILE_BYTES``: nothing outside the working copy is ever read through it.
    """
    path = workdir / name
    try:
        info = path.lstat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"{name} cannot be read: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{name} must be a regular file, not a link or special file",
                          details={"file": name})
    if info.st_size > MAX_FILE_BYTES:
        raise ConfigError(f"{name} is larger than {MAX_FILE_BYTES} bytes", details={"file": name})
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise ConfigError(f"{name} cannot be read: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(f"{name} is larger than {MAX_FILE_BYTES} bytes", details={"file": name})
    return data


def _inside(path: str) -> bool:
    """Whether ``path`` is relative and cannot climb out of the repository."""
    pure = PurePosixPath(path)
    return bool(path) and not pure.is_absolute() and ".." not in pure.parts and "\0" not in path


def _as_list(value: Commands | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _npm_scripts(package: Path) -> dict[str, str]:
    raw = read_repo_file(package.parent, package.name) or b""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        raise ConfigError("package.json is not valid JSON") from None
    scripts = data.get("scripts") if isinstance(data, dict) else None
    if not isinstance(scripts, dict):
        return {}
    default_test = "echo \"Error: no test specified\" && exit 1"
    return {k: v for k, v in scripts.items()
            if isinstance(v, str) and not (k == "test" and v == default_test)}
