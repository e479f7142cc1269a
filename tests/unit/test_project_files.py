"""The project's own files say what they must: compose services, documented settings."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from runner.settings import describe

ROOT = Path(__file__).resolve().parents[2]


def test_compose_parses_and_names_the_services_with_health_checks() -> None:
    compose = yaml.safe_load((ROOT / "compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "migrate", "gateway", "relay", "worker"} <= set(services)
    for name in ("gateway", "relay", "worker", "migrate"):
        build = services[name]["build"]
        assert build["dockerfile"] == "containers/service/Dockerfile"
        assert (ROOT / build["dockerfile"]).is_file()
    for name in ("postgres", "redis", "gateway", "relay", "worker"):
        assert services[name]["healthcheck"]["test"], name
    assert services["migrate"]["entrypoint"][:3] == ["alembic", "-c", "/app/alembic.ini"]
    for name in ("gateway", "relay", "worker"):
        assert services[name]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully")
    assert services["gateway"]["command"][0] == "serve"
    assert services["relay"]["command"] == ["relay"]
    assert services["worker"]["command"] == ["worker"]


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [name for name, _, _ in describe() if f"`{name}`" not in readme]
    assert missing == []


def test_every_setting_has_a_description() -> None:
    assert [name for name, _, doc in describe() if not doc] == []


def test_the_readme_opens_with_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    sections = re.split(r"^## ", readme, flags=re.MULTILINE)
    # the first section after the title is the quick start, and its first code block
    # is exactly the two commands
    assert sections[1].startswith("Quick start\n")
    block = sections[1].split("```sh\n", 1)[1].split("```", 1)[0]
    commands = [line.split("#", 1)[0].strip() for line in block.splitlines()]
    assert commands == ["make demo", "make test"]


def test_ci_runs_make_test() -> None:
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_devteam_help_lists_the_commands() -> None:
    out = subprocess.run([str(ROOT / ".venv" / "bin" / "devteam"), "--help"],
                         capture_output=True, text=True, check=True).stdout
    for command in ("serve", "relay", "worker", "run", "submit", "demo", "watch", "token", "tasks",
                    "services", "image", "reap", "scripted-model"):
        assert command in out, command
