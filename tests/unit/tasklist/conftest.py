"""Fixtures of the task-list tests: the field task lists of ../shared/fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.settings import PROJECT_ROOT

FIXTURES = PROJECT_ROOT.parent / "shared" / "fixtures"
FULL = FIXTURES / "clarity_tasks_list_full.md"
IN_PROGRESS = FIXTURES / "clarity_tasks_list_in_progress.md"


def read(path: Path) -> str:
    return path.read_bytes().decode("utf-8")


@pytest.fixture
def full_text() -> str:
    return read(FULL)


@pytest.fixture
def in_progress_text() -> str:
    return read(IN_PROGRESS)
