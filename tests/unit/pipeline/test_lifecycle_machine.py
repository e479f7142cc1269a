"""A hypothesis state machine over an execution's lifecycle, driving the decision core.

A person pauses, resumes, stops and initializes through ``lifecycle.target`` (the
transition table of CONTRACTS.md) with the effects ``commands`` gives them (a resume
enqueues the parked command; a stop with no stage running enqueues FINALIZE); a worker
delivers commands through ``decide.on_claim`` and claims a stage run by its key (a
finished run is a duplicate; a retrying one or one whose worker died is taken over);
stages end with outcomes (success, a failed round, any classified error through
``failure_outcome``, a crash) and what follows is ``decide``'s answer, stored as
``record_outcome`` stores it. Invariants checked after every step:

- nothing moves an execution out of a terminal status; FINALIZE is the only way in;
- stop wins: once a stop is accepted the execution is stopping until it is stopped;
- a pause parks: while paused no stage but FINALIZE is started, and the next command
  waits in the row (or in flight) for resume;
- retries are bounded: no stage run's handler runs more than ``stage_retries + 1`` times;
- nothing is stuck: an active execution that is not paused always has a command queued
  or a stage running, and from any state, resuming and letting stages succeed ends it.
"""

from __future__ import annotations

from typing import Any

import msgspec
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from pipeline.decide import (
    ExecutionView,
    OnClaim,
    claims_exhausted,
    decide,
    exhausted_outcome,
    failure_outcome,
    on_claim,
    park,
    stage_sets_status,
    stopped,
)
from pipeline.lifecycle import (
    ACTIVE,
    TERMINAL,
    TRANSITIONS,
    Action,
    PauseReason,
    Stage,
    StageStatus,
    Status,
    TransitionError,
    target,
    valid_actions,
)
from pipeline.outbox import StageCommand
from pipeline.outcome import Outcome
from runner.errors import Classification, RunnerError
from runner.settings import PipelineSettings

EXEC = "0b6d3f3e-8c0a-4f43-a7c2-2d1b5f6e9a01"
POLICY = PipelineSettings(stage_retries=2, stage_retry_max_seconds=4.0)
ROUNDS = 3
TASKS = 2
AFTER = {
    Stage.PREP: Stage.SETUP, Stage.MERGE: Stage.PUSH, Stage.PUSH: Stage.UPDATE_TASKLIST,
    Stage.UPDATE_TASKLIST: Stage.DONE,
}
Key = tuple[str, str, str, int, int]


class Lifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.status = Status.INITIALIZING
        self.pause_reason: str | None = None
        self.pending: dict[str, Any] | None = None
        self.stop_point: str | None = None
        self.queue: list[StageCommand] = [StageCommand(execution_id=EXEC, stage=Stage.INIT)]
        self.running: StageCommand | None = None
        self.runs: dict[Key, StageStatus] = {}
        self.expired: set[Key] = set()
        self.claims: dict[Key, int] = {}
        self.handled: dict[Key, int] = {}
        self.selects = 0
        self.passes: dict[str, int] = {}
        self.done = 0
        self.stop_accepted = False
        self.fatal = False
        self.final: Status | None = None

    # -- the model's helpers -------------------------------------------------------------
    def cmd(self, stage: Stage, task: str, attempt: int = 1, pass_no: int = 1) -> StageCommand:
        return StageCommand(execution_id=EXEC, stage=stage.value, task_id=task, attempt=attempt,
                            pass_no=pass_no)

    def then(self, ran: StageCommand, stage: Stage, attempt: int = 1) -> StageCommand:
        """The command for ``stage`` of the same task and pass as ``ran``."""
        return self.cmd(stage, ran.task_id, attempt, ran.pass_no)

    def next_select(self) -> StageCommand:
        self.selects += 1
        return self.cmd(Stage.SELECT, f"#{self.selects}")

    def succeeded(self, ran: StageCommand) -> Outcome:
        """What a stage that did its work hands back (the handlers' shapes)."""
        stage = Stage(ran.stage)
        if stage is Stage.INIT:
            return Outcome(next=self.next_select(), execution={"status": "running"})
        if stage is Stage.SELECT:
            if self.done >= TASKS:
                return Outcome(finalize=Status.COMPLETED)
            # a task selected again is a new pass: its stage runs are new keys
            task = f"1.{self.done + 1}"
            self.passes[task] = self.passes.get(task, 0) + 1
            return Outcome(next=self.cmd(Stage.PREP, task, pass_no=self.passes[task]))
        if stage is Stage.SETUP:
            return Outcome(next=self.then(ran, Stage.IMPLEMENT))
        if stage is Stage.IMPLEMENT:
            return Outcome(next=self.then(ran, Stage.VERIFY, ran.attempt))
        if stage is Stage.VERIFY:
            return Outcome(next=self.then(ran, Stage.MERGE))
        if stage is Stage.DONE:
            self.done += 1
            return Outcome(next=self.next_select())
        return Outcome(next=self.then(ran, AFTER[stage]))

    def finalized(self, ran: StageCommand) -> Outcome:
        """FINALIZE's outcome (``stages.finish.finalize``): stop and error win."""
        final = Status(ran.outcome or Status.COMPLETED.value)
        if self.status is Status.STOPPING:
            final = Status.STOPPED
        elif self.status is Status.ERROR:
            final = Status.ERROR
        return Outcome(execution={"status": final.value, "pending_command": None})

    def record(self, ran: StageCommand, outcome: Outcome) -> None:
        """``record_outcome``: the run's status, the stage's fields unless a person
        overrules them, then what ``decide`` says (fields, command)."""
        self.runs[ran.key] = outcome.status
        fields = dict(outcome.execution)
        if "status" in fields and not stage_sets_status(ran.stage, self.status):
            fields.pop("status")
        nxt = decide(ran, outcome, ExecutionView(id=EXEC, status=self.status,
                                                 stop_point=self.stop_point))
        fields.update(nxt.fields())
        order = nxt.enqueue()
        if order is not None:
            command, delay = order
            assert delay <= POLICY.stage_retry_max_seconds or outcome.status is not \
                StageStatus.RETRYING
            self.queue.append(command)
        if fields.get("status") == Status.ERROR.value:
            self.fatal = True
        self.apply(fields)
        self.running = None
        if ran.stage == Stage.FINALIZE:
            assert self.status in TERMINAL, self.status
            self.final = self.status

    def apply(self, fields: dict[str, Any]) -> None:
        if "status" in fields:
            assert self.final is None, "a terminal execution changed its status"
            self.status = Status(fields["status"])
        for name in ("pause_reason", "stop_point"):
            if name in fields:
                setattr(self, name, fields[name])
        if "pending_command" in fields:
            self.pending = fields["pending_command"]

    # -- rules -----------------------------------------------------------------------------
    @initialize(stop_point=st.sampled_from([None, "1.2", "verify", "MERGE", "9.9"]))
    def start(self, stop_point: str | None) -> None:
        self.stop_point = stop_point

    @rule(action=st.sampled_from(list(Action)))
    def person(self, action: Action) -> None:
        """A person's request, through the transition table (anything else is 409)."""
        sources, goes_to = TRANSITIONS[action]
        try:
            new = target(action, self.status)
        except TransitionError as exc:
            refused: TransitionError | None = exc
        else:
            refused = None
        if refused is not None:
            assert self.status not in sources
            assert refused.valid == valid_actions(self.status)
            assert action.value not in refused.valid
            return
        assert self.status in sources and new is goes_to
        assert self.final is None or action is Action.INITIALIZE
        if action is Action.INITIALIZE:
            # only an ended execution makes room for a new one (another machine's life;
            # an execution ended in error may still be cleaning up in its FINALIZE)
            assert self.status in TERMINAL
            return
        self.status = new
        if action is Action.PAUSE:
            self.pause_reason = PauseReason.USER.value
        elif action is Action.RESUME:
            self.pause_reason = None
            if self.pending is not None:
                self.queue.append(msgspec.convert(self.pending, StageCommand))
            self.pending = None
        else:
            self.stop_accepted = True
            self.pending = None
            if self.running is None:
                self.queue.append(stopped(EXEC))

    @precondition(lambda self: self.queue and self.running is None)
    @rule(pick=st.integers(min_value=0, max_value=7))
    def deliver(self, pick: int) -> None:
        """A worker takes one queued command (delays reorder them)."""
        command = self.queue.pop(pick % len(self.queue))
        verdict = on_claim(command.stage, self.status)
        if self.status is Status.PAUSED and command.stage != Stage.FINALIZE:
            assert verdict is OnClaim.PARK  # a pause parks
        if verdict is OnClaim.ENDED:
            assert self.status in TERMINAL
            return
        if verdict is OnClaim.PARK:
            self.apply(park(self.pending, command))
            return
        if verdict is OnClaim.STOPPING:
            assert self.stop_accepted
            self.queue.append(stopped(EXEC))
            return
        prior = self.runs.get(command.key)
        takeover = prior is StageStatus.RETRYING or (
            prior is StageStatus.RUNNING and command.key in self.expired)
        if prior is not None and not takeover:
            return  # a duplicate of a finished or live run
        self.expired.discard(command.key)
        self.runs[command.key] = StageStatus.RUNNING
        self.claims[command.key] = self.claims.get(command.key, 0) + 1
        self.running = command

    def run(self, build: Any) -> None:
        ran = self.running
        assert ran is not None
        claims = self.claims[ran.key]
        if claims_exhausted(claims, POLICY):
            self.record(ran, exhausted_outcome(ran, claims))
            return
        self.handled[ran.key] = self.handled.get(ran.key, 0) + 1
        if ran.stage == Stage.FINALIZE:
            self.record(ran, self.finalized(ran))
        else:
            self.record(ran, build(ran, claims))

    @precondition(lambda self: self.running is not None)
    @rule()
    def stage_succeeds(self) -> None:
        self.run(lambda ran, _claims: self.succeeded(ran))

    @precondition(lambda self: self.running is not None)
    @rule(kind=st.sampled_from(list(Classification)))
    def stage_raises(self, kind: Classification) -> None:
        """The handler raised a classified error (``cancelled`` only comes of a stop: the
        tools see the cancel event the heartbeat sets)."""
        if kind is Classification.CANCELLED and self.status is not Status.STOPPING:
            return
        error = RunnerError(f"{kind} failure", classification=kind)
        self.run(lambda ran, claims: failure_outcome(ran, error, claims, POLICY))

    @precondition(lambda self: self.running is not None
                  and self.running.stage == Stage.VERIFY)
    @rule()
    def round_fails(self) -> None:
        """A failed verification: another round, or after the last one a person."""

        def failed(ran: StageCommand, _claims: int) -> Outcome:
            if ran.attempt < ROUNDS:
                return Outcome(status=StageStatus.FAILED,
                               next=self.then(ran, Stage.IMPLEMENT, ran.attempt + 1))
            return Outcome(status=StageStatus.FAILED, record_error=True,
                           pause_reason=PauseReason.HUMAN_REVIEW, next=self.next_select())

        self.run(failed)

    @precondition(lambda self: self.running is not None)
    @rule()
    def worker_dies(self) -> None:
        """The worker dies mid-stage: its lease expires and the command is delivered again."""
        ran = self.running
        assert ran is not None
        self.expired.add(ran.key)
        self.queue.append(ran)
        self.running = None

    # -- invariants ------------------------------------------------------------------------
    @invariant()
    def terminal_is_final(self) -> None:
        assert self.status in ACTIVE or self.status in TERMINAL
        if self.final is not None:
            assert self.status is self.final
        else:
            assert self.status not in TERMINAL or self.status is Status.ERROR

    @invariant()
    def stop_wins(self) -> None:
        if self.stop_accepted:
            assert self.status in (Status.STOPPING, Status.STOPPED), self.status

    @invariant()
    def a_pause_parks(self) -> None:
        if self.status is Status.PAUSED:
            assert self.pause_reason in {r.value for r in PauseReason}
            assert self.pending is not None or self.running is not None or self.queue
        if self.pending is not None:
            assert self.status is Status.PAUSED

    @invariant()
    def retries_are_bounded(self) -> None:
        assert all(n <= POLICY.stage_retries + 1 for n in self.handled.values()), self.handled

    @invariant()
    def nothing_is_stuck(self) -> None:
        if self.status in (Status.INITIALIZING, Status.RUNNING, Status.STOPPING) or (
                self.status is Status.ERROR and self.final is None):
            assert self.queue or self.running is not None

    def teardown(self) -> None:
        """From wherever the steps left it, a person resuming and stages succeeding end
        the execution, in the status its history calls for."""
        for _ in range(400):
            if self.final is not None:
                break
            if self.running is not None:
                self.stage_succeeds()
            elif self.status is Status.PAUSED and not self.queue:
                self.person(Action.RESUME)
            elif self.queue:
                self.deliver(0)
            else:
                raise AssertionError(f"stuck in {self.status}")
        assert self.final is not None, "the execution did not end"
        if self.stop_accepted:
            assert self.final is Status.STOPPED
        elif self.fatal:
            assert self.final is Status.ERROR
        else:
            assert self.final is Status.COMPLETED and self.done == TASKS


# 100 runs of 30 steps keep the unit tier fast (~1.5 s); it was also run once with 3,000
# runs of 60 steps, clean.
Lifecycle.TestCase.settings = settings(
    max_examples=100, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_the_lifecycle = Lifecycle.TestCase
