"""Typed stage results: what PREP stores is what it stored before (same keys), and later
stages decode every shape a stage records (a round that committed, a failed round, a
round stopped before its checks) from the stored JSON."""

from __future__ import annotations

import msgspec
import pytest

from pipeline.stages.results import (
    Check,
    Implemented,
    Merged,
    Prepared,
    PrepArtifacts,
    Verified,
)
from runner.git.results import MergeResult
from runner.ports import (
    CommandResult,
    CriterionResult,
    ImplementOutputs,
    OperationArtifact,
    VerificationResult,
)


def stored(value: object) -> dict[str, object]:
    """As it comes back from ``stage_runs.result`` (JSONB)."""
    decoded: dict[str, object] = msgspec.json.decode(msgspec.json.encode(value))
    return decoded


def test_prep_stores_the_keys_it_always_stored() -> None:
    prep = Prepared(task_id="1.1", branch="task/1-1-add-health", base_commit="a" * 40,
                    repo_path="/w/c/p/e", container="devteam-e-1-1-1",
                    artifacts=PrepArtifacts(cloned=True, branch_created=False))
    assert prep.wire() == {
        "taskId": "1.1", "branch": "task/1-1-add-health", "baseCommit": "a" * 40,
        "repoPath": "/w/c/p/e", "artifacts": {"cloned": True, "branchCreated": False},
        "container": "devteam-e-1-1-1",
    }
    assert msgspec.convert(stored(prep.wire()), Prepared) == prep


def test_a_prep_result_missing_its_base_commit_is_refused() -> None:
    wire = stored({"taskId": "1.1", "branch": "b", "repoPath": "/", "container": "c",
                   "artifacts": {"cloned": True, "branchCreated": True}})
    with pytest.raises(msgspec.ValidationError, match="baseCommit"):
        msgspec.convert(wire, Prepared)


def artifact(success: bool) -> dict[str, object]:
    art = OperationArtifact(
        operation="implement", task_id="1.1", tool="aider", success=success, duration=1.5,
        outputs=ImplementOutputs(diff="", stdout="Tokens: 10 sent", files_modified=["app.py"],
                                 lines_changed=3),
        error=None if success else {"classification": "tool", "message": "no change"})
    wire: dict[str, object] = msgspec.to_builtins(art)
    return wire


def test_implement_rounds_decode_from_what_implement_stores() -> None:
    committed = stored({**artifact(True), "commit": "b" * 40, "branch": "task/1-1"})
    assert msgspec.convert(committed, Implemented) == Implemented(
        commit="b" * 40, branch="task/1-1")
    failed = stored({**artifact(False), "feedback": "The previous attempt changed nothing."})
    assert msgspec.convert(failed, Implemented) == Implemented(
        feedback="The previous attempt changed nothing.")


def test_verify_rounds_decode_from_what_verify_stores() -> None:
    result = VerificationResult(
        task_id="1.1", success=False,
        results={"test.coverage": CriterionResult(passed=False, actual=72.5, required=80)},
        commands=[CommandResult(command="pytest", exit_code=1, duration=2.0,
                                output_tail="1 failed")],
        feedback="coverage 72.5% < 80%")
    wire = stored({**msgspec.to_builtins(result), "measures": {"testsRun": 3}})
    assert msgspec.convert(wire, Verified) == Verified(
        results={"test.coverage": Check(passed=False, actual=72.5)},
        feedback="coverage 72.5% < 80%")
    # a round paused before its checks (its environment failed) stored no results
    assert msgspec.convert(stored({"setup": {"failed": True}}), Verified) == Verified()
    # the protected-path refusal stores a commit and the paths
    assert msgspec.convert(stored({"protectedPaths": ["tasks.md"], "commit": "c" * 40}),
                           Verified) == Verified()


def test_merge_decodes_from_what_merge_stores() -> None:
    merged = MergeResult(commit="d" * 40, fast_forward=True, already_merged=False)
    assert msgspec.convert(stored(merged.to_dict()), Merged) == Merged(commit="d" * 40)
