"""Toolchains in the real sandbox image: each offered Node.js line runs when a project asks
for it, setup commands and checks run on the chosen line, the Python checkers are current,
and a project asking for what the image lacks is an ``environment`` error.

What is offered is read from the image's own labels (``Installer.offered``), so these
tests follow the image ``containers/base/build.sh`` makes.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from runner.errors import EnvironmentFailure
from runner.sandbox import DockerSandbox
from runner.settings import get_settings
from runner.setup import DepsCache, Installer, Offered, plan_setup
from runner.setup.cache import LABEL
from runner.verify.config import parse_project_file

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture(scope="module")
def offered(docker_client, runner_image) -> Offered:
    cache = DepsCache(docker_client.api, max_bytes_per_customer=10**9, per_project=3,
                      max_age_seconds=3600)
    return Installer(get_settings(), DockerSandbox(docker_client, image=runner_image),
                     cache).offered()


@pytest.fixture
def installer(docker_client, sandbox):
    cache = DepsCache(docker_client.api, max_bytes_per_customer=10**9, per_project=3,
                      max_age_seconds=3600)
    yield Installer(get_settings(), sandbox, cache)
    for volume in docker_client.api.volumes(filters={"label": f"{LABEL}=true"})["Volumes"] or []:
        if volume["Labels"].get("devteam.customer", "").startswith("toolchain-test-"):
            docker_client.api.remove_volume(volume["Name"], force=True)


def run(sandbox, spec, project: Path, command: str, env: dict[str, str]) -> tuple[int, str]:
    session = sandbox.session(spec)
    try:
        session.copy_in(project)
        result = session.run(command, timeout=120, env={"CI": "1", **env})
    finally:
        sandbox.remove(spec)
    return result.exit_code, result.output_tail


def test_given_the_image_then_it_offers_several_node_lines_and_its_python(offered):
    majors = sorted(int(v.split(".")[0]) for v in offered.node)
    assert {20, 22, 24} <= set(majors)
    assert offered.node_default in offered.node_lts  # the default is an LTS line
    assert [v.split(".")[:2] for v in offered.python] == [["3", "11"]]


@pytest.mark.parametrize("major", [20, 22, 24, 26])
def test_given_an_nvmrc_naming_an_offered_line_then_node_npm_and_corepack_are_that_line(
    offered, sandbox, make_spec, tmp_path, major
):
    (tmp_path / ".nvmrc").write_text(f"{major}\n")
    plan = plan_setup(tmp_path, None, offered)
    [choice] = plan.toolchain
    assert choice.describe().startswith(f"toolchain: node {major}.")

    code, out = run(sandbox, make_spec(), tmp_path,
                    "node --version; npm --version; corepack --version; command -v node",
                    plan.env)

    version, npm, corepack, where = out.splitlines()
    assert code == 0, out
    assert version == f"v{choice.version}"
    assert npm.split(".")[0].isdigit() and corepack.split(".")[0].isdigit()
    assert where == f"/opt/node/{major}/bin/node"


def test_given_no_node_version_asked_then_the_default_lts_line_runs_as_plain_node(
    offered, sandbox, make_spec, tmp_path
):
    (tmp_path / "package.json").write_text('{"name": "app", "version": "1.0.0"}')
    plan = plan_setup(tmp_path, None, offered)
    [choice] = plan.toolchain
    assert choice.source == "default"

    code, out = run(sandbox, make_spec(), tmp_path, "node --version; /usr/local/bin/node --version",
                    plan.env)

    assert code == 0, out
    assert out.splitlines() == [f"v{choice.version}"] * 2


def test_given_a_custom_setup_then_its_commands_run_on_the_chosen_line_and_checks_too(
    installer, offered, sandbox, make_spec, tmp_path
):
    (tmp_path / ".nvmrc").write_text("20\n")
    project = parse_project_file(
        '[commands]\nsetup = "mkdir -p .tools && node --version > .tools/setup-node"\n'
        '[setup]\ncache = [".tools"]\n')
    plan = plan_setup(tmp_path, project, offered)
    who = f"toolchain-test-{uuid.uuid4().hex[:6]}"
    spec = make_spec(customer_id=who, project_id=f"{who}/proj", attempt=0, memory_mb=1024)

    result = installer.ensure(spec, plan, tmp_path)

    assert [c.tool for c in result.toolchain] == ["node"]
    verify = make_spec(customer_id=who, project_id=f"{who}/proj", mounts=result.mounts())
    code, out = run(sandbox, verify, tmp_path, "cat .tools/setup-node; node --version",
                    result.env)
    assert code == 0, out
    setup_line, check_line = out.splitlines()
    assert setup_line == check_line
    assert setup_line.startswith("v20.")


@pytest.mark.parametrize(
    ("files", "named"),
    [
        ({".nvmrc": "18\n"}, ".nvmrc asks for Node.js '18'"),
        ({"package.json": '{"name": "a", "engines": {"node": ">=40"}}'},
         "package.json engines.node asks for Node.js '>=40'"),
        ({"pyproject.toml": '[project]\nname = "a"\nrequires-python = ">=3.99"\n'},
         "pyproject.toml requires-python asks for Python '>=3.99'"),
        ({".python-version": "3.99\n"}, ".python-version asks for Python '3.99'"),
    ],
)
def test_given_a_version_the_image_lacks_then_setup_is_an_environment_error_naming_the_offer(
    offered, tmp_path, files, named
):
    for name, text in files.items():
        (tmp_path / name).write_text(text)

    with pytest.raises(EnvironmentFailure) as failed:
        plan_setup(tmp_path, None, offered)

    assert failed.value.classification == "environment"
    assert failed.value.message.startswith(named)
    wanted = offered.node if "Node.js" in named else offered.python
    assert f"it offers {'Node.js' if 'Node.js' in named else 'Python'} {', '.join(wanted)}" in (
        failed.value.message)


def test_given_a_python_project_then_its_venv_sees_current_pytest_coverage_and_mypy(
    offered, sandbox, make_spec, tmp_path
):
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "a"\nrequires-python = ">=3.10"\n')
    (tmp_path / "test_doc.py").write_text(
        'def double(x):\n    """\n    >>> double(2)\n    4\n    """\n    return 2 * x\n')
    plan = plan_setup(tmp_path, None, offered)
    assert [c.source for c in plan.toolchain] == ["pyproject.toml requires-python"]
    command = (
        "python3 -m venv --system-site-packages /tmp/v && . /tmp/v/bin/activate && "
        "python -c 'import pytest, coverage, mypy.version as m; "
        "print(pytest.__version__, coverage.__version__, m.__version__)' && "
        "python -m coverage run -m pytest -q --doctest-modules -p no:cacheprovider test_doc.py "
        "| tail -n 1")

    code, out = run(sandbox, make_spec(memory_mb=1024), tmp_path, command, plan.env)

    assert code == 0, out
    versions, summary = out.splitlines()[0], out.splitlines()[-1]
    pytest_v, coverage_v, mypy_v = (tuple(int(p) for p in v.split(".")[:2])
                                    for v in versions.split())
    assert pytest_v >= (8, 0)
    assert coverage_v >= (7, 0)
    assert mypy_v >= (1, 10)
    assert summary.startswith("1 passed")
