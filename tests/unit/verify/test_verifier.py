"""The Verifier against a scripted session: what runs, in which order, and what it concludes."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from tests.unit.verify.fake_session import FakeSession, Scripted

from runner.errors import CancelledError, ConfigError, VerificationError
from runner.settings import load_settings
from runner.verify.config import ProjectConfig, detect_defaults
from runner.verify.verifier import Verifier

SAMPLES = Path(__file__).parent / "samples"
PY = ProjectConfig(
    kind="python",
    test="python3 -m coverage run -m pytest -q",
    coverage="python3 -m coverage json -q -o .devteam-coverage.json",
    coverage_report=".devteam-coverage.json",
    typecheck="mypy --strict .",
    criteria={"test.pass": "pass"},
)
NODE = ProjectConfig(
    kind="node",
    test="npm test",
    coverage_report="coverage/coverage-summary.json",
    typecheck="npx tsc --noEmit",
    build=["npm run build"],
)


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def python_session(**overrides: Scripted) -> FakeSession:
    script = {
        PY.test: Scripted(output="..\n2 passed in 0.17s"),
        PY.coverage: Scripted(writes={".devteam-coverage.json": sample("coveragepy.json")}),
        PY.typecheck: Scripted(output=sample("mypy_success.txt").decode()),
    }
    script.update(overrides)
    return FakeSession(script)


@pytest.fixture
def verifier() -> Verifier:
    return Verifier(load_settings({}))


def test_given_a_passing_python_task_then_success_with_every_result(verifier):
    session = python_session()
    lines: list[str] = []

    result = verifier.verify(
        "1.1",
        {"test.coverage": "≥70%", "type.strict": "0 errors"},
        PY,
        session,
        on_line=lines.append,
    )

    assert result.success is True
    assert result.feedback is None
    assert set(result.results) == {"test.pass", "test.coverage", "type.strict"}
    assert result.results["test.coverage"].actual == 73.33
    assert result.results["type.strict"].actual == 0
    assert [c.command for c in result.commands] == [PY.test, PY.coverage, PY.typecheck]
    assert session.commands[0] == "rm -f .devteam-coverage.json"
    assert "2 passed in 0.17s" in lines
    assert all(c.timeout == 900 for c in session.calls[1:])
    assert all(c.env and c.env["CI"] == "1" for c in session.calls)


def test_given_low_coverage_then_failure_with_feedback_naming_it(verifier):
    result = verifier.verify("1.1", {"test.coverage": "≥80%"}, PY, python_session())

    assert result.success is False
    assert result.results["test.coverage"].passed is False
    assert "- test.coverage: required ≥80%, got 73.33" in result.feedback


def test_given_type_errors_then_the_count_and_mypy_output_reach_the_feedback(verifier):
    session = python_session(
        **{
            "mypy --strict .": Scripted(
                exit_code=1, output=sample("mypy_three_errors.txt").decode()
            )
        }
    )

    result = verifier.verify("1.1", {"type.strict": "0 errors"}, PY, session)

    assert result.results["type.strict"].actual == 3
    assert "$ mypy --strict .  [exit 1]" in result.feedback
    assert "Found 3 errors in 2 files" in result.feedback


def test_given_more_type_errors_than_the_tail_holds_then_all_are_counted(verifier):
    output = "\n".join(f"src/f{i}.ts({i},1): error TS2322: bad" for i in range(120))
    config = ProjectConfig(typecheck="npx tsc --noEmit")
    session = FakeSession({"npx tsc --noEmit": Scripted(exit_code=2, output=output, tail_lines=30)})

    result = verifier.verify("2.1", {"type.strict": "≤ 5 errors"}, config, session)

    assert result.results["type.strict"].actual == 120
    assert result.results["type.strict"].passed is False


def test_given_failing_tests_then_test_pass_fails_and_the_tail_is_feedback(verifier):
    session = python_session(
        **{
            PY.test: Scripted(
                exit_code=1,
                output="F.\nFAILED tests/test_calc.py::test_add - assert 4 == 5\n"
                "1 failed, 1 passed in 0.2s",
            )
        }
    )

    result = verifier.verify("1.1", {}, PY, session)

    assert result.success is False
    assert result.results["test.pass"].actual == "exit 1"
    assert "FAILED tests/test_calc.py::test_add" in result.feedback
    assert PY.typecheck not in session.commands  # not asked for


def test_given_a_node_project_then_the_istanbul_summary_written_by_npm_test_is_read(verifier):
    session = FakeSession(
        {
            "npm test": Scripted(
                writes={"coverage/coverage-summary.json": sample("istanbul_summary.json")}
            )
        }
    )

    result = verifier.verify("3.1", {"test.coverage": "≥90%", "build": "pass"}, NODE, session)

    assert result.results["test.coverage"].actual == 92.86
    assert result.success is True
    assert [c.command for c in result.commands] == ["npm test", "npm run build"]


def test_given_a_stale_report_in_the_repository_then_it_is_not_trusted(verifier):
    session = FakeSession(
        {"npm test": Scripted(exit_code=1, output="jest crashed")},
        files={"coverage/coverage-summary.json": b'{"total": {}}'},
    )

    result = verifier.verify("3.1", {"test.coverage": "80%"}, NODE, session)

    assert result.results["test.coverage"].passed is False
    assert "was not produced" in result.results["test.coverage"].detail


class _RefusingSession(FakeSession):
    """The real session refuses a report path that is a directory or over the size limit."""

    def read_file(self, path: str) -> bytes | None:
        raise VerificationError(f"{path} is a directory, not a report file",
                                details={"path": path})


def test_given_a_report_the_session_refuses_then_coverage_fails_as_a_round_with_feedback(
    verifier,
):
    session = _RefusingSession({
        PY.test: Scripted(output="..\n2 passed in 0.17s"),
        PY.typecheck: Scripted(output=sample("mypy_success.txt").decode()),
    })

    result = verifier.verify("1.1", {"test.coverage": "≥70%", "type.strict": "0 errors"},
                             PY, session)

    assert result.success is False
    coverage = result.results["test.coverage"]
    assert coverage.passed is False and coverage.actual is None
    assert coverage.detail == ".devteam-coverage.json is a directory, not a report file"
    assert result.results["type.strict"].passed is True
    assert result.feedback is not None and "is a directory" in result.feedback


def test_given_free_text_criteria_then_they_are_notes_not_results(verifier):
    result = verifier.verify(
        "1.1", {"criterion 1": "The page loads in under 2 s"}, PY, python_session()
    )

    assert result.notes == ["criterion 1: The page loads in under 2 s"]
    assert "criterion 1" not in result.results


def test_given_doc_updated_then_the_changed_paths_decide(verifier):
    config = ProjectConfig()

    touched = verifier.verify(
        "1.1", {"doc.updated": "docs/api.md"}, config, FakeSession(), ["docs/api.md", "src/x.py"]
    )
    untouched = verifier.verify(
        "1.1", {"doc.updated": "docs/api.md"}, config, FakeSession(), ["src/x.py"]
    )

    assert touched.success is True
    assert touched.commands == []
    assert untouched.success is False


def test_given_a_failing_setup_then_nothing_else_runs_and_every_check_fails(verifier):
    config = ProjectConfig(
        setup=["npm ci"], test="npm test", coverage_report="coverage/coverage-summary.json"
    )
    session = FakeSession({"npm ci": Scripted(exit_code=1, output="npm ERR! network")})

    result = verifier.verify(
        "1.1", {"test.pass": "pass", "doc.updated": "README.md"}, config, session, ["README.md"]
    )

    assert session.commands == ["npm ci"]
    assert result.success is False
    assert "setup failed" in result.results["test.pass"].detail
    assert result.results["doc.updated"].passed is True
    assert "npm ERR! network" in result.feedback


def test_given_a_criterion_without_its_command_then_config_error_before_running(verifier):
    session = FakeSession()

    with pytest.raises(ConfigError, match=r"\[commands\] typecheck"):
        verifier.verify(
            "1.1", {"type.strict": "0 errors"}, ProjectConfig(test="make test"), session
        )
    with pytest.raises(ConfigError, match="criterion test.coverage"):
        verifier.verify("1.1", {"test.coverage": "lots"}, PY, session)
    assert session.calls == []


def test_given_task_criteria_then_they_override_project_defaults(verifier):
    config = ProjectConfig(**{**_fields(PY), "criteria": {"test.coverage": "≥90%"}})

    result = verifier.verify("1.1", {"test.coverage": "≥70%"}, config, python_session())

    assert result.results["test.coverage"].required == "≥70%"
    assert result.success is True


def test_given_a_command_killed_for_memory_then_the_result_shows_it(verifier):
    session = python_session(**{PY.test: Scripted(exit_code=137, oom_killed=True)})

    result = verifier.verify("1.1", {}, PY, session)

    assert result.success is False
    assert result.commands[0].oom_killed is True
    assert result.results["test.pass"].actual == "killed: out of memory"
    assert "[killed: out of memory]" in result.feedback


def test_given_cancel_during_a_command_then_verification_stops(verifier):
    cancel = threading.Event()
    session = python_session(**{PY.test: Scripted(exit_code=-1, cancelled=True)})

    with pytest.raises(CancelledError):
        verifier.verify("1.1", {"type.strict": "0 errors"}, PY, session, cancel=cancel)

    assert PY.typecheck not in session.commands


def test_given_a_project_timeout_then_each_command_gets_it(verifier):
    config = ProjectConfig(**{**_fields(PY), "timeout_seconds": 42})
    session = python_session()

    verifier.verify("1.1", {}, config, session)

    assert {c.timeout for c in session.calls if not c.command.startswith("rm ")} == {42.0}


def test_feedback_is_trimmed(verifier):
    small = Verifier(load_settings({}), feedback_chars=300)
    session = python_session(**{PY.test: Scripted(exit_code=1, output="x" * 5000)})

    result = small.verify("1.1", {}, PY, session)

    assert len(result.feedback) <= 300
    assert result.feedback.endswith("(trimmed)")


def test_detected_python_defaults_work_end_to_end(verifier, tmp_path):
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'calc'\n")
    config = detect_defaults(tmp_path)

    result = verifier.verify("1.1", {"test.coverage": "≥70%"}, config, python_session())

    assert result.success is True


def _fields(config: ProjectConfig) -> dict:
    return {name: getattr(config, name) for name in config.__struct_fields__}
