"""decide(): what follows a stage's outcome, as tables (DESIGN "Execution lifecycle").

The hand-written table states the rules case by case; the exhaustive test runs every
combination of stage, outcome status, execution status, stage-requested status, fatal,
finalize, next command, pause reason and stop point, and checks the rules that must hold
in each (stop wins, a pause parks, a stage never overrules a person, a retry is the same
command, FINALIZE is last and closes the execution even when it failed).
"""

from __future__ import annotations

import itertools

import msgspec
import pytest

from pipeline.decide import (
    Close,
    End,
    ExecutionView,
    Finalize,
    Hold,
    Next,
    Pause,
    Retry,
    Run,
    decide,
    reaches,
    stage_sets_status,
    status_after,
)
from pipeline.lifecycle import TERMINAL, PauseReason, Stage, StageStatus, Status
from pipeline.outbox import StageCommand
from pipeline.outcome import Outcome
from runner.errors import VerificationError

EXEC = "6f1c7a52-5d0e-4b53-9b7e-1f3f0d2d9a10"


def cmd(stage: Stage, task: str = "1.1", attempt: int = 1, pass_no: int = 1) -> StageCommand:
    return StageCommand(execution_id=EXEC, stage=stage.value, task_id=task, attempt=attempt,
                        pass_no=pass_no)


def view(status: Status = Status.RUNNING, stop_point: str | None = None) -> ExecutionView:
    return ExecutionView(id=EXEC, status=status, stop_point=stop_point)


FINALIZE_STOPPED = Finalize(execution_id=EXEC, status=Status.STOPPED)
FINALIZE_ERROR = Finalize(execution_id=EXEC, status=Status.ERROR, fatal=True)
FINALIZE_COMPLETED = Finalize(execution_id=EXEC, status=Status.COMPLETED)

