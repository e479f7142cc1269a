"""The per-project .devteam.toml and the defaults detected from a repository's files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.errors import Classification, ConfigError
from runner.verify.config import coverage_sources, load_project_config, parse_project_file

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
