"""Edits whose new text would read back as more than the edit are refused (ValueError),
never a KeyError from reading the edited list back (the gateway's PATCH gave a 500)."""

from __future__ import annotations

import pytest

from runner.tasklist import TaskList, TaskStatus

UNNUMBERED = "- [ ] Add CI\n- [ ] Add docs\n"


def test_given_an_item_when_its_title_would_make_it_a_phase_then_the_edit_is_refused():
    tasks = TaskList.parse("- [ ] Add CI\n")

    with pytest.raises(ValueError, match="new title would change more than that"):
        tasks.with_fields("1", title="Phase 2: z")


def test_given_an_unnumbered_item_when_its_title_starts_with_an_id_then_it_is_refused():
    tasks = TaskList.parse(UNNUMBERED)

    with pytest.raises(ValueError, match="new title"):
        tasks.with_fields("1", title="7 Add CI")


@pytest.mark.parametrize("description", ["- [ ] 2 Sneaky", "• files: src/x.py"])
def test_given_a_description_that_reads_as_a_task_or_a_field_then_it_is_refused(description):
    tasks = TaskList.parse(UNNUMBERED)

    with pytest.raises(ValueError, match="new description"):
        tasks.with_fields("1", description=description)


def test_given_an_ordinary_title_and_description_then_only_they_change():
    tasks = TaskList.parse(UNNUMBERED)

    updated = tasks.with_fields("1", title="Add CI on push", description="GitHub Actions.")

    assert [(t.id, t.title, t.description) for t in updated.tasks] == [
        ("1", "Add CI on push", "GitHub Actions."), ("2", "Add docs", "")]


def test_given_a_status_edit_then_the_shape_of_the_list_is_kept():
    tasks = TaskList.parse("- [ ] Phase 1: Base\n  - [ ] 1.1 One\n")

    updated = tasks.with_status("1.1", TaskStatus.DONE)

    assert [(t.id, t.parent, t.status) for t in updated.tasks] == [
        ("1", None, TaskStatus.DONE), ("1.1", "1", TaskStatus.DONE)]
