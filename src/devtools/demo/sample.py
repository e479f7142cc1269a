"""The demo's sample project: a small Python calculator with six tasks, a bare remote on
disk, and the script the scripted model answers with (one task fails verification on its
first attempt, so the retry round is seen working).

The model is scripted: its "edits" are written below, and Aider applies them for real.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pygit2

AUTHOR = pygit2.Signature("Demo Owner", "owner@demo.devteam.local")

TASK_LIST = """# Calculator — task list

Tasks for DevTeam Runner. Each task names its files and what "done" means.

Phase 1: Core arithmetic (Dependencies: [])

- 1.1 Add and subtract (Dependencies: [])
  • files: src/calc/basic.py, tests/test_basic.py
  • test.coverage: ≥80%

- 1.2 Multiply and divide (Dependencies: [1.1])
  • files: src/calc/basic.py, tests/test_basic.py
  • type.strict: 0 errors

Phase 2: Extras (Dependencies: [1])

- 2.1 Power and square root (Dependencies: [])
  • files: src/calc/power.py, tests/test_power.py

- 2.2 Mean and median (Dependencies: [])
  • files: src/calc/stats.py, tests/test_stats.py
  • test.coverage: ≥80%

- 2.3 Command-line interface (Dependencies: [2.1, 2.2])
  • files: src/calc/cli.py, tests/test_cli.py

- 2.4 Document the calculator (Dependencies: [2.3])
  • files: README.md
  • doc.updated: README.md
"""

DEVTEAM_TOML = """[commands]
test = "python3 -m coverage run --source=src -m pytest -q -p no:cacheprovider"
coverage = "python3 -m coverage json -q -o .devteam-coverage.json"
typecheck = "mypy --strict --cache-dir /tmp/mypy src"

[criteria]
"test.pass" = "pass"
"""

INITIAL = {
    "README.md": "# Calculator\n\nA small calculator.\n",
    "pyproject.toml": '[project]\nname = "calc"\nversion = "0.1.0"\n',
    "conftest.py": (
        "import sys\nfrom pathlib import Path\n\n"
        "sys.path.insert(0, str(Path(__file__).parent / 'src'))\n"
    ),
    "src/calc/__init__.py": '"""A small calculator."""\n',
    "tests/test_package.py": "import calc\n\n\ndef test_package_imports() -> None:\n"
    "    assert calc.__doc__\n",
    ".devteam.toml": DEVTEAM_TOML,
    "tasks_list.md": TASK_LIST,
}

BASIC_1 = '''"""Basic arithmetic."""


def add(a: float, b: float) -> float:
    return a + b


def subtract(a: float, b: float) -> float:
    return a - b
'''
BASIC_2 = (
    BASIC_1
    + """

def multiply(a: float, b: float) -> float:
    return a * b


def divide(a: float, b: float) -> float:
    if b == 0:
        raise ZeroDivisionError("division by zero")
    return a / b
"""
)
TEST_BASIC_1 = """from calc.basic import add, subtract


def test_add() -> None:
    assert add(2, 3) == 5


def test_subtract() -> None:
    assert subtract(5, 3) == 2
"""
TEST_BASIC_2 = """import pytest

from calc.basic import add, divide, multiply, subtract


def test_add() -> None:
    assert add(2, 3) == 5


def test_subtract() -> None:
    assert subtract(5, 3) == 2


def test_multiply() -> None:
    assert multiply(4, 2.5) == 10


def test_divide() -> None:
    assert divide(9, 3) == 3
    with pytest.raises(ZeroDivisionError):
        divide(1, 0)
"""
POWER = '''"""Powers and roots."""

import math


def power(base: float, exponent: float) -> float:
    return float(base**exponent)


def square_root(value: float) -> float:
    if value < 0:
        raise ValueError("square root of a negative number")
    return math.sqrt(value)
'''
TEST_POWER = """import pytest

from calc.power import power, square_root


def test_power() -> None:
    assert power(2, 10) == 1024


def test_square_root() -> None:
    assert square_root(81) == 9
    with pytest.raises(ValueError):
        square_root(-1)
"""
STATS_GOOD = '''"""Statistics."""


def mean(values: list[float]) -> float:
    if not values:
        raise ValueError("mean of nothing")
    return sum(values) / len(values)


def median(values: list[float]) -> float:
    if not values:
        raise ValueError("median of nothing")
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2
'''
STATS_BAD = STATS_GOOD.replace("    ordered = sorted(values)\n", "    ordered = list(values)\n")
TEST_STATS = """import pytest

from calc.stats import mean, median


def test_mean() -> None:
    assert mean([1, 2, 3, 4]) == 2.5
    with pytest.raises(ValueError):
        mean([])


def test_median_odd_and_even() -> None:
    assert median([3, 1, 2]) == 2
    assert median([4, 1, 3, 2]) == 2.5
    with pytest.raises(ValueError):
        median([])