# (ran, outcome, execution, expected): each row one rule of the lifecycle
TABLE: list[tuple[str, StageCommand, Outcome, ExecutionView, Next]] = [
    ("a success runs the next stage",
     cmd(Stage.PREP), Outcome(next=cmd(Stage.SETUP)), view(), Run(command=cmd(Stage.SETUP))),
    ("INIT's own 'running' applies while initializing",
     cmd(Stage.INIT, task=""),
     Outcome(next=cmd(Stage.SELECT, task="#1"), execution={"status": "running"}),
     view(Status.INITIALIZING), Run(command=cmd(Stage.SELECT, task="#1"))),
    ("a retry enqueues the same command after the delay it names",
     cmd(Stage.PREP, attempt=2),
     Outcome(status=StageStatus.RETRYING, result={"retryIn": 8.0}), view(),
     Retry(command=cmd(Stage.PREP, attempt=2), delay=8.0)),
    ("a retry without a delay waits one second",
     cmd(Stage.MERGE), Outcome(status=StageStatus.RETRYING), view(),
     Retry(command=cmd(Stage.MERGE), delay=1.0)),
    ("a retry is a retry even while stopping (its claim finalises)",
     cmd(Stage.PUSH), Outcome(status=StageStatus.RETRYING, result={"retryIn": 2}),
     view(Status.STOPPING), Retry(command=cmd(Stage.PUSH), delay=2.0)),
    ("nothing follows FINALIZE",
     cmd(Stage.FINALIZE, task=""), Outcome(execution={"status": "stopped"}),
     view(Status.STOPPING), End()),
    ("a FINALIZE that failed for good closes a stopping execution as stopped",
     cmd(Stage.FINALIZE, task=""), Outcome(status=StageStatus.FAILED, fatal=True),
     view(Status.STOPPING), Close(status=Status.STOPPED)),
    ("a FINALIZE cancelled (its lease lost) closes a running execution as error",
     cmd(Stage.FINALIZE, task=""), Outcome(status=StageStatus.CANCELLED),
     view(Status.RUNNING), Close(status=Status.ERROR)),
    ("a FINALIZE that failed keeps an ended execution's status",
     cmd(Stage.FINALIZE, task=""), Outcome(status=StageStatus.FAILED, fatal=True),
     view(Status.ERROR), Close(status=Status.ERROR)),
    ("stop wins over the next stage",
     cmd(Stage.IMPLEMENT), Outcome(next=cmd(Stage.VERIFY)), view(Status.STOPPING),
     FINALIZE_STOPPED),
    ("stop wins over a fatal error",
     cmd(Stage.VERIFY), Outcome(status=StageStatus.FAILED, fatal=True), view(Status.STOPPING),
     FINALIZE_STOPPED),
    ("stop wins over a pause the stage asks for",
     cmd(Stage.SETUP),
     Outcome(status=StageStatus.FAILED, pause_reason=PauseReason.HUMAN_REVIEW,
             next=cmd(Stage.SETUP, attempt=2)),
     view(Status.STOPPING), FINALIZE_STOPPED),
    ("a cancelled run ends stopped",
     cmd(Stage.IMPLEMENT), Outcome(status=StageStatus.CANCELLED), view(), FINALIZE_STOPPED),
    ("a fatal error ends in error, marking the execution at once",
     cmd(Stage.MERGE), Outcome(status=StageStatus.FAILED, fatal=True,
                               error=VerificationError("conflict")),
     view(), FINALIZE_ERROR),
    ("a fatal error while paused still ends in error",
     cmd(Stage.MERGE), Outcome(status=StageStatus.FAILED, fatal=True), view(Status.PAUSED),
     FINALIZE_ERROR),
    ("the stage ends the execution when nothing is left",
     cmd(Stage.SELECT, task="#3"), Outcome(finalize=Status.COMPLETED), view(),
     FINALIZE_COMPLETED),
    ("no next step: nothing is enqueued",
     cmd(Stage.DONE), Outcome(), view(), End()),
    ("a stage asking for review pauses holding its next command",
     cmd(Stage.SETUP),
     Outcome(status=StageStatus.FAILED, pause_reason=PauseReason.HUMAN_REVIEW,
             next=cmd(Stage.SETUP, attempt=2)),
     view(), Pause(command=cmd(Stage.SETUP, attempt=2), reason=PauseReason.HUMAN_REVIEW)),
    ("a person's pause holds the next command",
     cmd(Stage.VERIFY), Outcome(next=cmd(Stage.MERGE)), view(Status.PAUSED),
     Hold(command=cmd(Stage.MERGE))),
    ("a stage does not overrule a person's pause with its own status",
     cmd(Stage.INIT, task=""),
     Outcome(next=cmd(Stage.SELECT, task="#1"), execution={"status": "running"}),
     view(Status.PAUSED), Hold(command=cmd(Stage.SELECT, task="#1"))),
    ("a stop point naming a task pauses before its PREP",
     cmd(Stage.SELECT, task="#2"), Outcome(next=cmd(Stage.PREP, task="2.1")),
     view(stop_point="2.1"),
     Pause(command=cmd(Stage.PREP, task="2.1"), reason=PauseReason.STOP_POINT)),
    ("a stop point naming a task does not stop its other stages",
     cmd(Stage.PREP, task="2.1"), Outcome(next=cmd(Stage.SETUP, task="2.1")),
     view(stop_point="2.1"), Run(command=cmd(Stage.SETUP, task="2.1"))),
    ("a stop point naming a stage pauses before it, in any case",
     cmd(Stage.IMPLEMENT), Outcome(next=cmd(Stage.VERIFY)), view(stop_point="verify"),
     Pause(command=cmd(Stage.VERIFY), reason=PauseReason.STOP_POINT)),
    ("a stop point naming a stage pauses only before its first attempt",
     cmd(Stage.IMPLEMENT, attempt=2), Outcome(next=cmd(Stage.VERIFY, attempt=2)),
     view(stop_point="VERIFY"), Run(command=cmd(Stage.VERIFY, attempt=2))),
    ("a stage's own pause wins over a stop point",
     cmd(Stage.VERIFY),
     Outcome(status=StageStatus.FAILED, pause_reason=PauseReason.HUMAN_REVIEW,
             next=cmd(Stage.SELECT, task="#2")),
     view(stop_point="SELECT"),
     Pause(command=cmd(Stage.SELECT, task="#2"), reason=PauseReason.HUMAN_REVIEW)),
    ("a failed round with a next round goes on (the error is only recorded)",
     cmd(Stage.VERIFY),
     Outcome(status=StageStatus.FAILED, error=VerificationError("x"),
             next=cmd(Stage.IMPLEMENT, attempt=2)),
     view(), Run(command=cmd(Stage.IMPLEMENT, attempt=2))),
]


