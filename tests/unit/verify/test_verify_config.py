"""The per-project .devteam.toml and the defaults detected from a repository's files."""

from __future__ import annotations

import json
import keyword
import shlex
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.errors import Classification, ConfigError
from runner.verify.config import (
    MAX_CACHE_PATHS,
    coverage_sources,
    load_project_config,
    parse_project_file,
)

FULL = """
[commands]
setup = "pip install -e ."
test = "pytest -q"
coverage = "coverage json -o cov.json"
typecheck = "mypy --strict src"
build = ["python -m compileall -q src", "python -m build --no-isolation"]

[reports]
coverage = "cov.json"

[criteria]
"test.coverage" = "≥85%"
"type.strict" = "0 errors"

[limits]
timeout_seconds = 300
"""


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_given_a_full_config_then_every_value_is_used(tmp_path):
    config = load_project_config(write(tmp_path, {".devteam.toml": FULL, "pyproject.toml": ""}))

    assert config.kind == "python"
    assert config.setup == ["pip install -e ."]
    assert config.test == "pytest -q"
    assert config.coverage == "coverage json -o cov.json"
    assert config.coverage_report == "cov.json"
    assert config.typecheck == "mypy --strict src"
    assert config.build == ["python -m compileall -q src", "python -m build --no-isolation"]
    assert config.criteria == {"test.coverage": "≥85%", "type.strict": "0 errors"}
    assert config.timeout_seconds == 300


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[commands]\ntset = 'pytest'\n", "tset"),
        ("[comands]\ntest = 'pytest'\n", "comands"),
        ("[limits]\ntimeout = 5\n", "timeout"),
        ("[limits]\ntimeout_seconds = 'soon'\n", "timeout_seconds"),
        ("[limits]\ntimeout_seconds = 0\n", "timeout_seconds"),
        ("[commands]\nbuild = 3\n", "build"),
        ("[criteria]\n'test.coverage' = 'lots'\n", "lots"),
        ("[criteria]\n'doc.updated' = '80%'\n", "doc.updated"),
        ("[commands\ntest = 'x'\n", "not valid TOML"),
    ],
)
def test_given_a_malformed_config_then_a_config_error_names_the_key(tmp_path, text, named):
    write(tmp_path, {".devteam.toml": text})

    with pytest.raises(ConfigError) as caught:
        load_project_config(tmp_path)

    assert caught.value.classification is Classification.CONFIG
    assert named in caught.value.message
    assert ".devteam.toml" in caught.value.message


def test_given_a_python_repository_without_config_then_pytest_coverage_and_mypy_are_used(
    tmp_path,
):
    config = load_project_config(write(tmp_path, {"tests/test_x.py": "", "app.py": ""}))

    assert config.kind == "python"
    # the project's own code is measured, never the interpreter's or a venv's packages
    assert config.test == "python3 -m coverage run --source=app -m pytest -q"
    assert config.coverage == "python3 -m coverage json -q -o .devteam-coverage.json"
    assert config.coverage_report == ".devteam-coverage.json"
    assert config.typecheck == "mypy --strict ."
    assert config.setup == []
    assert config.criteria == {"test.pass": "pass"}


def test_given_a_node_repository_then_npm_test_istanbul_and_tsc_are_used(tmp_path):
    package = {"scripts": {"test": "jest --coverage", "build": "tsc -p ."}}
    config = load_project_config(write(tmp_path, {"package.json": json.dumps(package)}))

    assert config.kind == "node"
    assert config.test == "npm test"
    assert config.coverage is None
    assert config.coverage_report == "coverage/coverage-summary.json"
    assert config.typecheck == "npx tsc --noEmit"
    assert config.build == ["npm run build"]
    assert config.setup == []  # installing is the SETUP stage's, not verification's


def test_given_limits_network_then_a_config_error_says_verification_is_offline(tmp_path):
    write(
        tmp_path,
        {
            "package.json": '{"scripts": {"test": "jest"}}',
            ".devteam.toml": "[limits]\nnetwork = true\n",
        },
    )

    with pytest.raises(ConfigError) as raised:
        load_project_config(tmp_path)

    assert "limits.network" in raised.value.message
    assert "setup stage" in raised.value.message
    assert raised.value.details["key"] == "limits.network"


def test_given_limits_network_false_then_it_is_accepted(tmp_path):
    write(tmp_path, {"pyproject.toml": "", ".devteam.toml": "[limits]\nnetwork = false\n"})

    assert load_project_config(tmp_path).kind == "python"


def test_given_npm_init_default_test_script_then_there_is_no_test_command(tmp_path):
    package = {"scripts": {"test": 'echo "Error: no test specified" && exit 1'}}
    config = load_project_config(write(tmp_path, {"package.json": json.dumps(package)}))

    assert config.test is None
    assert config.criteria == {}


def test_given_an_unknown_repository_then_nothing_is_guessed(tmp_path):
    config = load_project_config(write(tmp_path, {"main.go": "package main\n"}))

    assert config.kind == "unknown"
    assert config.test is None
    assert config.criteria == {}


def test_given_a_partial_config_then_detected_defaults_fill_the_rest(tmp_path):
    config = load_project_config(
        write(
            tmp_path,
            {
                "pyproject.toml": "",
                ".devteam.toml": "[commands]\ntypecheck = 'pyright'\n",
            },
        )
    )

    assert config.typecheck == "pyright"
    assert config.test == "python3 -m coverage run -m pytest -q"
    assert config.criteria == {"test.pass": "pass"}


