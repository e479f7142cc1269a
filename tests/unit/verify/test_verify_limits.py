"""What a repository's verification can make the service keep: the number of commands in
``.devteam.toml`` and the size of each command's output in the result."""

from __future__ import annotations

import pytest
from tests.support.settings import use_settings
from tests.unit.verify.fake_session import FakeSession, Scripted

from runner.errors import Classification, ConfigError
from runner.settings import load_settings, reset_settings_cache
from runner.verify.config import ProjectConfig, parse_project_file
from runner.verify.verifier import Verifier


def commands_toml(setup: int, build: int) -> str:
    def items(n: int, what: str) -> str:
        return "[" + ", ".join(f'"{what} {i}"' for i in range(n)) + "]"

    return (f"[commands]\nsetup = {items(setup, 'echo setup')}\ntest = \"pytest -q\"\n"
            f"build = {items(build, 'echo build')}\n")


def test_given_more_commands_than_the_limit_then_a_config_error_names_the_limit():
    # 10 setup + 1 test + 12 build = 23 > 20 (the default)
    with pytest.raises(ConfigError) as caught:
        parse_project_file(commands_toml(10, 12))
    error = caught.value
    assert error.classification is Classification.CONFIG
    assert "lists 23 commands; at most 20 are allowed" in error.message
    assert "DEVTEAM_LIMITS_MAX_COMMANDS" in error.message
    assert error.details["limit"] == 20 and error.details["commands"] == 23


def test_given_commands_up_to_the_limit_then_they_are_accepted():
    parsed = parse_project_file(commands_toml(9, 10))  # 9 + 1 + 10 = 20
    assert len(parsed.commands.build or []) == 10


def test_the_command_limit_is_the_operator_s_setting(monkeypatch):
    use_settings({}, monkeypatch, {"DEVTEAM_LIMITS_MAX_COMMANDS": "3"})
    parse_project_file(commands_toml(1, 1))  # 3 commands
    with pytest.raises(ConfigError, match="lists 4 commands; at most 3"):
        parse_project_file(commands_toml(2, 1))
    monkeypatch.undo()
    reset_settings_cache()


def test_a_flooding_command_keeps_only_the_end_of_its_output_with_a_marker():
    # 200 lines of 64 KiB: what the sandbox hands back as a tail (12.8 MB per command)
    lines = [f"{i:04d}" + "x" * (64 * 1024) for i in range(200)]
    config = ProjectConfig(kind="python", test="flood", build=["flood-build"],
                           criteria={"test.pass": "pass", "build": "pass"})
    session = FakeSession({
        "flood": Scripted(exit_code=1, output="\n".join(lines), tail_lines=200),
        "flood-build": Scripted(exit_code=1, output="\n".join(lines), tail_lines=200),
    })
    settings = load_settings({"DEVTEAM_LIMITS_OUTPUT_TAIL_BYTES": "100000"})

    result = Verifier(settings).verify("1.1", {}, config, session)

    assert not result.success
    for command in result.commands:
        marker, _, kept = command.output_tail.partition("\n")
        assert marker.startswith("… ") and "bytes of output dropped" in marker
        assert "limit 100,000 bytes kept per command" in marker
        assert len(kept.encode()) <= 100_000
        assert kept.endswith(lines[-1])  # the end, where a failure is reported, is kept
    assert result.feedback is not None and len(result.feedback) <= 4000