"""
CLI = '''"""Command line: ``python -m calc.cli add 2 3``."""

import sys

from calc.basic import add, divide, multiply, subtract
from calc.power import power, square_root
from calc.stats import mean, median

BINARY = {"add": add, "sub": subtract, "mul": multiply, "div": divide, "pow": power}


def main(argv: list[str]) -> str:
    if not argv:
        return "usage: calc OP NUMBERS..."
    op, numbers = argv[0], [float(x) for x in argv[1:]]
    if op in BINARY and len(numbers) == 2:
        return str(BINARY[op](numbers[0], numbers[1]))
    if op == "sqrt" and len(numbers) == 1:
        return str(square_root(numbers[0]))
    if op in ("mean", "median") and numbers:
        return str(mean(numbers) if op == "mean" else median(numbers))
    return f"unknown operation: {op}"


if __name__ == "__main__":
    print(main(sys.argv[1:]))
'''
TEST_CLI = """from calc.cli import main


def test_binary_operations() -> None:
    assert main(["add", "2", "3"]) == "5.0"
    assert main(["pow", "2", "3"]) == "8.0"


def test_other_operations() -> None:
    assert main(["sqrt", "16"]) == "4.0"
    assert main(["median", "3", "1", "2"]) == "2.0"
    assert main(["mean", "1", "2"]) == "1.5"
    assert main([]).startswith("usage")
    assert main(["nope"]).startswith("unknown")
"""
README = """# Calculator

A small calculator.

## Usage

    python -m calc.cli add 2 3      # 5.0
    python -m calc.cli median 3 1 2 # 2.0

Operations: add, sub, mul, div, pow, sqrt, mean, median.
"""

EDITS: dict[str, dict[str, str]] = {
    "1.1": {"src/calc/basic.py": BASIC_1, "tests/test_basic.py": TEST_BASIC_1},
    "1.2": {"src/calc/basic.py": BASIC_2, "tests/test_basic.py": TEST_BASIC_2},
    "2.1": {"src/calc/power.py": POWER, "tests/test_power.py": TEST_POWER},
    "2.2": {"src/calc/stats.py": STATS_GOOD, "tests/test_stats.py": TEST_STATS},
    "2.3": {"src/calc/cli.py": CLI, "tests/test_cli.py": TEST_CLI},
    "2.4": {"README.md": README},
}
FAILING: dict[str, dict[str, str]] = {
    "2.2": {"src/calc/stats.py": STATS_BAD, "tests/test_stats.py": TEST_STATS},
}


def _toml_string(text: str) -> str:
    return '"""' + text.replace("\\", "\\\\").replace('"""', '\\"""') + '"""'


def model_script(
    edits: dict[str, dict[str, str]] = EDITS, failing: dict[str, dict[str, str]] = FAILING
) -> str:
    """The scripted model's TOML: whole-file edits per task, failing ones first for some."""
    parts = []
    for task_id, files in edits.items():
        parts.append(
            f'[tasks."{task_id}"]\nedit_format = "whole"\nreply = "Implementing task {task_id}."\n'
        )
        if task_id in failing:
            parts.append("fail_attempts = 1\n")
        for path, content in files.items():
            parts.append(
                f'[[tasks."{task_id}".edits]]\npath = "{path}"\ncontent = {_toml_string(content)}\n'
            )
        for path, content in failing.get(task_id, {}).items():
            parts.append(
                f'[[tasks."{task_id}".failing]]\npath = "{path}"\n'
                f"content = {_toml_string(content)}\n"
            )
    return "\n".join(parts)


@dataclass(frozen=True)
class Sample:
    root: Path
    remote: Path
    script: Path

    @property
    def url(self) -> str:
        return f"file://{self.remote}"


def create_sample(
    root: Path,
    *,
    name: str = "calc",
    files: dict[str, str] | None = None,
    script: str | None = None,
) -> Sample:
    """A bare remote ``root/remote/<name>.git`` holding the sample project on ``main``,
    and the model script at ``root/model-script.toml``."""
    root.mkdir(parents=True, exist_ok=True)
    remote = root / "remote" / f"{name}.git"
    bare = pygit2.init_repository(str(remote), bare=True, initial_head="main")
    bare.config["core.logAllRefUpdates"] = "always"  # every ref update (push) is logged
    tree = _tree(bare, files or INITIAL)
    bare.create_commit("refs/heads/main", AUTHOR, AUTHOR, "Start the calculator", tree, [])
    script_path = root / "model-script.toml"
    script_path.write_text(script if script is not None else model_script())
    return Sample(root=root, remote=remote, script=script_path)


def _tree(repo: pygit2.Repository, files: dict[str, str]) -> pygit2.Oid:
    """Write a nested tree of ``files`` into ``repo`` (a bare repository has no index)."""
    nested: dict[str, object] = {}
    for path, content in files.items():
        node = nested
        *dirs, leaf = path.split("/")
        for d in dirs:
            node = node.setdefault(d, {})  # type: ignore[assignment]
        node[leaf] = content

    def build(node: dict[str, object]) -> pygit2.Oid:
        builder = repo.TreeBuilder()
        for key, value in sorted(node.items()):
            if isinstance(value, dict):
                builder.insert(key, build(value), pygit2.GIT_FILEMODE_TREE)
            else:
                blob = repo.create_blob(str(value).encode())
                builder.insert(key, blob, pygit2.GIT_FILEMODE_BLOB)
        return builder.write()

    return build(nested)
