"""Task branch names: task/<id with dashes>-<kebab title>, lowercase ASCII, short, valid."""

from __future__ import annotations

import re

import pygit2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner.git.branch import MAX_LENGTH, branch_name

VALID_BODY = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")


@pytest.mark.parametrize(
    ("task_id", "title", "expected"),
    [
        ("1.1", "Set up the API client", "task/1-1-set-up-the-api-client"),
        ("2.1.1", "Écrire la documentation", "task/2-1-1-ecrire-la-documentation"),
        ("3.4", "Straße & Æsir: Øresund (v2)!", "task/3-4-strasse-aesir-oresund-v2"),
        ("1.2", "  --Trim   me--  ", "task/1-2-trim-me"),
        ("4.1", "日本語のタイトル", "task/4-1"),
        ("INJ-7", "Resolve error: err_42", "task/inj-7-resolve-error-err-42"),
        ("5.1", "", "task/5-1"),
    ],
)
def test_given_a_task_then_its_branch_name_is_readable(task_id, title, expected):
    assert branch_name(task_id, title) == expected


def test_given_a_long_title_then_it_is_cut_at_a_dash_within_60_characters():
    title = "Implement the customer relationship management synchronisation engine"

    name = branch_name("12.3.4", title)

    body = name.removeprefix("task/")
    assert len(body) <= MAX_LENGTH
    assert body == "12-3-4-implement-the-customer-relationship-management"
    assert not body.endswith("-")


def test_given_a_single_very_long_word_then_it_is_cut_hard():
    name = branch_name("1", "x" * 200)

    assert name == "task/1"  # the cut lands on the dash after the id


def test_given_an_id_without_ascii_then_a_stable_hash_stands_in():
    first = branch_name("…", "Title")

    assert first == branch_name("…", "Title")
    assert first.startswith("task/id-")
    assert first != branch_name("——", "Title")


@given(task_id=st.text(max_size=80), title=st.text(max_size=300))
def test_any_input_gives_a_short_valid_lowercase_ascii_ref(task_id, title):
    name = branch_name(task_id, title)

    assert name.startswith("task/")
    assert len(name) <= 65
    assert VALID_BODY.fullmatch(name.removeprefix("task/"))
    assert pygit2.reference_is_valid_name(f"refs/heads/{name}")
    assert branch_name(task_id, title) == name


@given(
    parts=st.lists(st.integers(min_value=0, max_value=999), min_size=1, max_size=4),
    title=st.text(alphabet=st.characters(codec="ascii"), max_size=200),
)
def test_dotted_ids_keep_their_numbers_in_order(parts, title):
    task_id = ".".join(map(str, parts))

    name = branch_name(task_id, title)

    assert name.removeprefix("task/").startswith("-".join(map(str, parts)))


def test_given_long_ids_that_differ_only_at_the_end_then_their_branches_differ():
    first = ".".join(["1"] * 32)
    second = ".".join(["1"] * 31 + ["2"])

    name = branch_name(first, "Title")

    assert name != branch_name(second, "Title")
    assert name == branch_name(first, "Another title")  # no room for a title: the id decides
    body = name.removeprefix("task/")
    assert len(body) <= MAX_LENGTH
    assert re.fullmatch(r"(1-){24}1-[0-9a-f]{10}", body)  # cut at a dash, then the hash


def test_given_an_id_that_just_fits_then_it_is_kept_whole_without_a_hash():
    task_id = ".".join(["1"] * 30)  # 59 characters as a branch name

    assert branch_name(task_id, "Title") == "task/" + "-".join(["1"] * 30)


@given(
    parts=st.lists(st.integers(min_value=0, max_value=99), min_size=31, max_size=60),
    other=st.lists(st.integers(min_value=0, max_value=99), min_size=31, max_size=60),
)
def test_distinct_ids_too_long_for_a_name_give_distinct_names(parts, other):
    first, second = ".".join(map(str, parts)), ".".join(map(str, other))

    names = branch_name(first, "T"), branch_name(second, "T")

    assert (names[0] == names[1]) == (first == second)
    assert all(len(name) <= len("task/") + MAX_LENGTH for name in names)
