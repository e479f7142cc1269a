"""retry_policy() and the outcomes of failures a handler raised, over every
classification and number of starts; on_claim() over every stage and status."""

from __future__ import annotations

import itertools

import msgspec
import pytest

from pipeline.decide import (
    CRASH_DETAIL_CHARS,
    OnClaim,
    RetryDecision,
    Verdict,
    backoff,
    claims_exhausted,
    crash_error,
    exhausted_outcome,
    failure_outcome,
    on_claim,
    park,
    retry_policy,
    stopped,
)
from pipeline.lifecycle import TERMINAL, PauseReason, Stage, StageStatus, Status
from pipeline.outbox import StageCommand
from runner.errors import Classification, RunnerError
from runner.settings import PipelineSettings

POLICY = PipelineSettings(stage_retries=5, stage_retry_max_seconds=30.0)
RAN = StageCommand(execution_id="e", stage="SETUP", task_id="1.1", pass_no=2, attempt=3)


def test_transient_and_infrastructure_failures_back_off_then_become_fatal() -> None:
    delays = []
    for claims in range(1, 9):
        decision = retry_policy(Classification.TRANSIENT, claims, POLICY)
        if claims <= POLICY.stage_retries:
            assert decision.verdict is Verdict.RETRY
            delays.append(decision.delay)
        else:
            assert decision == RetryDecision(verdict=Verdict.FAIL)
    # waits double from 2 s and are capped (DEVTEAM_PIPELINE_STAGE_RETRY_MAX_SECONDS)
    assert delays == [2.0, 4.0, 8.0, 16.0, 30.0]
    assert retry_policy(Classification.INFRASTRUCTURE, 1, POLICY).delay == 2.0


def test_every_classification_and_start_count() -> None:
    for kind, claims in itertools.product(Classification, range(1, 10)):
        decision = retry_policy(kind, claims, POLICY)
        if kind is Classification.CANCELLED:
            expected = Verdict.CANCEL
        elif kind is Classification.ENVIRONMENT:
            expected = Verdict.REVIEW  # never retried, never fatal: a person looks
        elif kind in (Classification.TRANSIENT, Classification.INFRASTRUCTURE):
            expected = Verdict.RETRY if claims <= POLICY.stage_retries else Verdict.FAIL
        else:
            expected = Verdict.FAIL  # tool, verification, conflict, config, resource limit
        assert decision.verdict is expected, (kind, claims)
        if expected is Verdict.RETRY:
            assert 0 < decision.delay <= POLICY.stage_retry_max_seconds
        else:
            assert decision.delay == 0.0


def test_retries_are_bounded_by_the_setting() -> None:
    for retries in range(4):
        policy = PipelineSettings(stage_retries=retries, stage_retry_max_seconds=5.0)
        retried = [c for c in range(1, 20)
                   if retry_policy(Classification.TRANSIENT, c, policy).verdict is Verdict.RETRY]
        assert retried == list(range(1, retries + 1))
        # a run started more often than its retries allow is not run again
        assert [c for c in range(1, 20) if not claims_exhausted(c, policy)] == list(
            range(1, retries + 2))
        assert all(backoff(c, policy) <= 5.0 for c in range(1, 40))


@pytest.mark.parametrize("kind", list(Classification))
def test_the_outcome_of_a_raised_error(kind: Classification) -> None:
    error = RunnerError("boom", classification=kind)
    outcome = failure_outcome(RAN, error, 1, POLICY)
    if kind is Classification.CANCELLED:
        assert outcome.status is StageStatus.CANCELLED and outcome.error is None
        assert outcome.result == {"cancelled": True}
    elif kind is Classification.ENVIRONMENT:
        # recorded, paused for review; resume runs the same stage again, next attempt
        assert outcome.status is StageStatus.FAILED and outcome.error is error
        assert outcome.record_error and not outcome.fatal
        assert outcome.pause_reason is PauseReason.HUMAN_REVIEW
        assert outcome.next == StageCommand(execution_id="e", stage="SETUP", task_id="1.1",
                                            pass_no=2, attempt=4)
    elif kind.retryable:
        assert outcome.status is StageStatus.RETRYING and outcome.result == {"retryIn": 2.0}
        assert not outcome.fatal and outcome.next is None
    else:
        assert outcome.status is StageStatus.FAILED and outcome.fatal
        assert outcome.error is error and outcome.next is None


def test_an_exhausted_run_is_fatal_and_says_how_often_it_started() -> None:
    outcome = exhausted_outcome(RAN, 7)
    assert outcome.fatal and outcome.status is StageStatus.FAILED
    assert outcome.error is not None
    assert outcome.error.classification is Classification.INFRASTRUCTURE
    assert "SETUP was started 6 times" in outcome.error.message


def test_stage_status_values_are_the_stored_ones() -> None:
    assert [s.value for s in StageStatus] == [
        "running", "succeeded", "failed", "retrying", "cancelled"]
    assert msgspec.json.encode({"s": StageStatus.RETRYING}) == b'{"s":"retrying"}'


def test_what_a_worker_does_with_a_delivered_command() -> None:
    for stage, state in itertools.product(Stage, Status):
        verdict = on_claim(stage, state)
        if stage is Stage.FINALIZE or state in (Status.IDLE, Status.INITIALIZING,
                                                Status.RUNNING):
            expected = OnClaim.RUN
        elif state in TERMINAL:
            expected = OnClaim.ENDED
        elif state is Status.PAUSED:
            expected = OnClaim.PARK
        else:
            expected = OnClaim.STOPPING
        assert verdict is expected, (stage, state)
    assert stopped("e") == StageCommand(execution_id="e", stage="FINALIZE", outcome="stopped")


def test_the_first_parked_command_stays() -> None:
    assert park(None, RAN) == {"pending_command": msgspec.to_builtins(RAN)}
    assert park({"stage": "MERGE"}, RAN) == {}


def test_a_crash_is_an_infrastructure_failure_named_by_its_type_with_its_text_redacted() -> None:
    secret = "ghp_" + "x" * 36
    exc = KeyError(f"token {secret} " + "y" * 5000)
    error = crash_error("MERGE", exc, lambda s: s.replace(secret, "[REDACTED]"))
    assert error.classification is Classification.INFRASTRUCTURE
    assert error.message == "internal error in MERGE: KeyError"
    detail = error.details["exception"]
    assert secret not in detail and "[REDACTED]" in detail
    assert len(detail) == CRASH_DETAIL_CHARS
    # retried like any infrastructure failure, then fatal
    assert failure_outcome(RAN, error, 1, POLICY).status is StageStatus.RETRYING
    assert failure_outcome(RAN, error, POLICY.stage_retries + 1, POLICY).fatal


def test_input_nested_too_deeply_is_config_and_never_retried() -> None:
    error = crash_error("VERIFY", RecursionError("maximum recursion depth exceeded"), str)
    assert error.classification is Classification.CONFIG
    assert error.message.startswith("VERIFY: something the repository holds is nested")
    assert failure_outcome(RAN, error, 1, POLICY).fatal