@pytest.mark.parametrize(("ran", "outcome", "execution", "expected"),
                         [row[1:] for row in TABLE], ids=[row[0] for row in TABLE])
def test_the_rules_case_by_case(ran: StageCommand, outcome: Outcome,
                                execution: ExecutionView, expected: Next) -> None:
    assert decide(ran, outcome, execution) == expected


def test_what_each_answer_stores_and_enqueues() -> None:
    nxt = cmd(Stage.VERIFY)
    assert Run(command=nxt).fields() == {}
    assert Run(command=nxt).enqueue() == (nxt, 0.0)
    assert Retry(command=nxt, delay=4.0).enqueue() == (nxt, 4.0)
    assert FINALIZE_ERROR.fields() == {"status": "error"}
    assert FINALIZE_STOPPED.fields() == {}
    finalize, delay = FINALIZE_STOPPED.enqueue() or (None, None)
    assert finalize == StageCommand(execution_id=EXEC, stage="FINALIZE", outcome="stopped")
    assert delay == 0.0
    held = {"pending_command": msgspec.to_builtins(nxt)}
    assert Hold(command=nxt).fields() == held
    assert Hold(command=nxt).enqueue() is None
    assert Pause(command=nxt, reason=PauseReason.HUMAN_REVIEW).fields() == {
        "status": "paused", "pause_reason": "human_review", **held}
    # a stop point that was reached is used up: resume does not stop there again
    assert Pause(command=nxt, reason=PauseReason.STOP_POINT).fields() == {
        "status": "paused", "pause_reason": "stop_point", "stop_point": None, **held}
    assert Pause(command=nxt, reason=PauseReason.USER).enqueue() is None
    assert End().fields() == {} and End().enqueue() is None
    assert Close(status=Status.STOPPED).fields() == {
        "status": "stopped", "pending_command": None, "current_stage": "FINALIZE"}
    assert Close(status=Status.ERROR).enqueue() is None


def test_a_stage_sets_the_status_only_while_initializing_or_running() -> None:
    for stage, state in itertools.product(Stage, Status):
        expected = stage is Stage.FINALIZE or state in (Status.INITIALIZING, Status.RUNNING)
        assert stage_sets_status(stage, state) is expected, (stage, state)


def test_stop_points_match_a_task_before_prep_or_a_stage_before_its_first_attempt() -> None:
    assert reaches("1.2", cmd(Stage.PREP, task="1.2"))
    assert not reaches("1.2", cmd(Stage.SETUP, task="1.2"))
    assert not reaches("1.2", cmd(Stage.PREP, task="1.20"))
    assert reaches("merge", cmd(Stage.MERGE))
    assert reaches("UPDATE_TASKLIST", cmd(Stage.UPDATE_TASKLIST))
    assert not reaches("merge", cmd(Stage.MERGE, attempt=2))
    assert not reaches("merge", cmd(Stage.PUSH))


