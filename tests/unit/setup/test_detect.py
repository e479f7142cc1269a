"""What a repository needs installed before its checks run: ``detect`` and ``plan_setup``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from devtools.demo.sample import DEVTEAM_TOML, INITIAL
from runner.errors import Classification, ConfigError
from runner.setup import NO_SETUP, SetupPlan, detect, plan_setup
from runner.verify.config import MAX_FILE_BYTES, parse_project_file

VENV = "python3 -m venv --system-site-packages .venv"
PIP = ".venv/bin/python -m pip install --no-input --progress-bar off"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NODE_PATH = f"/workspace/node_modules/.bin:{SYSTEM_PATH}"
VENV_PATH = f"/workspace/.venv/bin:/workspace/node_modules/.bin:{SYSTEM_PATH}"
WITH_DEPS = json.dumps({"name": "app", "dependencies": {"left-pad": "^1.3.0"}})
NO_DEPS = json.dumps({"name": "app", "scripts": {"test": "node test.js"}})


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def plan_of(files: dict[str, str]) -> SetupPlan:
    """``detect`` over in-memory top-level files (what ``plan_setup`` does over a directory)."""

    def read(name: str) -> bytes | None:
        return files[name].encode() if name in files else None

    return detect(set(files), read)


# --------------------------------------------------------------------------- node rows
@pytest.mark.parametrize(
    ("lockfile", "tool", "command"),
    [
        ("package-lock.json", "npm", "npm ci --no-audit --no-fund"),
        ("npm-shrinkwrap.json", "npm", "npm ci --no-audit --no-fund"),
        ("pnpm-lock.yaml", "pnpm", "corepack pnpm install --frozen-lockfile"),
        ("yarn.lock", "yarn", "corepack yarn install --frozen-lockfile"),
    ],
)
def test_given_package_json_and_a_lockfile_when_detected_then_the_lockfile_installer_runs(
    lockfile, tool, command
):
    plan = plan_of({"package.json": WITH_DEPS, lockfile: "{}"})

    assert plan.tool == tool
    assert plan.commands == [command]
    assert plan.cache_paths == ["node_modules"]
    assert plan.manifests == sorted(["package.json", lockfile])
    assert plan.env == {"PATH": NODE_PATH}
    assert plan.needed


def test_given_an_npmrc_when_detected_then_it_keys_the_cache_with_the_lockfile():
    plan = plan_of({"package.json": WITH_DEPS, "package-lock.json": "{}", ".npmrc": "x=1\n"})

    assert plan.manifests == [".npmrc", "package-lock.json", "package.json"]


def test_given_package_json_with_dependencies_and_no_lockfile_then_npm_install_runs():
    plan = plan_of({"package.json": WITH_DEPS, ".npmrc": "registry=https://r.example/\n"})

    assert plan.tool == "npm"
    assert plan.commands == ["npm install --no-audit --no-fund --no-package-lock"]
    assert plan.cache_paths == ["node_modules"]
    assert plan.manifests == [".npmrc", "package.json"]
    assert plan.env["PATH"].startswith("/workspace/node_modules/.bin:")


@pytest.mark.parametrize("key", ["dependencies", "devDependencies", "optionalDependencies"])
def test_given_any_kind_of_node_dependency_when_detected_then_setup_is_needed(key):
    plan = plan_of({"package.json": json.dumps({"name": "app", key: {"jest": "29"}})})

    assert plan.commands == ["npm install --no-audit --no-fund --no-package-lock"]


@pytest.mark.parametrize(
    "package", [NO_DEPS, json.dumps({"name": "app", "dependencies": {}}), "{}"]
)
def test_given_package_json_without_dependencies_when_detected_then_no_setup(package):
    assert plan_of({"package.json": package}) == NO_SETUP


def test_given_a_lockfile_without_package_json_when_detected_then_no_node_setup():
    assert plan_of({"yarn.lock": "", "package-lock.json": "{}"}) == NO_SETUP


# ------------------------------------------------------------------------- python rows
def test_given_uv_lock_when_detected_then_uv_syncs_into_the_venv():
    plan = plan_of({"uv.lock": "version = 1\n", "pyproject.toml": "[project]\nname = 'a'\n"})

    assert plan.tool == "uv"
    assert plan.commands == [
        VENV,
        f"{PIP} uv",
        ("UV_PROJECT_ENVIRONMENT=.venv .venv/bin/uv sync --frozen --all-extras "
         "--python .venv/bin/python"),
    ]
    assert plan.cache_paths == [".venv"]
    assert plan.manifests == ["pyproject.toml", "uv.lock"]


def test_given_poetry_lock_when_detected_then_poetry_installs_into_the_venv():
    plan = plan_of({"poetry.lock": "", "pyproject.toml": "[tool.poetry]\nname = 'a'\n"})

    assert plan.tool == "poetry"
    assert plan.commands[0] == VENV
    assert plan.commands[1] == f"{PIP} poetry"
    assert "POETRY_VIRTUALENVS_CREATE=false" in plan.commands[2]
    assert ".venv/bin/poetry install --no-interaction --all-extras" in plan.commands[2]
    assert plan.cache_paths == [".venv"]
    assert plan.manifests == ["poetry.lock", "pyproject.toml"]


def test_given_python_setup_then_the_venv_comes_first_on_path():
    plan = plan_of({"requirements.txt": "requests\n"})

    assert plan.env == {"VIRTUAL_ENV": "/workspace/.venv", "PATH": VENV_PATH}
    assert plan.env["PATH"].split(":")[0] == "/workspace/.venv/bin"


def test_given_several_requirement_files_then_they_are_installed_sorted_in_one_command():
    plan = plan_of({
        "requirements.txt": "requests==2.32.3\n",
        "requirements-dev.txt": "pytest\n",
        "requirements-test.txt": "# only a comment\n\n   # and another\n",
        "requirements.in": "requests\n",
    })

    assert plan.tool == "pip"
    assert plan.commands == [VENV, f"{PIP} -r requirements-dev.txt -r requirements.txt"]
    assert plan.cache_paths == [".venv"]
    assert plan.manifests == ["requirements-dev.txt", "requirements.txt"]


def test_given_only_comment_only_requirement_files_then_no_setup():
    assert plan_of({"requirements.txt": "# nothing yet\n", "requirements-dev.txt": ""}) == NO_SETUP


def test_given_more_than_eight_requirement_files_then_the_first_eight_are_installed():
    files = {f"requirements-{i:02d}.txt": f"pkg{i}\n" for i in range(10)}

    plan = plan_of(files)

    expected = [f"requirements-{i:02d}.txt" for i in range(8)]
    assert plan.manifests == expected
    assert plan.commands[1] == f"{PIP} " + " ".join(f"-r {n}" for n in expected)


def test_given_a_requirement_file_name_with_shell_characters_then_it_is_quoted():
    plan = plan_of({"requirements;touch x.txt": "requests\n"})

    assert plan.commands[1] == f"{PIP} -r 'requirements;touch x.txt'"


def test_given_pyproject_with_dependencies_then_the_package_is_installed_editable():
    pyproject = '[project]\nname = "a"\ndependencies = ["requests"]\n'

    plan = plan_of({"pyproject.toml": pyproject})

    assert plan.tool == "pip"
    assert plan.commands == [VENV, f"{PIP} -e ."]
    assert plan.manifests == ["pyproject.toml"]
    assert plan.cache_paths == [".venv"]


def test_given_pyproject_with_test_and_dev_extras_then_they_are_installed_too():
    pyproject = (
        '[project]\nname = "a"\n'
        "[project.optional-dependencies]\n"
        'dev = ["ruff"]\ntest = ["pytest"]\ndocs = ["sphinx"]\n'
    )

    plan = plan_of({"pyproject.toml": pyproject})

    assert plan.commands == [VENV, f"{PIP} -e '.[test,dev]'"]


def test_given_pyproject_with_an_empty_test_extra_then_it_is_not_named():
    pyproject = (
        '[project]\nname = "a"\ndependencies = ["attrs"]\n'
        "[project.optional-dependencies]\ntest = []\n"
    )

    assert plan_of({"pyproject.toml": pyproject}).commands == [VENV, f"{PIP} -e ."]


def test_given_pyproject_with_only_a_build_system_then_the_package_is_installed():
    pyproject = '[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n'

    plan = plan_of({"pyproject.toml": pyproject})

    assert plan.commands == [VENV, f"{PIP} -e ."]


@pytest.mark.parametrize(
    "pyproject",
    [
        '[project]\nname = "calc"\nversion = "0.1.0"\n',
        "[tool.ruff]\nline-length = 100\n",
        "",
        'project = "not a table"\n',
    ],
)
def test_given_pyproject_that_declares_nothing_to_install_then_no_setup(pyproject):
    assert plan_of({"pyproject.toml": pyproject}) == NO_SETUP


def test_given_a_bare_pyproject_and_setup_py_then_the_package_is_installed():
    plan = plan_of({"pyproject.toml": '[project]\nname = "a"\n', "setup.py": ""})

    assert plan.commands == [VENV, f"{PIP} -e ."]
    assert plan.manifests == ["pyproject.toml", "setup.py"]


def test_given_only_setup_py_then_the_package_is_installed():
    plan = plan_of({"setup.py": "from setuptools import setup\nsetup()\n", "setup.cfg": ""})

    assert plan.tool == "pip"
    assert plan.commands == [VENV, f"{PIP} -e ."]
    assert plan.manifests == ["setup.cfg", "setup.py"]


def test_given_requirements_and_an_installable_pyproject_then_both_are_installed():
    plan = plan_of({
        "requirements.txt": "requests\n",
        "pyproject.toml": '[project]\nname = "a"\ndependencies = ["attrs"]\n',
    })

    assert plan.commands == [VENV, f"{PIP} -r requirements.txt", f"{PIP} -e ."]
    assert plan.manifests == ["pyproject.toml", "requirements.txt"]


# ------------------------------------------------------------------------ combinations
def test_given_node_and_python_together_then_both_install_and_both_are_cached():
    plan = plan_of({
        "package.json": WITH_DEPS,
        "package-lock.json": "{}",
        "requirements.txt": "requests\n",
    })

    assert plan.tool == "npm+pip"
    assert plan.commands == [
        "npm ci --no-audit --no-fund",
        VENV,
        f"{PIP} -r requirements.txt",
    ]
    assert plan.cache_paths == ["node_modules", ".venv"]
    assert plan.manifests == ["package-lock.json", "package.json", "requirements.txt"]
    assert plan.env == {"VIRTUAL_ENV": "/workspace/.venv", "PATH": VENV_PATH}
    assert "/workspace/node_modules/.bin" in plan.env["PATH"].split(":")


@pytest.mark.parametrize(
    "files", [{}, {"README.md": "# hi\n"}, {"Makefile": "all:\n", "src/main.c": ""}]
)
def test_given_nothing_to_install_then_no_setup(files):
    plan = plan_of(files)

    assert plan == NO_SETUP
    assert not plan.needed
    assert plan.commands == []


# ------------------------------------------------------------------- plan_setup (disk)
def test_given_the_demo_sample_project_when_planned_then_it_needs_no_setup(tmp_path):
    workdir = write(tmp_path, INITIAL)

    plan = plan_setup(workdir, parse_project_file(DEVTEAM_TOML))

    assert plan == NO_SETUP
    assert not plan.needed


def test_given_a_working_copy_on_disk_then_top_level_files_are_detected(tmp_path):
    write(tmp_path, {"package.json": WITH_DEPS, "pnpm-lock.yaml": "", "sub/yarn.lock": ""})

    plan = plan_setup(tmp_path)

    assert plan.tool == "pnpm"
    assert plan.manifests == ["package.json", "pnpm-lock.yaml"]


def test_given_a_nested_manifest_only_then_no_setup(tmp_path):
    write(tmp_path, {"app/requirements.txt": "requests\n", "app/package.json": WITH_DEPS})

    assert plan_setup(tmp_path) == NO_SETUP


def test_given_a_missing_working_copy_then_no_setup(tmp_path):
    assert plan_setup(tmp_path / "gone") == NO_SETUP


# ----------------------------------------------------------------------- .devteam.toml
def test_given_a_setup_command_string_then_it_replaces_detection(tmp_path):
    write(tmp_path, {"requirements.txt": "requests\n"})
    project = parse_project_file('[commands]\nsetup = "make deps"\n')

    plan = plan_setup(tmp_path, project)

    assert plan.tool == "custom"
    assert plan.commands == ["make deps"]
    assert plan.cache_paths == [".venv"]
    assert plan.manifests == ["requirements.txt"]
    assert plan.env == {"VIRTUAL_ENV": "/workspace/.venv", "PATH": VENV_PATH}


def test_given_a_setup_command_list_then_every_non_blank_command_runs_in_order(tmp_path):
    write(tmp_path, {"package.json": WITH_DEPS, "yarn.lock": ""})
    project = parse_project_file(
        '[commands]\nsetup = ["corepack enable", "  ", "yarn install --immutable"]\n'
    )

    plan = plan_setup(tmp_path, project)

    assert plan.commands == ["corepack enable", "yarn install --immutable"]
    assert plan.cache_paths == ["node_modules"]
    assert plan.manifests == ["package.json", "yarn.lock"]
    assert plan.env == {"PATH": NODE_PATH}


def test_given_setup_cache_paths_then_they_are_what_is_kept(tmp_path):
    write(tmp_path, {"requirements.txt": "requests\n"})
    project = parse_project_file(
        '[commands]\nsetup = "./bootstrap.sh"\n[setup]\ncache = ["vendor", "deps/", "./vendor"]\n'
    )

    plan = plan_setup(tmp_path, project)

    assert plan.commands == ["./bootstrap.sh"]
    assert plan.cache_paths == ["vendor", "deps"]
    assert plan.env == {}


@pytest.mark.parametrize("paths", ['["build/deps"]', '["../../etc"]', '[".git"]', '["/abs"]'])
def test_given_setup_cache_paths_that_are_not_top_level_directories_then_config_error_even_without_setup_commands(  # noqa: E501
    tmp_path, paths
):
    project = parse_project_file(f"[setup]\ncache = {paths}\n")

    with pytest.raises(ConfigError) as raised:
        plan_setup(tmp_path, project)

    assert raised.value.details["key"] == "setup.cache"


@pytest.mark.parametrize(("cache", "first_on_path"), [
    ('[".venv/"]', "/workspace/.venv/bin"), ('["./.venv"]', "/workspace/.venv/bin"),
    ('["node_modules/"]', "/workspace/node_modules/.bin"),
])
def test_given_setup_cache_written_loosely_then_it_is_normalised_before_choosing_the_env(
    tmp_path, cache, first_on_path
):
    project = parse_project_file(f'[commands]\nsetup = "make deps"\n[setup]\ncache = {cache}\n')

    plan = plan_setup(tmp_path, project)

    assert plan.env["PATH"].split(":")[0] == first_on_path


def test_given_setup_cache_naming_the_venv_then_the_venv_env_is_set(tmp_path):
    project = parse_project_file('[commands]\nsetup = "make venv"\n[setup]\ncache = [".venv"]\n')

    plan = plan_setup(tmp_path, project)

    assert plan.cache_paths == [".venv"]
    assert plan.env["PATH"].startswith("/workspace/.venv/bin:")


def test_given_a_setup_command_in_a_repository_with_nothing_detected_then_nothing_is_cached(
    tmp_path,
):
    project = parse_project_file('[commands]\nsetup = "true"\n')

    plan = plan_setup(tmp_path, project)

    assert plan.commands == ["true"]
    assert plan.cache_paths == []
    assert plan.manifests == []


def test_given_a_project_file_without_setup_then_detection_decides(tmp_path):
    write(tmp_path, {"requirements.txt": "requests\n"})
    project = parse_project_file('[commands]\ntest = "pytest -q"\n')

    plan = plan_setup(tmp_path, project)

    assert plan.tool == "pip"
    assert plan.commands == [VENV, f"{PIP} -r requirements.txt"]


@pytest.mark.parametrize(
    "path", ["../x", "/abs", "/workspace/.venv", ".git", ".git/hooks", "./.git", ".", "a/../../b",
             ""],
)
def test_given_a_setup_cache_path_leaving_the_repository_then_config_error_names_the_key(
    tmp_path, path
):
    write(tmp_path, {"requirements.txt": "requests\n"})
    project = parse_project_file(
        f'[commands]\nsetup = "make deps"\n[setup]\ncache = [{json.dumps(path)}]\n'
    )

    with pytest.raises(ConfigError) as raised:
        plan_setup(tmp_path, project)

    assert raised.value.classification is Classification.CONFIG
    assert raised.value.details == {"key": "setup.cache"}
    assert "setup.cache" in raised.value.message


# ------------------------------------------------------------------------ hostile input
def test_given_package_json_that_is_not_json_then_npm_install_runs_to_report_it(tmp_path):
    write(tmp_path, {"package.json": "{ this is not json"})

    plan = plan_setup(tmp_path)

    assert plan.commands == ["npm install --no-audit --no-fund --no-package-lock"]


@pytest.mark.parametrize("raw", [b"[1, 2, 3]", b'"text"', b"\xff\xfe{}", b"[" * 200_000])
def test_given_package_json_of_the_wrong_shape_then_npm_install_runs(tmp_path, raw):
    (tmp_path / "package.json").write_bytes(raw)

    assert plan_setup(tmp_path).tool == "npm"


@pytest.mark.parametrize(
    "raw", [b"[project\nname = ", b"\xff\xfe[project]", b"a = " + b"[" * 100_000]
)
def test_given_pyproject_that_is_not_toml_then_pip_installs_it_to_report_it(tmp_path, raw):
    (tmp_path / "pyproject.toml").write_bytes(raw)

    plan = plan_setup(tmp_path)

    assert plan.commands == [VENV, f"{PIP} -e ."]


def test_given_requirements_that_are_not_utf8_then_they_still_count_as_content(tmp_path):
    (tmp_path / "requirements.txt").write_bytes(b"caf\xe9-lib==1\n")

    assert plan_setup(tmp_path).manifests == ["requirements.txt"]


@pytest.mark.parametrize("name", ["package.json", "pyproject.toml", "requirements.txt"])
def test_given_a_manifest_that_links_outside_the_repository_then_config_error(tmp_path, name):
    os.symlink("/etc/passwd", tmp_path / name)

    with pytest.raises(ConfigError) as raised:
        plan_setup(tmp_path)

    assert raised.value.details == {"file": name}
    assert "regular file" in raised.value.message


@pytest.mark.parametrize("name", ["package.json", "pyproject.toml", "requirements-dev.txt"])
def test_given_a_manifest_larger_than_the_bound_then_config_error(tmp_path, name):
    (tmp_path / name).write_bytes(b"#" * (MAX_FILE_BYTES + 1))

    with pytest.raises(ConfigError) as raised:
        plan_setup(tmp_path)

    assert raised.value.details == {"file": name}
    assert "larger than" in raised.value.message


def test_given_a_manifest_at_exactly_the_bound_then_it_is_read(tmp_path):
    (tmp_path / "requirements.txt").write_bytes(b"requests\n" + b"#" * (MAX_FILE_BYTES - 9))

    assert plan_setup(tmp_path).manifests == ["requirements.txt"]


def test_given_a_manifest_that_is_a_directory_then_config_error(tmp_path):
    (tmp_path / "pyproject.toml").mkdir()

    with pytest.raises(ConfigError):
        plan_setup(tmp_path)


def test_given_a_linked_package_json_beside_a_lockfile_then_it_is_not_read_by_detection(
    tmp_path,
):
    # the lockfile alone decides the installer; the link is refused later, when the
    # installer reads the manifests to key the cache (read_repo_file)
    os.symlink("/etc/passwd", tmp_path / "package.json")
    (tmp_path / "package-lock.json").write_text("{}")

    plan = plan_setup(tmp_path)

    assert plan.commands == ["npm ci --no-audit --no-fund"]
    assert plan.manifests == ["package-lock.json", "package.json"]
