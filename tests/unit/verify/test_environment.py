"""Telling a failing check's environment apart from the code it checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.ports import CommandResult
from runner.verify.environment import environment_problem, project_modules

PYTEST_MISSING_NUMPY = """\
==================================== ERRORS ====================================
____________________ ERROR collecting tests/test_stats.py _____________________
ImportError while importing test module '/workspace/tests/test_stats.py'.
tests/test_stats.py:1: in <module>
    import numpy as np
E   ModuleNotFoundError: No module named 'numpy'
=========================== short test summary info ============================
ERROR tests/test_stats.py
1 error in 0.12s
"""
ASSERTION_FAILURE = """\
    def test_add():
>       assert add(2, 2) == 5
E       assert 4 == 5
tests/test_basic.py:4: AssertionError
1 failed in 0.03s
"""


def failed(output: str, *, command: str = "python3 -m pytest -q", exit_code: int = 1,
           **flags: bool) -> CommandResult:
    return CommandResult(command=command, exit_code=exit_code, duration=0.5,
                         output_tail=output, **flags)


def write(root: Path, names: list[str]) -> Path:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("")
    return root


# ------------------------------------------------------------------------ project_modules
def test_given_a_flat_layout_then_its_packages_and_modules_are_the_projects(tmp_path):
    write(tmp_path, ["calc/__init__.py", "helpers.py", "tests/test_x.py", "README.md",
                     ".hidden/x.py", ".secret.py"])

    names = project_modules(tmp_path)

    assert {"calc", "helpers", "tests"} <= names
    assert "README" not in names
    assert ".hidden" not in names
    assert ".secret" not in names


def test_given_a_src_layout_then_packages_under_src_are_the_projects(tmp_path):
    write(tmp_path, ["src/calc/__init__.py", "src/tool.py", "pyproject.toml"])

    names = project_modules(tmp_path)

    assert {"calc", "tool"} <= names
    assert "pyproject" not in names


def test_given_a_missing_working_copy_then_it_provides_nothing(tmp_path):
    assert project_modules(tmp_path / "gone") == set()


# ----------------------------------------------------------------------- python modules
def test_given_a_missing_third_party_module_then_the_sentence_names_it(tmp_path):
    own = project_modules(write(tmp_path, ["src/calc/__init__.py"]))

    problem = environment_problem([failed(PYTEST_MISSING_NUMPY)], own)

    assert problem is not None
    assert "Python module 'numpy' is not installed" in problem
    assert "`python3 -m pytest -q`" in problem


def test_given_a_missing_dotted_third_party_module_then_the_full_name_is_given():
    problem = environment_problem(
        [failed("ModuleNotFoundError: No module named 'google.protobuf'")], set())

    assert problem is not None
    assert "'google.protobuf'" in problem


@pytest.mark.parametrize(
    ("files", "module"),
    [
        (["src/calc/__init__.py"], "calc.stats"),
        (["src/calc/__init__.py"], "calc"),
        (["calc/__init__.py"], "calc.stats.median"),
        (["helpers.py"], "helpers"),
        (["src/tool.py"], "tool"),
    ],
    ids=["src-dotted", "src-top", "flat-dotted", "flat-module", "src-module"],
)
def test_given_a_missing_module_the_repository_provides_then_it_is_the_codes_failure(
    tmp_path, files, module
):
    own = project_modules(write(tmp_path, files))
    output = f"E   ModuleNotFoundError: No module named '{module}'\n"

    assert environment_problem([failed(output)], own) is None


def test_given_an_own_module_and_a_third_party_one_then_the_third_party_one_is_named(tmp_path):
    own = project_modules(write(tmp_path, ["src/calc/__init__.py"]))
    output = ("E   ModuleNotFoundError: No module named 'calc.stats'\n"
              "E   ModuleNotFoundError: No module named 'hypothesis'\n")

    problem = environment_problem([failed(output)], own)

    assert problem is not None
    assert "'hypothesis'" in problem


# -------------------------------------------------------------------------- node modules
def test_given_a_missing_node_package_then_it_is_environmental():
    output = ("Error: Cannot find module 'left-pad'\nRequire stack:\n- /workspace/index.js\n"
              "    at Module._resolveFilename (node:internal/modules/cjs/loader:1145:15)\n")

    problem = environment_problem([failed(output, command="npm test")], {"index"})

    assert problem is not None
    assert "Node package 'left-pad' is not installed" in problem
    assert "`npm test`" in problem


@pytest.mark.parametrize(
    "spec", ["./util", "../lib/util", "/workspace/src/util.js", "node:fs/promises"]
)
def test_given_a_missing_relative_or_builtin_module_then_it_is_the_codes_failure(spec):
    output = f"Error: Cannot find module '{spec}'\n"

    assert environment_problem([failed(output, command="npm test")], set()) is None


@pytest.mark.parametrize(
    ("output", "package"),
    [
        ("Error: Cannot find module '@scope/pkg/sub'", "@scope/pkg"),
        ("Error: Cannot find module '@testing-library/jest-dom'", "@testing-library/jest-dom"),
        ("Error: Cannot find module 'lodash/fp'", "lodash"),
        (('Error [ERR_MODULE_NOT_FOUND]: Cannot find package "chai" imported from '
          "/workspace/test/a.test.js"), "chai"),
        ('Error: Failed to resolve import "vue" from "src/main.ts".', "vue"),
    ],
)
def test_given_a_missing_package_path_then_the_package_is_named(output, package):
    problem = environment_problem([failed(output, command="npm test")], set())

    assert problem is not None
    assert f"Node package '{package}' is not installed" in problem


def test_given_a_missing_module_the_repository_provides_by_name_then_it_is_not_environmental(
    tmp_path,
):
    own = project_modules(write(tmp_path, ["lib/index.js", "package.json"]))

    assert environment_problem([failed("Cannot find module 'lib/index'")], own) is None


# ----------------------------------------------------------------------------- commands
@pytest.mark.parametrize(
    ("output", "name"),
    [
        ("> jest --coverage\n\nsh: 1: jest: not found\n", "jest"),
        ("bash: line 1: tsc: command not found\n", "tsc"),
        ("bash: mypy: command not found\n", "mypy"),
    ],
)
def test_given_a_shell_saying_command_not_found_then_the_command_is_named(output, name):
    problem = environment_problem([failed(output, command="npm test", exit_code=127)], set())

    assert problem is not None
    assert f"command '{name}' is not available in the sandbox" in problem


def test_given_exit_code_127_without_a_message_then_the_commands_program_is_named():
    problem = environment_problem([failed("", command="ruff check .", exit_code=127)], set())

    assert problem is not None
    assert "command 'ruff' is not available" in problem


def test_given_a_tests_own_key_error_saying_not_found_then_it_is_not_environmental():
    output = "E   KeyError: 'not found'\nE   KeyError: not found\n1 failed in 0.02s\n"

    assert environment_problem([failed(output)], set()) is None


# ------------------------------------------------------------------------ network, disk
@pytest.mark.parametrize(
    "output",
    [
        "Error: getaddrinfo EAI_AGAIN localhost\n    at GetAddrInfoReqWrap.onlookup",
        ("npm ERR! request to https://registry.npmjs.org/x failed, reason: getaddrinfo "
         "ENOTFOUND registry.npmjs.org"),
        "socket.gaierror: [Errno -3] Temporary failure in name resolution",
        "curl: (6) Could not resolve host: example.org",
        "OSError: [Errno 101] Network is unreachable",
    ],
)
def test_given_a_name_resolution_or_routing_failure_then_the_network_is_named(output):
    problem = environment_problem([failed(output, command="npm test")], set())

    assert problem is not None
    assert "network" in problem
    assert "`npm test`" in problem


@pytest.mark.parametrize(
    "output",
    ["OSError: [Errno 28] No space left on device: '/tmp/x'", "Error: ENOSPC: write failed"],
)
def test_given_a_full_disk_then_disk_space_is_named(output):
    problem = environment_problem([failed(output)], set())

    assert problem is not None
    assert "ran out of disk space" in problem


# ------------------------------------------------------------------ what is never blamed
def test_given_a_plain_assertion_failure_then_it_is_the_codes_failure():
    assert environment_problem([failed(ASSERTION_FAILURE)], set()) is None


@pytest.mark.parametrize(
    "result",
    [
        failed(PYTEST_MISSING_NUMPY, exit_code=0),
        failed(PYTEST_MISSING_NUMPY, cancelled=True),
        failed(PYTEST_MISSING_NUMPY, exit_code=-9, timed_out=True),
        failed("sh: 1: jest: not found", exit_code=127, timed_out=True),
    ],
    ids=["passed", "cancelled", "timed-out", "timed-out-127"],
)
def test_given_a_command_that_passed_or_did_not_finish_then_nothing_is_blamed(result):
    assert environment_problem([result], set()) is None


def test_given_no_commands_then_nothing_is_blamed():
    assert environment_problem([], set()) is None


def test_given_several_commands_then_the_first_environmental_one_is_named():
    results = [
        failed("1 passed", command="python3 -m pytest -q", exit_code=0),
        failed(ASSERTION_FAILURE, command="python3 -m coverage run -m pytest"),
        failed("bash: mypy: command not found", command="mypy --strict .", exit_code=127),
        failed("No space left on device", command="npm run build"),
    ]

    problem = environment_problem(results, set())

    assert problem is not None
    assert "'mypy'" in problem
    assert "npm run build" not in problem


def test_given_a_src_link_out_of_the_repository_then_its_names_are_not_the_project_s(tmp_path):
    (tmp_path / "app.py").write_text("")
    (tmp_path / "src").symlink_to("/etc")

    assert project_modules(tmp_path) == {"app", "src"}  # nothing from /etc