# -- every combination -----------------------------------------------------------------------
NEXTS: list[StageCommand | None] = [
    None, cmd(Stage.PREP, task="2.1"), cmd(Stage.VERIFY), cmd(Stage.VERIFY, attempt=2),
    cmd(Stage.SELECT, task="#4"),
]
STOP_POINTS = [None, "2.1", "verify", "MERGE", "9.9"]
REQUESTED = [None, Status.RUNNING.value, Status.COMPLETED.value]
OUTCOMES = [
    Outcome(status=status, next=nxt, fatal=fatal, finalize=finalize, pause_reason=pause,
            execution={} if requested is None else {"status": requested},
            result={"retryIn": 3.0} if status is StageStatus.RETRYING else {})
    for status, nxt, fatal, finalize, pause, requested in itertools.product(
        [s for s in StageStatus if s is not StageStatus.RUNNING], NEXTS, [False, True],
        [None, Status.COMPLETED], [None, PauseReason.HUMAN_REVIEW], REQUESTED)
]
RANS = [cmd(stage, task="" if stage in (Stage.INIT, Stage.FINALIZE) else "1.1")
        for stage in Stage]
CASES = list(itertools.product(RANS, OUTCOMES, Status, STOP_POINTS))


def test_every_combination_keeps_the_rules() -> None:
    assert len(CASES) > 50_000
    answers: dict[type, int] = {}
    for ran, outcome, state, stop_point in CASES:
        execution = view(state, stop_point)
        nxt = decide(ran, outcome, execution)
        answers[type(nxt)] = answers.get(type(nxt), 0) + 1
        after = status_after(ran, outcome, execution)
        fields = nxt.fields()
        order = nxt.enqueue()
        why = (ran, outcome, state, stop_point, nxt)
        if outcome.status is StageStatus.RETRYING:
            # a retry is the same run again, whatever else the outcome says
            assert nxt == Retry(command=ran, delay=3.0), why
            continue
        if ran.stage == Stage.FINALIZE:
            # FINALIZE is last; one that failed for good still ends the execution
            assert order is None, why
            if outcome.status in (StageStatus.FAILED, StageStatus.CANCELLED) \
                    and "status" not in outcome.execution:
                assert isinstance(nxt, Close), why
                assert fields["status"] == ("stopped" if state is Status.STOPPING else
                                            state if state in TERMINAL else "error"), why
            else:
                assert isinstance(nxt, End), why
            continue
        # a person's pause or stop is never overruled by a stage's own status
        if state not in (Status.INITIALIZING, Status.RUNNING):
            assert after is state, why
        if after is Status.STOPPING or outcome.status is StageStatus.CANCELLED:
            assert nxt == FINALIZE_STOPPED, why  # stop wins
            continue
        if outcome.fatal:
            assert nxt == FINALIZE_ERROR and fields == {"status": "error"}, why
            continue
        if outcome.finalize is not None:
            assert nxt == FINALIZE_COMPLETED, why
            continue
        if outcome.next is None:
            assert isinstance(nxt, End), why
            continue
        if isinstance(nxt, Run):
            # only what the stage named runs, and never past a stop point or a pause
            assert order == (outcome.next, 0.0), why
            assert outcome.pause_reason is None and after is not Status.PAUSED, why
            assert not (stop_point and reaches(stop_point, outcome.next)), why
        else:
            # everything else that holds a next command parks it in the row for resume
            assert isinstance(nxt, Pause | Hold), why
            assert order is None, why
            assert fields["pending_command"] == msgspec.to_builtins(outcome.next), why
            if isinstance(nxt, Hold):
                assert after is Status.PAUSED and outcome.pause_reason is None, why
            elif outcome.pause_reason is not None:
                assert nxt.reason is outcome.pause_reason, why
            else:
                assert nxt.reason is PauseReason.STOP_POINT and fields["stop_point"] is None
    # every kind of answer was reached by some combination
    assert set(answers) == {Run, Retry, Finalize, Pause, Hold, Close, End}
