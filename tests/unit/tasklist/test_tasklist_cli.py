"""``devteam tasks``: list, next, validate, set-status; and finding the list in a directory."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from runner.settings import PROJECT_ROOT
from runner.tasklist import TASK_LIST_NAMES, TaskList, find_task_list
from runner.tasklist.cli import app

FULL = PROJECT_ROOT.parent / "shared" / "fixtures" / "clarity_tasks_list_full.md"
IN_PROGRESS = PROJECT_ROOT.parent / "shared" / "fixtures" / "clarity_tasks_list_in_progress.md"

runner = CliRunner()


def run(*args: str | Path):
    return runner.invoke(app, [str(arg) for arg in args])


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    shutil.copyfile(IN_PROGRESS, tmp_path / "tasks_list.md")
    return tmp_path


def test_given_a_directory_when_next_json_then_the_task_definition_is_printed(repo):
    result = run("next", repo, "--json")

    assert result.exit_code == 0, result.output
    task = json.loads(result.stdout)
    assert (task["id"], task["type"], task["status"], task["parent"]) == (
        "2.1.1",
        "atomic",
        "pending",
        "2.1",
    )
    assert set(task) == {
        "id",
        "title",
        "description",
        "type",
        "dependencies",
        "files",
        "criteria",
        "notes",
        "status",
        "parent",
    }


def test_given_a_finished_list_when_next_json_then_null_is_printed(tmp_path):
    path = tmp_path / "list.md"
    path.write_text("- [x] 1.1 Done\n- [x] 1.2 Done too\n")

    result = run("next", path, "--json")

    assert (result.exit_code, json.loads(result.stdout)) == (0, None)
    assert run("next", path).stdout.strip() == "all tasks are done"


def test_given_a_file_when_next_then_one_line_names_the_task():
    result = run("next", FULL)

    assert result.exit_code == 0
    assert result.stdout == '1.1.1 Build images: run "docker compose build"\n'


def test_given_a_file_when_list_json_then_every_task_is_printed_in_file_order():
    result = run("list", FULL, "--json")

    assert result.exit_code == 0
    tasks = json.loads(result.stdout)["tasks"]
    assert [task["id"] for task in tasks] == [
        task.id for task in TaskList.parse(FULL.read_text(encoding="utf-8")).tasks
    ]
    assert tasks[0]["type"] == "phase"


def test_given_a_file_when_list_then_tasks_are_shown_indented_with_their_marks(repo):
    result = run("list", repo)

    lines = result.stdout.splitlines()
    assert lines[0] == "[x] 1 Foundations & Ops Validation"
    assert lines[1] == "  [x] 1.1 Compose up/down scripts verified"
    assert "    [ ] 2.1.1 Add router mount for events in API" in lines
    assert lines[-1] == "13/79 tasks done"


def test_given_a_valid_list_when_validated_then_it_exits_0_with_the_count():
    result = run("validate", IN_PROGRESS)

    assert (result.exit_code, result.stdout) == (0, "valid: 127 tasks\n")


def test_given_a_broken_list_when_validated_then_each_problem_names_file_and_line(tmp_path):
    path = tmp_path / "tasks_list.md"
    path.write_text("- [ ] 1.1 A (Dependencies: [9])\n- [ ] 1.1 B\n")

    result = run("validate", path)

    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f"{path}:1: task 1.1 depends on unknown task 9",
        f"{path}:2: duplicate task id 1.1 (first defined on line 1)",
    ]
    broken = run("next", path, "--json")
    assert (broken.exit_code, broken.stdout) == (1, "")
    assert f"{path}:1: task 1.1 depends on unknown task 9" in broken.stderr


def test_given_a_step_when_set_status_then_the_file_changes_in_that_token_only(repo):
    path = repo / "tasks_list.md"
    before = path.read_bytes()

    result = run("set-status", repo, "2.1.1", "done")

    assert (result.exit_code, result.stdout) == (0, "2.1.1: pending -> done\n")
    after = path.read_bytes()
    assert after == before.replace(b"  - 2.1.1 Add", b"  - [x] 2.1.1 Add")
    assert json.loads(run("next", repo, "--json").stdout)["id"] == "2.1.2"
    assert sorted(p.name for p in repo.iterdir()) == ["tasks_list.md"]  # no temp file left


def test_given_set_status_with_completed_then_it_means_done(repo):
    assert run("set-status", repo, "2.1.1", "completed").exit_code == 0
    assert run("set-status", repo, "2.1.1", "in_progress").stdout == (
        "2.1.1: done -> in_progress\n"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("9.9.9", "done"), "no task '9.9.9'"),
        (("2.1", "done"), "only atomic tasks"),
        (("2.1.1", "finished"), "unknown status 'finished'"),
        (("1.1.1", "pending"), "completed comment block"),
    ],
)
def test_given_a_request_that_does_not_fit_when_set_status_then_it_exits_1(repo, args, message):
    before = (repo / "tasks_list.md").read_bytes()

    result = run("set-status", repo, *args)

    assert result.exit_code == 1
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert (repo / "tasks_list.md").read_bytes() == before


def test_given_no_list_when_any_command_runs_then_it_exits_2_with_a_message(tmp_path):
    for command in ("list", "next", "validate"):
        result = run(command, tmp_path)
        assert result.exit_code == 2
        assert "no tasks_list.md or task_lists.md in" in result.stderr
    missing = run("next", tmp_path / "nope.md")
    assert (missing.exit_code, "does not exist" in missing.stderr) == (2, True)


def test_given_a_file_that_is_not_utf8_then_it_exits_2(tmp_path):
    path = tmp_path / "tasks_list.md"
    path.write_bytes(b"- [ ] 1.1 caf\xe9\n")

    result = run("validate", path)

    assert (result.exit_code, "not UTF-8" in result.stderr) == (2, True)


def test_given_either_name_then_the_list_is_found_in_a_directory(tmp_path):
    assert TASK_LIST_NAMES == ("tasks_list.md", "task_lists.md")
    assert find_task_list(tmp_path) is None
    (tmp_path / "task_lists.md").write_text("- [ ] 1.1 A\n")
    assert find_task_list(tmp_path) == tmp_path.resolve() / "task_lists.md"
    (tmp_path / "tasks_list.md").write_text("- [ ] 1.1 A\n")
    assert find_task_list(tmp_path) == tmp_path.resolve() / "tasks_list.md"


def test_given_the_clarity_layout_then_the_list_is_found_under_ai_docs(tmp_path):
    nested = tmp_path / "ai_docs" / "tasks"
    nested.mkdir(parents=True)
    (nested / "tasks_list.md").write_text("- [ ] 1.1 A\n")

    assert find_task_list(tmp_path) == tmp_path.resolve() / "ai_docs/tasks/tasks_list.md"


def test_given_a_configured_path_then_only_it_is_used_and_it_must_stay_inside(tmp_path):
    (tmp_path / "plan").mkdir()
    (tmp_path / "plan" / "work.md").write_text("- [ ] 1.1 A\n")
    (tmp_path / "tasks_list.md").write_text("- [ ] 1.1 A\n")

    assert find_task_list(tmp_path, "plan/work.md") == tmp_path.resolve() / "plan/work.md"
    assert find_task_list(tmp_path, "plan/other.md") is None
    for bad in ("../outside.md", "/etc/passwd", "plan/../../x.md"):
        with pytest.raises(ValueError, match="task list path"):
            find_task_list(tmp_path, bad)


UNNUMBERED = "## Phase 1 \u2014 Setup\n\n- [ ] Create the repository\n- [x] Add CI\n"


def test_given_a_list_without_tasks_when_validated_then_it_fails_with_the_expected_form(
    tmp_path,
):
    path = tmp_path / "tasks_list.md"
    path.write_text("# Roadmap\n\n## Phase 1 \u2014 Setup\n\n- Add a health endpoint\n")

    result = run("validate", path)

    assert result.exit_code == 1
    assert result.stdout.startswith(f"{path}: no tasks: expected lines like '- [ ] 1.1 ")


def test_given_unnumbered_checkboxes_when_validated_then_the_generated_ids_are_pointed_out(
    tmp_path,
):
    path = tmp_path / "tasks_list.md"
    path.write_text(UNNUMBERED)

    result = run("validate", path)

    assert (result.exit_code, result.stdout) == (0, (
        "valid: 3 tasks (2 without an id in the file: 'devteam tasks normalize' writes "
        "them in)\n"))
    assert path.read_text() == UNNUMBERED  # reading never writes


def test_given_unnumbered_checkboxes_when_normalized_then_their_ids_are_written_in(tmp_path):
    path = tmp_path / "tasks_list.md"
    path.write_text(UNNUMBERED)

    checked = run("normalize", path, "--check")
    assert (checked.exit_code, checked.stdout.splitlines()) == (1, [
        f"{path}:3: 'Create the repository' has no id (reads as 1.1)",
        f"{path}:4: 'Add CI' has no id (reads as 1.2)",
    ])
    assert path.read_text() == UNNUMBERED

    result = run("normalize", path)

    assert (result.exit_code, result.stdout) == (0, "wrote 2 ids: 1.1, 1.2\n")
    assert path.read_text() == UNNUMBERED.replace("] Create", "] 1.1 Create").replace(
        "] Add", "] 1.2 Add")
    again = run("normalize", path)
    assert (again.exit_code, again.stdout) == (0, "every task has its id in the file\n")
    assert run("set-status", path, "1.1", "done").exit_code == 0
    assert "- [x] 1.1 Create the repository" in path.read_text()


def test_given_unnumbered_checkboxes_when_set_status_by_generated_id_then_no_id_is_written(
    tmp_path,
):
    path = tmp_path / "tasks_list.md"
    path.write_text(UNNUMBERED)

    result = run("set-status", path, "1.1", "done")

    assert (result.exit_code, result.stdout) == (0, "1.1: pending -> done\n")
    assert path.read_text() == UNNUMBERED.replace("- [ ] Create", "- [x] Create")