def test_given_a_criteria_table_then_it_replaces_the_default_criteria(tmp_path):
    config = load_project_config(
        write(
            tmp_path,
            {
                "pyproject.toml": "",
                ".devteam.toml": "[criteria]\n'test.coverage' = '70%'\n",
            },
        )
    )

    assert config.criteria == {"test.coverage": "70%"}


def test_parse_project_file_accepts_bytes_and_rejects_non_utf8():
    assert parse_project_file(b"[commands]\ntest = 'make test'\n").commands.test == "make test"
    with pytest.raises(ConfigError, match="UTF-8"):
        parse_project_file(b"\xff\xfe[commands]")


@pytest.mark.parametrize(("files", "sources"), [
    ({"src/calc/__init__.py": "", "tests/test_x.py": "", "pyproject.toml": ""}, ["src"]),
    ({"pkg/__init__.py": "", "tool.py": "", "setup.py": "", "conftest.py": "",
      "test_tool.py": "", "tests/__init__.py": "", "docs/__init__.py": "",
      ".venv/x/__init__.py": "", "notes/readme.txt": ""}, ["pkg", "tool"]),
    ({"pkg/__init__.py": "", "pyproject.toml": "[tool.coverage.run]\nsource = ['pkg']\n"}, []),
    ({"pkg/__init__.py": "", "setup.py": "", ".coveragerc": "[run]\nsource = pkg\n"}, []),
    ({"tests/test_x.py": "", "pyproject.toml": ""}, []),
])
def test_given_a_python_layout_then_coverage_measures_the_project_s_own_sources(
    tmp_path, files, sources
):
    write(tmp_path, files)

    assert coverage_sources(tmp_path) == sources
    source = f"--source={','.join(sources)} " if sources else ""
    assert load_project_config(tmp_path).test == f"python3 -m coverage run {source}-m pytest -q"


INJECTED = "x;echo 999 passed in 0.01s;exit 0;#.egg-info"


def test_given_a_directory_whose_name_is_shell_syntax_then_the_test_command_runs_pytest_only(
    tmp_path,
):
    # what the audit found: an ignored `*.egg-info` directory the model made (with an
    # __init__.py, so it looks like a package) became part of the test command
    write(tmp_path, {"pyproject.toml": "[project]\nname = 'calc'\n", "calc/__init__.py": "",
                     "tests/test_calc.py": "", f"{INJECTED}/__init__.py": "",
                     "x;exit 0;#.py": "", "$(touch pwned).py": ""})

    config = load_project_config(tmp_path)

    assert coverage_sources(tmp_path) == ["calc"]
    assert config.test is not None
    assert shlex.split(config.test) == [
        "python3", "-m", "coverage", "run", "--source=calc", "-m", "pytest", "-q"]
    assert "999" not in config.test


@pytest.mark.parametrize("name", ["class", "None", "my-pkg", "pkg.egg-info", "2fast", "a b"])
def test_given_a_package_directory_that_cannot_be_imported_then_it_is_no_coverage_source(
    tmp_path, name
):
    write(tmp_path, {"setup.py": "", "calc/__init__.py": "", f"{name}/__init__.py": ""})

    assert coverage_sources(tmp_path) == ["calc"]


_NAMES = st.text(st.characters(blacklist_characters="/\0", blacklist_categories=("Cs",)),
                 min_size=1, max_size=40).filter(lambda n: n not in (".", ".."))


@settings(max_examples=300, deadline=None)
@given(names=st.lists(_NAMES, min_size=1, max_size=3, unique=True), as_module=st.booleans())
def test_whatever_a_directory_or_module_is_named_the_test_command_is_the_same_argv(
    names, as_module
):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "setup.py").write_text("")
        made = []
        for name in names:
            try:
                if as_module:
                    (root / f"{name}.py").write_text("")
                else:
                    (root / name).mkdir()
                    (root / name / "__init__.py").write_text("")
            except OSError:  # a name this filesystem cannot hold
                continue
            made.append(name)

        sources = coverage_sources(root)
        test = load_project_config(root).test

    assert all(s.isidentifier() and not keyword.iskeyword(s) for s in sources)
    assert set(sources) <= {Path(n).stem if as_module else n for n in made}
    assert test is not None
    expected = ["--source=" + ",".join(sources)] if sources else []
    assert shlex.split(test) == ["python3", "-m", "coverage", "run", *expected,
                                 "-m", "pytest", "-q"]


def test_given_setup_cache_over_the_limit_then_a_config_error_names_the_limit():
    paths = ",".join(f'"c{i}"' for i in range(60_000))

    with pytest.raises(ConfigError) as caught:
        parse_project_file(f'[commands]\nsetup = "true"\n[setup]\ncache = [{paths}]\n')

    assert caught.value.classification is Classification.CONFIG
    assert f"at most {MAX_CACHE_PATHS}" in caught.value.message
    assert "setup.cache" in caught.value.message
    assert caught.value.details["limit"] == MAX_CACHE_PATHS


def test_given_setup_cache_at_the_limit_then_it_is_accepted():
    paths = ",".join(f'"c{i}"' for i in range(MAX_CACHE_PATHS))

    project = parse_project_file(f"[setup]\ncache = [{paths}]\n")

    assert project.setup.cache is not None
    assert len(project.setup.cache) == MAX_CACHE_PATHS
