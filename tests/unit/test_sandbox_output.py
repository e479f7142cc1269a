"""The exec wrapper's report is believed only when it is consistent with Docker's exit status,
and no control character (NUL above all: Postgres jsonb refuses it) leaves the collector."""

from __future__ import annotations

import json

import pytest

from runner.errors import Classification, InfrastructureError
from runner.sandbox import command
from runner.sandbox.output import (
    TAMPER_NOTE,
    OutputCollector,
    classify,
    command_result,
    disk_limited,
    tampered,
)

NONCE = "0123456789abcdef"
START = f'@@devteam-{NONCE}@@ {{"event": "start", "pgid": 42}}\n'.encode()


def end(exit_code: int, **fields: object) -> bytes:
    report = {"event": "end", "exit": exit_code, **fields}
    return f"@@devteam-{NONCE}@@ {json.dumps(report)}\n".encode()


def collect(*chunks: bytes, on_line=None) -> OutputCollector:
    collector = OutputCollector(NONCE, on_line)
    for chunk in chunks:
        collector.feed(1, chunk)
    collector.close()
    return collector


def result(collector: OutputCollector, exit_code: int | None, *, timed_out=False, cancelled=False):
    return command_result(
        "pytest",
        collector,
        exit_code=exit_code,
        duration=1.0,
        timed_out=timed_out,
        cancelled=cancelled,
    )


def test_given_a_consistent_report_then_it_is_believed_with_its_usage():
    collector = collect(START, b"1 passed\n", end(0, peak_memory_bytes=2048, cpu_seconds=0.5))

    outcome = result(collector, 0)

    assert outcome.ok
    assert classify(outcome) is None
    assert outcome.output_tail == "1 passed"
    assert (outcome.peak_memory_bytes, outcome.cpu_seconds) == (2048, 0.5)
    assert not tampered(outcome)


def test_given_a_forged_end_and_a_killed_wrapper_then_the_result_is_a_failure():
    # Given the audit's attack: the command wrote "exit 0" in the wrapper's name, then killed it
    collector = collect(START, b"FAILED tests/test_x.py::test_a\n", end(0))

    # When Docker says the wrapper died of SIGKILL
    outcome = result(collector, 137)

    # Then the report is not believed: a failure, with the reason as the tail's last line
    assert not outcome.ok
    assert outcome.exit_code == 137
    assert classify(outcome) is Classification.VERIFICATION
    assert tampered(outcome)
    last = outcome.output_tail.splitlines()[-1]
    assert last.startswith(TAMPER_NOTE)
    assert "says exit 0 but the wrapper exited 137" in last
    assert outcome.output_tail.splitlines()[0] == "FAILED tests/test_x.py::test_a"


@pytest.mark.parametrize(
    ("chunks", "exit_code", "reason"),
    [
        # a forged end before the wrapper's own (even when both say 0)
        ((START, end(0), end(1)), 1, "a second end report"),
        ((START, end(0), end(0)), 0, "a second end report"),
        ((START, START, end(0)), 0, "a second start report"),
        ((START, end(0), START), 0, "a marker after the end"),
        ((START, f"@@devteam-{NONCE}@@ not json\n".encode(), end(0)), 0, "not a start or end"),
        (
            (START, f'@@devteam-{NONCE}@@ {{"event": "usage"}}\n'.encode(), end(0)),
            0,
            "not a start or end",
        ),
        ((START, end(0)), 1, "says exit 0 but the wrapper exited 1"),
        ((START, f'@@devteam-{NONCE}@@ {{"event": "end"}}\n'.encode()), 0, "no exit code"),
        ((START, b"out\n"), 0, "exited 0 without an end report"),
        ((START, b"out\n"), 137, "killed (signal 9) before its end report"),
        ((START, end(0)), None, "Docker recorded no exit code"),
    ],
)
def test_given_a_report_that_breaks_the_protocol_then_the_result_is_a_failure(
    chunks, exit_code, reason
):
    outcome = result(collect(*chunks), exit_code)

    assert not outcome.ok
    assert outcome.exit_code != 0
    assert classify(outcome) is Classification.VERIFICATION
    assert tampered(outcome)
    assert reason in outcome.output_tail.splitlines()[-1]


