"""Choosing a project's Node.js line and Python from what the image offers: ``choose``,
``Offered.from_labels`` and the toolchain in ``plan_setup``'s plan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.errors import Classification, EnvironmentFailure
from runner.setup import Offered, choose, plan_setup
from runner.setup.toolchain import (
    LABEL_NODE,
    LABEL_NODE_DEFAULT,
    LABEL_NODE_LTS,
    LABEL_PYTHON,
    Toolchain,
    with_path,
)

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
LABELS = {
    LABEL_NODE: "20.20.2,22.23.5,24.22.3,26.12.1",
    LABEL_NODE_LTS: "20=Iron,22=Jod,24=Krypton",
    LABEL_NODE_DEFAULT: "24",
    LABEL_PYTHON: "3.11.2",
}
OFFERED = Offered.from_labels(LABELS)


def chosen(files: dict[str, str], offered: Offered = OFFERED) -> Toolchain:
    def read(name: str) -> bytes | None:
        return files[name].encode() if name in files else None

    return choose(set(files), read, offered)


def node_of(files: dict[str, str]) -> tuple[str, str]:
    (node,) = [c for c in chosen(files).choices if c.tool == "node"]
    return node.version, node.source


def package(engines: str | None = None) -> str:
    data: dict[str, object] = {"name": "app", "devDependencies": {"vitest": "^3"}}
    if engines is not None:
        data["engines"] = {"node": engines}
    return json.dumps(data)


def failure_of(files: dict[str, str]) -> EnvironmentFailure:
    with pytest.raises(EnvironmentFailure) as failed:
        chosen(files)
    assert failed.value.classification == Classification.ENVIRONMENT
    return failed.value


# ------------------------------------------------------------------------------- labels
def test_given_the_images_labels_then_the_offered_lines_lts_names_default_and_python_are_read():
    assert OFFERED.node == ("20.20.2", "22.23.5", "24.22.3", "26.12.1")
    assert dict(OFFERED.node_lts) == {20: "iron", 22: "jod", 24: "krypton"}
    assert OFFERED.node_default == 24
    assert OFFERED.python == ("3.11.2",)


def test_given_labels_in_any_order_with_junk_then_only_real_versions_are_offered_in_order():
    offered = Offered.from_labels({LABEL_NODE: "24.1.0, junk,20.3.1,,v1,22.0.0",
                                   LABEL_NODE_LTS: "22=Jod,x=y", LABEL_PYTHON: "3.11.2,3.x"})
    assert offered.node == ("20.3.1", "22.0.0", "24.1.0")
    assert offered.node_default == 22  # no default label: the newest LTS line
    assert offered.python == ("3.11.2",)


def test_given_an_image_without_toolchain_labels_then_nothing_is_chosen_or_refused():
    offered = Offered.from_labels({"devteam.base-hash": "abc"})
    assert not offered.declared
    assert chosen({".nvmrc": "12\n", "package.json": package()}, offered) == Toolchain()


# --------------------------------------------------------------------------------- node
@pytest.mark.parametrize(
    ("files", "version", "source"),
    [
        ({".nvmrc": "20\n"}, "20.20.2", ".nvmrc"),
        ({".nvmrc": "v22.23.5"}, "22.23.5", ".nvmrc"),
        ({".nvmrc": "lts/*"}, "24.22.3", ".nvmrc"),
        ({".nvmrc": "lts/iron"}, "20.20.2", ".nvmrc"),
        ({".nvmrc": "lts/Jod"}, "22.23.5", ".nvmrc"),
        ({".nvmrc": "lts/-1"}, "22.23.5", ".nvmrc"),
        ({".nvmrc": "node"}, "26.12.1", ".nvmrc"),
        ({".nvmrc": "# pinned for CI\n\n  24  # LTS\n"}, "24.22.3", ".nvmrc"),
        ({".node-version": "22.x"}, "22.23.5", ".node-version"),
        ({".nvmrc": "20", ".node-version": "24", "package.json": package(">=22")},
         "20.20.2", ".nvmrc"),
        ({"package.json": package(">=20 <23")}, "22.23.5", "package.json engines.node"),
        ({"package.json": package("^20.19.0 || >=22.12.0")}, "26.12.1",
         "package.json engines.node"),
        ({"package.json": package(">=18")}, "26.12.1", "package.json engines.node"),
        ({"package.json": package()}, "24.22.3", "default"),
        ({"package.json": "{not json"}, "24.22.3", "default"),
    ],
)
def test_given_what_a_project_asks_when_chosen_then_the_highest_offered_line_that_fits_wins(
    files, version, source
):
    assert node_of(files) == (version, source)


@pytest.mark.parametrize(
    ("files", "version", "note"),
    [
        ({".nvmrc": "20.11.1"}, "20.20.2", "the 20 line is offered at 20.20.2 only"),
        ({"package.json": package("~22.12.0")}, "22.23.5", "the 22 line is offered at 22.23.5"),
    ],
)
def test_given_a_pin_the_line_has_moved_past_then_that_line_is_chosen_and_the_record_says_so(
    files, version, note
):
    (node,) = chosen(files).choices
    assert node.version == version
    assert note in node.describe()


def test_given_a_chosen_line_then_its_bin_is_on_path_after_the_project_and_before_the_image():
    toolchain = chosen({".nvmrc": "20", "package.json": package()})
    assert toolchain.path == ["/opt/node/20/bin"]
    env = with_path({"PATH": f"/workspace/node_modules/.bin:{SYSTEM_PATH}"}, toolchain,
                    SYSTEM_PATH)
    assert env["PATH"] == f"/workspace/node_modules/.bin:/opt/node/20/bin:{SYSTEM_PATH}"
    assert with_path({}, toolchain, SYSTEM_PATH)["PATH"] == f"/opt/node/20/bin:{SYSTEM_PATH}"


def test_given_the_default_line_then_the_record_says_why():
    (node,) = chosen({"package.json": package()}).choices
    assert node.describe() == ("toolchain: node 24.22.3 (the default, the newest LTS line "
                               "offered; the project asks for none)")


def test_given_an_nvmrc_then_the_record_names_it_and_what_it_asked():
    (node,) = chosen({".nvmrc": "20\n"}).choices
    assert node.describe() == "toolchain: node 20.20.2 chosen from .nvmrc ('20')"


@pytest.mark.parametrize(
    ("files", "source", "asked"),
    [
        ({".nvmrc": "18"}, ".nvmrc", "18"),
        ({".nvmrc": "v16.20.2"}, ".nvmrc", "v16.20.2"),
        ({".node-version": "28"}, ".node-version", "28"),
        ({".nvmrc": "lts/hydrogen"}, ".nvmrc", "lts/hydrogen"),
        ({"package.json": package(">=27")}, "package.json engines.node", ">=27"),
        ({"package.json": package("<20")}, "package.json engines.node", "<20"),
    ],
)
def test_given_a_line_the_image_lacks_then_an_environment_error_names_the_ask_and_the_offer(
    files, source, asked
):
    error = failure_of(files)
    assert error.message.startswith(f"{source} asks for Node.js {asked!r}")
    assert "20.20.2, 22.23.5, 24.22.3, 26.12.1" in error.message
    assert error.details == {"tool": "node", "source": source, "asked": asked,
                             "offered": ["20.20.2", "22.23.5", "24.22.3", "26.12.1"]}


@pytest.mark.parametrize(
    "files",
    [
        {".nvmrc": "twenty"},
        {".nvmrc": "20 && rm -rf /"},
        {"package.json": package(">=20 and <22")},
        {".nvmrc": "9" * 5000},
    ],
)
def test_given_a_version_nobody_can_read_then_it_is_an_environment_error_not_a_guess(files):
    error = failure_of(files)
    assert "not a version or range this service can read" in error.message
    assert len(error.message) < 600  # what was asked is echoed bounded


def test_given_a_project_without_node_files_then_no_node_line_is_chosen():
    assert [c.tool for c in chosen({"pyproject.toml": "[project]\nname='x'\n"}).choices] == [
        "python"]
    assert chosen({"README.md": "hi"}) == Toolchain()


# ------------------------------------------------------------------------------- python
def pyproject(requires: str) -> str:
    return f'[project]\nname = "x"\nrequires-python = "{requires}"\n'


@pytest.mark.parametrize(
    ("files", "source"),
    [
        ({"pyproject.toml": pyproject(">=3.9")}, "pyproject.toml requires-python"),
        ({"pyproject.toml": pyproject(">=3.8,<4")}, "pyproject.toml requires-python"),
        ({"pyproject.toml": pyproject("~=3.11")}, "pyproject.toml requires-python"),
        ({".python-version": "3.11\n"}, ".python-version"),
        ({".python-version": "system"}, ".python-version"),
        ({".python-version": "3.13\n3.11\n"}, ".python-version"),
        ({".python-version": "3.11", "pyproject.toml": pyproject(">=3.10")},
         ".python-version and pyproject.toml requires-python"),
        ({"pyproject.toml": '[project]\nname = "x"\n'}, "default"),
        ({"requirements.txt": "requests\n"}, "default"),
    ],
)
def test_given_python_asks_the_image_meets_then_its_python_is_chosen(files, source):
    (python,) = chosen(files).choices
    assert (python.tool, python.version, python.source) == ("python", "3.11.2", source)


def test_given_an_exact_python_pin_of_an_offered_minor_line_then_that_line_is_used_and_noted():
    (python,) = chosen({".python-version": "3.11.9"}).choices
    assert python.version == "3.11.2"
    assert "the 3.11 line is offered at 3.11.2 only" in python.describe()


@pytest.mark.parametrize(
    ("files", "source", "asked"),
    [
        ({"pyproject.toml": pyproject(">=3.12")}, "pyproject.toml requires-python", ">=3.12"),
        ({"pyproject.toml": pyproject("<3.11")}, "pyproject.toml requires-python", "<3.11"),
        ({".python-version": "3.13"}, ".python-version", "3.13"),
        ({".python-version": "pypy3.10"}, ".python-version", "pypy3.10"),
        ({".python-version": "3.11", "pyproject.toml": pyproject(">=3.12")},
         ".python-version and pyproject.toml requires-python", "3.11; >=3.12"),
    ],
)
def test_given_python_asks_the_image_cannot_meet_then_an_environment_error_names_both(
    files, source, asked
):
    error = failure_of(files)
    verb = "ask" if " and " in source else "asks"
    assert error.message.startswith(f"{source} {verb} for Python {asked!r}")
    assert "it offers Python 3.11.2" in error.message
    assert error.details["offered"] == ["3.11.2"]


def test_given_a_requires_python_that_is_no_specifier_then_it_is_an_environment_error():
    error = failure_of({"pyproject.toml": pyproject("python 3 please")})
    assert "not a version or range this service can read" in error.message
    assert "PEP 440" in error.message


# --------------------------------------------------------------------------- plan_setup
def test_given_a_project_with_nothing_to_install_then_the_plan_still_carries_its_node_line(
    tmp_path: Path,
):
    (tmp_path / ".nvmrc").write_text("20\n")
    plan = plan_setup(tmp_path, None, OFFERED)
    assert not plan.needed
    assert plan.env == {"PATH": f"/opt/node/20/bin:{SYSTEM_PATH}"}
    assert [c.describe() for c in plan.toolchain] == [
        "toolchain: node 20.20.2 chosen from .nvmrc ('20')"]


def test_given_a_locked_node_project_then_its_line_follows_node_modules_on_path(tmp_path: Path):
    (tmp_path / "package.json").write_text(package(">=22 <24"))
    (tmp_path / "package-lock.json").write_text("{}")
    plan = plan_setup(tmp_path, None, OFFERED)
    assert plan.commands == ["npm ci --no-audit --no-fund"]
    assert plan.env == {
        "PATH": f"/workspace/node_modules/.bin:/opt/node/22/bin:{SYSTEM_PATH}"}


def test_given_no_offer_then_plan_setup_is_as_before(tmp_path: Path):
    (tmp_path / ".nvmrc").write_text("12\n")
    assert plan_setup(tmp_path) == plan_setup(tmp_path, None, None)
    assert plan_setup(tmp_path).toolchain == []


# ---------------------------------------------------------------------------- property
NAMES = st.sampled_from([".nvmrc", ".node-version", "package.json", ".python-version",
                         "pyproject.toml", "requirements.txt"])


@settings(max_examples=200)
@given(st.dictionaries(NAMES, st.text(max_size=60), max_size=4))
def test_given_any_files_then_the_choice_is_offered_or_an_environment_error(files):
    try:
        toolchain = chosen(files)
    except EnvironmentFailure as exc:
        offered = exc.details["offered"]
        assert offered in (list(OFFERED.node), list(OFFERED.python))
        return
    for choice in toolchain.choices:
        assert choice.version in (OFFERED.node if choice.tool == "node" else OFFERED.python)
    assert all(p.startswith("/opt/node/") and p.endswith("/bin") for p in toolchain.path)
