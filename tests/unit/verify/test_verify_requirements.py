"""Reading requirement texts and checking values against them."""

from __future__ import annotations

import pytest

from runner.errors import Classification, ConfigError
from runner.verify.requirements import check, parse_requirement


@pytest.mark.parametrize(
    ("text", "op", "value", "unit"),
    [
        ("≥80%", ">=", 80.0, "%"),
        (">= 80%", ">=", 80.0, "%"),
        ("=> 80 %", ">=", 80.0, "%"),
        (">80", ">", 80.0, None),
        ("80%", ">=", 80.0, "%"),
        ("80", ">=", 80.0, None),
        ("at least 75.5 percent", ">=", 75.5, "%"),
        ("0 errors", "<=", 0.0, "errors"),
        ("≤ 5 errors", "<=", 5.0, "errors"),
        ("< 3 errors", "<", 3.0, "errors"),
        ("no errors", "<=", 0.0, "errors"),
        ("1 error", "<=", 1.0, "errors"),
        ("== 100%", "==", 100.0, "%"),
        ("pass", "pass", None, None),
        ("exit 0", "pass", None, None),
        ("Passing", "pass", None, None),
        ("docs/api.md", "path", "docs/api.md", None),
        ("`README.md`", "path", "README.md", None),
        ("./docs/", "path", "docs/", None),
    ],
)
def test_given_a_requirement_text_then_it_is_read(text, op, value, unit):
    req = parse_requirement(text)

    assert (req.op, req.value, req.unit) == (op, value, unit)
    assert req.raw == text.strip()


def test_given_a_path_criterion_then_a_plain_word_is_a_path():
    req = parse_requirement("CHANGELOG", path=True)

    assert (req.op, req.value) == ("path", "CHANGELOG")
    assert check(parse_requirement("docs", path=True), ["docs/index.md"]) is True
    assert check(parse_requirement("docs", path=True), ["docsite/index.md"]) is False
    with pytest.raises(ConfigError):
        parse_requirement("CHANGELOG")


def test_given_a_bare_number_then_the_criterion_decides_the_direction():
    assert parse_requirement("0", default_op="<=").op == "<="
    assert parse_requirement("80").op == ">="


@pytest.mark.parametrize(
    "text", ["lots", "", "   ", "80%%", "≥ eighty", "101%", "../secrets.txt", "fast enough"]
)
def test_given_nonsense_then_a_config_error_names_it(text):
    with pytest.raises(ConfigError) as caught:
        parse_requirement(text)

    assert caught.value.classification is Classification.CONFIG
    if text.strip():
        assert repr(text.strip()) in caught.value.message


@pytest.mark.parametrize(
    ("text", "actual", "passed"),
    [
        ("≥80%", 80.0, True),
        ("≥80%", 79.99, False),
        (">80", 80, False),
        ("0 errors", 0, True),
        ("0 errors", 2, False),
        ("≤ 5 errors", 5, True),
        ("≥80%", None, False),
        ("pass", True, True),
        ("pass", False, False),
        ("pass", 0, True),
        ("pass", 1, False),
        ("docs/api.md", ["src/a.py", "docs/api.md"], True),
        ("docs/api.md", ["src/a.py"], False),
        ("docs/", ["docs/guide/intro.md"], True),
        ("README.md", "README.md", False),
    ],
)
def test_given_an_actual_value_then_check_compares_it(text, actual, passed):
    assert check(parse_requirement(text), actual) is passed


@pytest.mark.parametrize(("text", "actual", "passes"), [
    ("≥80%", float("inf"), False),
    ("≥80%", float("nan"), False),
    ("≤5 errors", float("-inf"), False),
    ("≥80%", 10**400, True),  # compared exactly: no OverflowError
    ("0 errors", 10**400, False),
    ("0 errors", 0, True),
])
def test_a_comparison_never_passes_a_non_finite_value_nor_overflows(text, actual, passes):
    assert check(parse_requirement(text), actual) is passes
