"""npm's version ranges as ``engines.node`` and ``.nvmrc`` write them: ``NodeRange``."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner.setup.versions import MAX_COMPARATORS, NodeRange, RangeError, parse_version


def versions_in(text: str, candidates: list[str]) -> list[str]:
    wanted = NodeRange.parse(text)
    return [v for v in candidates if wanted.contains(parse_version(v))]


LINES = ["18.20.8", "20.11.1", "20.20.2", "21.7.3", "22.0.0", "22.23.5", "24.22.3", "26.12.1"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("*", LINES),
        ("", LINES),
        ("20", ["20.11.1", "20.20.2"]),
        ("v20", ["20.11.1", "20.20.2"]),
        ("20.x", ["20.11.1", "20.20.2"]),
        ("20.11", ["20.11.1"]),
        ("20.11.1", ["20.11.1"]),
        ("=20.11.1", ["20.11.1"]),
        (">=22", ["22.0.0", "22.23.5", "24.22.3", "26.12.1"]),
        (">= 22", ["22.0.0", "22.23.5", "24.22.3", "26.12.1"]),
        (">22", ["24.22.3", "26.12.1"]),
        (">22.0", ["22.23.5", "24.22.3", "26.12.1"]),
        (">22.0.0", ["22.23.5", "24.22.3", "26.12.1"]),
        ("<20", ["18.20.8"]),
        ("<=20", ["18.20.8", "20.11.1", "20.20.2"]),
        ("<=20.11", ["18.20.8", "20.11.1"]),
        (">=18 <21", ["18.20.8", "20.11.1", "20.20.2"]),
        ("^20.12", ["20.20.2"]),
        ("^22", ["22.0.0", "22.23.5"]),
        ("~20.11.0", ["20.11.1"]),
        ("~20", ["20.11.1", "20.20.2"]),
        ("~>20.11", ["20.11.1"]),
        ("18 || 22", ["18.20.8", "22.0.0", "22.23.5"]),
        ("^18.17.0 || >=20.5.0 <21 || >=24", ["18.20.8", "20.11.1", "20.20.2", "24.22.3",
                                              "26.12.1"]),
        ("20.11.1 - 22", ["20.11.1", "20.20.2", "21.7.3", "22.0.0", "22.23.5"]),
        ("20 - 22.0.0", ["20.11.1", "20.20.2", "21.7.3", "22.0.0"]),
        (">=20.0.0-rc.1", ["20.11.1", "20.20.2", "21.7.3", "22.0.0", "22.23.5", "24.22.3",
                           "26.12.1"]),
        ("<*", []),
        (">=24 <22", []),
    ],
)
def test_given_a_range_npm_understands_when_tested_then_exactly_its_versions_satisfy_it(
    text, expected
):
    assert versions_in(text, LINES) == expected


@pytest.mark.parametrize(
    ("text", "major", "admitted"),
    [
        ("20.11.1", 20, True),   # an exact pin still names the line
        ("~20.11.0", 20, True),
        (">=20.21", 20, True),   # 20.21 and later would do, had the line reached it
        ("<20", 20, False),
        (">=22", 20, False),
        ("^0.10", 0, True),
        ("^0.0.3", 0, True),
        ("^0.0.3", 1, False),
    ],
)
def test_given_a_range_when_asked_about_a_major_line_then_it_says_whether_the_line_meets_it(
    text, major, admitted
):
    assert NodeRange.parse(text).admits_line(major) is admitted


@pytest.mark.parametrize(
    ("text", "inside", "outside"),
    [
        ("^0.2.3", "0.2.9", "0.3.0"),
        ("^0.0.3", "0.0.3", "0.0.4"),
        ("^0.x", "0.9.9", "1.0.0"),
        ("^1.x", "1.9.0", "2.0.0"),
    ],
)
def test_given_a_caret_below_one_then_only_the_first_nonzero_part_is_held(text, inside, outside):
    wanted = NodeRange.parse(text)
    assert wanted.contains(parse_version(inside))
    assert not wanted.contains(parse_version(outside))


@pytest.mark.parametrize(
    "text",
    [
        "lts/*",              # an nvm alias, not a range (the toolchain reads those itself)
        "node 20",
        "20.1.2.3",
        ">=20 && <22",
        "1 - 2 - 3",
        "9" * 12,             # no absurd numbers
        "x" * 300,            # bounded length
        " ".join([">=1"] * (MAX_COMPARATORS + 1)),  # bounded comparators
        "20\0",
    ],
)
def test_given_text_that_is_no_range_when_parsed_then_it_is_refused(text):
    with pytest.raises(RangeError):
        NodeRange.parse(text)


@given(st.text(max_size=80))
def test_given_any_text_when_parsed_then_it_is_a_range_or_a_range_error(text):
    try:
        wanted = NodeRange.parse(text)
    except RangeError:
        return
    # whatever parsed answers both questions without raising
    wanted.contains((20, 0, 0))
    wanted.admits_line(20)


@given(st.integers(0, 40), st.integers(0, 40), st.integers(0, 40))
def test_given_an_exact_version_then_it_satisfies_itself_and_its_caret_and_tilde(a, b, c):
    version = (a, b, c)
    for text in (f"{a}.{b}.{c}", f"^{a}.{b}.{c}", f"~{a}.{b}.{c}", f">={a}.{b}.{c}",
                 f"<={a}.{b}.{c}", f"{a}.{b}.{c} - {a + 1}"):
        assert NodeRange.parse(text).contains(version), text
    assert not NodeRange.parse(f">{a}.{b}.{c}").contains(version)
    assert not NodeRange.parse(f"<{a}.{b}.{c}").contains(version)
