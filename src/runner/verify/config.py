"""Per-project verification config: ``.devteam.toml`` in the repository, plus detected defaults.

::

    [commands]
    setup = ["pip install -e ."]          # string or list, run first, in order
    test = "python3 -m coverage run -m pytest -q"
    coverage = "python3 -m coverage json -q -o .devteam-coverage.json"
    typecheck = "mypy --strict ."
    build = ["python3 -m compileall -q src"]
    [reports]
    coverage = ".devteam-coverage.json"   # coverage.py JSON or Istanbul json-summary
    [criteria]                            # applied to every task (a task's own win)
    "test.coverage" = "≥80%"
    [limits]
    timeout_seconds = 600                 # per command
    network = false

Fields left out are filled from what the repository looks like (Python: pyproject.toml,
setup.py or a tests directory; Node: package.json). A ``[criteria]`` table replaces the
default criteria (``test.pass`` when there is a test command). Unknown keys, wrong types and
unreadable requirements are ``config`` errors that name the key.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Annotated

import msgspec

from runner.errors import ConfigError
from runner.verify.evaluate import parse_requirements

CONFIG_FILE = ".devteam.toml"
PY_COVERAGE_REPORT = ".devteam-coverage.json"
NODE_COVERAGE_REPORT = "coverage/coverage-summary.json"

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


class ProjectFile(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """``.devteam.toml`` as written (every field optional)."""

    commands: _CommandsTable = msgspec.field(default_factory=_CommandsTable)
    reports: _ReportsTable = msgspec.field(default_factory=_ReportsTable)
    criteria: dict[str, str] | None = None
    limits: _LimitsTable = msgspec.field(default_factory=_LimitsTable)


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
    network: bool = False


def parse_project_file(data: str | bytes, source: str = CONFIG_FILE) -> ProjectFile:
    """Parse and validate ``.devteam.toml`` text; ConfigError names the offending key."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        parsed = msgspec.convert(tomllib.loads(text), ProjectFile)
    except UnicodeDecodeError:
        raise ConfigError(f"{source} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source} is not valid TOML: {exc}") from None
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {exc}", details={"file": source}) from None
    try:
        parse_requirements(parsed.criteria or {})
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc.message}", details={"file": source, **exc.details}
                          ) from None
    return parsed


def load_project_config(workdir: Path) -> ProjectConfig:
    """The project's config: ``.devteam.toml`` (if any) over defaults detected in ``workdir``."""
    path = workdir / CONFIG_FILE
    file = parse_project_file(path.read_bytes()) if path.is_file() else ProjectFile()
    network = bool(file.limits.network)
    base = detect_defaults(workdir, network=network)
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
        network=network,
    )


def detect_defaults(workdir: Path, *, network: bool = False) -> ProjectConfig:
    """Commands guessed from the repository's files.

    Python: pytest under coverage.py, a JSON coverage report, ``mypy --strict``. Node:
    ``npm test`` (when package.json has a test script), Istanbul's json-summary, ``tsc``;
    ``npm ci`` only when node_modules is absent and the sandbox has network.
    """
    package = workdir / "package.json"
    if package.is_file():
        scripts = _npm_scripts(package)
        needs_install = not (workdir / "node_modules").exists() and network
        return ProjectConfig(
            kind="node",
            setup=["npm ci"] if needs_install else [],
            test="npm test" if "test" in scripts else None,
            coverage_report=NODE_COVERAGE_REPORT,
            typecheck="npx tsc --noEmit",
            build=["npm run build"] if "build" in scripts else [],
        )
    markers = ("pyproject.toml", "setup.py", "setup.cfg")
    if any((workdir / m).is_file() for m in markers) or (workdir / "tests").is_dir():
        return ProjectConfig(
            kind="python",
            test="python3 -m coverage run -m pytest -q",
            coverage=f"python3 -m coverage json -q -o {PY_COVERAGE_REPORT}",
            coverage_report=PY_COVERAGE_REPORT,
            typecheck="mypy --strict .",
        )
    return ProjectConfig()


def _as_list(value: Commands | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _npm_scripts(package: Path) -> dict[str, str]:
    try:
        data = json.loads(package.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ConfigError("package.json is not valid JSON") from None
    scripts = data.get("scripts") if isinstance(data, dict) else None
    if not isinstance(scripts, dict):
        return {}
    default_test = "echo \"Error: no test specified\" && exit 1"
    return {k: v for k, v in scripts.items()
            if isinstance(v, str) and not (k == "test" and v == default_test)}