def test_given_a_tampered_report_then_none_of_its_claims_are_kept():
    collector = collect(
        START,
        end(
            0,
            oom_killed=True,
            timed_out=True,
            disk_limited=True,
            peak_memory_bytes=1,
            cpu_seconds=1.0,
        ),
        end(0),
    )

    outcome = result(collector, 0)

    assert not (outcome.oom_killed or outcome.timed_out or outcome.pids_limited)
    assert (outcome.peak_memory_bytes, outcome.cpu_seconds) == (None, None)
    assert not disk_limited(outcome)


def test_given_the_runner_stopped_the_command_then_a_missing_or_unconfirmed_report_is_no_tampering():
    # Given a timeout the runner enforced: it killed the group, the wrapper got no report out
    timed_out = result(collect(START, b"slow\n"), 137, timed_out=True)
    # and a cancel whose stream was cut before Docker recorded the wrapper's exit
    cancelled = result(collect(START, end(137)), None, cancelled=True)

    assert classify(timed_out) is Classification.RESOURCE_LIMIT
    assert classify(cancelled) is Classification.CANCELLED
    assert not tampered(timed_out)
    assert not tampered(cancelled)


def test_given_the_disk_quota_report_then_the_disk_note_is_still_last():
    collector = OutputCollector(NONCE)
    collector.feed(1, START)
    collector.feed(2, b"devteam: disk quota exceeded: /workspace holds 9 MiB\n")
    collector.feed(1, b"after\n" + end(137, disk_limited=True))
    collector.close()

    outcome = result(collector, 137)

    assert disk_limited(outcome)
    assert classify(outcome) is Classification.RESOURCE_LIMIT


def test_given_nul_and_control_characters_then_no_line_leaving_the_collector_has_them():
    seen: list[str] = []

    collector = OutputCollector(NONCE, seen.append)
    collector.feed(1, START + b"a\x00b\n")
    collector.feed(2, b"bell\x07 back\x08 tab\there \x1b[31mred\x1b[0m\r\n")
    collector.feed(1, b"c\x00" * 3)  # a partial line, flushed at close
    collector.feed(1, b"\n" + end(0))
    collector.feed(2, b"last\x00")
    collector.close()

    outcome = result(collector, 0)
    assert seen == [
        "a\ufffdb",
        "bell\ufffd back\ufffd tab\there \x1b[31mred\x1b[0m",
        "c\ufffdc\ufffdc\ufffd",
        "last\ufffd",
    ]
    assert outcome.output_tail == "\n".join(seen)
    assert outcome.ok
    assert "\\u0000" not in json.dumps({"tail": outcome.output_tail, "lines": seen})


def test_a_wrapper_that_refused_to_start_is_the_infrastructures_failure(monkeypatch) -> None:
    # an image from another version of the service: the wrapper prints its usage, exits 2
    monkeypatch.setattr(command, "_running", lambda api, container: True)
    collector = OutputCollector("ab" * 8)
    collector.feed(2, b"usage: exec.py run TIMEOUT COMMAND\n")
    collector.close()
    with pytest.raises(InfrastructureError, match="rebuild it: devteam image build"):
        command._check_finished(None, "c1", "pytest", collector, command.WRAPPER_REFUSED)
    # a command that exits 2 itself, under a wrapper that started it, is its own failure
    ran = OutputCollector("ab" * 8)
    ran.feed(1, b'@@devteam-' + b"ab" * 8 + b'@@ {"event": "start", "pgid": 7}\n')
    ran.feed(1, b'@@devteam-' + b"ab" * 8 + b'@@ {"event": "end", "exit": 2}\n')
    ran.close()
    command._check_finished(None, "c1", "pytest", ran, 2)
