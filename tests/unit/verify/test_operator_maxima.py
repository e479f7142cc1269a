"""What a repository may set only lowers the operator's limits, and what it writes cannot be
made an infrastructure failure by nesting."""

from __future__ import annotations

import pytest
from tests.unit.verify.fake_session import FakeSession, Scripted

from runner.errors import Classification, ConfigError
from runner.settings import load_settings
from runner.verify.config import ProjectConfig, parse_project_file
from runner.verify.evaluate import coverage_percent, read_coverage
from runner.verify.verifier import Verifier, command_timeout

PY = ProjectConfig(
    kind="python",
    test="python3 -m coverage run -m pytest -q",
    coverage="python3 -m coverage json -q -o .devteam-coverage.json",
    coverage_report=".devteam-coverage.json",
    criteria={"test.pass": "pass"},
)
OPERATOR = load_settings({"DEVTEAM_SANDBOX_COMMAND_TIMEOUT_SECONDS": "15"})
NESTED = b"[" * 100_000 + b"]" * 100_000


def with_limit(seconds: int | None) -> ProjectConfig:
    limits = f"[limits]\ntimeout_seconds = {seconds}\n" if seconds else ""
    parsed = parse_project_file(limits)
    return ProjectConfig(**{**{f: getattr(PY, f) for f in PY.__struct_fields__},
                            "timeout_seconds": parsed.limits.timeout_seconds})


@pytest.mark.parametrize(("repository", "effective"), [
    (86_400, 15),  # the attack: a day, against the operator's 15 s
    (16, 15),
    (15, 15),
    (5, 5),  # lowering is the repository's to choose
    (None, 15),
])
def test_given_a_repository_timeout_then_the_operator_limit_is_a_maximum(repository, effective):
    config = with_limit(repository)
    assert command_timeout(config, OPERATOR) == effective

    session = FakeSession({PY.test: Scripted(output="1 passed")})
    Verifier(OPERATOR).verify("1.1", {}, config, session)

    assert [(c.command, c.timeout) for c in session.calls] == [(PY.test, float(effective))]


def test_given_a_deeply_nested_coverage_report_then_it_is_a_config_error():
    # the attack: json.loads raised RecursionError, which reached the engine as an
    # "internal error" and was retried as infrastructure
    with pytest.raises(ConfigError) as refused:
        coverage_percent(NESTED)
    assert refused.value.classification is Classification.CONFIG
    assert "nested too deeply" in refused.value.message
    with pytest.raises(ConfigError, match="nested too deeply"):
        read_coverage(NESTED)  # the files it measured come from the same, refused, parse


def test_given_a_nested_report_written_by_the_tests_then_verify_raises_config():
    session = FakeSession({
        PY.test: Scripted(output="1 passed", writes={".devteam-coverage.json": NESTED}),
        PY.coverage: Scripted(),
    })
    config = ProjectConfig(**{**{f: getattr(PY, f) for f in PY.__struct_fields__},
                              "criteria": {"test.coverage": ">=80%"}})

    with pytest.raises(ConfigError) as refused:
        Verifier(OPERATOR).verify("1.1", {}, config, session)
    assert refused.value.details == {"key": "reports.coverage"}
