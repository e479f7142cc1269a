"""The bounds on what a repository can make the service store or send (runner/limits.py)."""

from __future__ import annotations

import random
import string

import pytest

from runner.limits import (
    MIN_TEXT,
    LogBudget,
    LogLimits,
    bound_json,
    cut_line,
    json_size,
    keep_tail,
    limit_reached,
    lines_dropped,
)

WHAT = "524,288 bytes per stage result"


ALPHANUMERIC = (string.ascii_letters + string.digits).encode()
TO_ALPHANUMERIC = bytes(ALPHANUMERIC[b % len(ALPHANUMERIC)] for b in range(256))


def noise(n: int, seed: int = 1) -> str:
    """``n`` random letters and digits (random bytes mapped onto them: megabytes in
    milliseconds)."""
    return random.Random(seed).randbytes(n).translate(TO_ALPHANUMERIC).decode()


def test_a_short_line_is_kept_and_a_long_one_is_cut_with_the_bytes_it_lost():
    assert cut_line("hello", 2000) == "hello"
    line = noise(5000)
    cut = cut_line(line, 2000)
    assert cut.startswith(line[:2000])
    assert cut.endswith(" … 3,000 bytes cut (limit 2,000 per line)")


def test_a_line_is_cut_on_a_character_boundary():
    line = "é" * 1500  # 3,000 bytes
    cut = cut_line(line, 1001)
    head = cut.split(" … ")[0]
    assert head == "é" * 500
    assert "2,000 bytes cut" in cut


def test_keep_tail_keeps_the_end_whole_lines_and_says_what_it_dropped():
    text = "\n".join(f"line {i}" for i in range(100_000))
    kept = keep_tail(text, 1024)
    marker, _, rest = kept.partition("\n")
    assert marker.startswith("… ") and "bytes of output dropped (limit 1,024 bytes kept" in marker
    assert rest.endswith("line 99999")
    assert rest.splitlines()[0].startswith("line ")  # a whole line, not a fragment
    assert len(rest.encode()) <= 1024
    dropped = int(marker.split()[1].replace(",", ""))
    assert dropped + len(rest.encode()) == len(text.encode())
    assert keep_tail("short", 1024) == "short"


def test_a_result_that_fits_is_returned_unchanged():
    result = {"commit": "a" * 40, "commands": [{"outputTail": "ok", "exitCode": 0}]}
    assert bound_json(result, 4096, what=WHAT) is result


def test_a_52_mb_verification_result_is_cut_to_the_limit_keeping_its_short_fields():
    # the attack: four commands, each with a tail of 200 lines of 64 KiB
    tail = "\n".join(noise(64 * 1024, seed=i) for i in range(200))
    result = {
        "taskId": "1.1",
        "success": False,
        "results": {"test.pass": {"passed": False, "actual": "failed", "required": "pass"}},
        "commands": [{"command": f"cmd {i}", "exitCode": 1, "outputTail": tail}
                     for i in range(4)],
        "feedback": "Verification failed: test.pass",
        "commit": "0123456789abcdef0123456789abcdef01234567",
    }
    assert json_size(result) > 52_000_000
    limit = 512 * 1024

    bounded = bound_json(result, limit, what=WHAT)

    assert json_size(bounded) <= limit
    # everything a later stage or a person reads is intact
    assert bounded["commit"] == result["commit"]
    assert bounded["feedback"] == result["feedback"]
    assert bounded["results"] == result["results"]
    assert [c["command"] for c in bounded["commands"]] == ["cmd 0", "cmd 1", "cmd 2", "cmd 3"]
    # each output was cut in its middle, with a marker saying how much and why
    for command in bounded["commands"]:
        out = command["outputTail"]
        assert out.startswith(tail[:100]) and out.endswith(tail[-100:])
        assert f"characters dropped (limit {WHAT})" in out
    # and the limit is used, not wasted: most of it is kept
    assert json_size(bounded) > limit * 0.9


def test_too_many_short_items_are_cut_to_the_first_ones_with_a_count():
    files = [f"src/f{i}.py" for i in range(100_000)]
    bounded = bound_json({"filesModified": files, "commit": "c" * 40}, 64 * 1024, what=WHAT)
    kept = bounded["filesModified"]
    assert json_size(bounded) <= 64 * 1024
    assert kept[:10] == files[:10]
    assert kept[-1].startswith("… ") and "items dropped" in kept[-1]
    assert int(kept[-1].split()[1].replace(",", "")) == len(files) - (len(kept) - 1)
    assert bounded["commit"] == "c" * 40


def test_texts_shorter_than_the_floor_are_never_cut():
    value = {"branch": "task/" + "x" * (MIN_TEXT - 5), "blob": noise(100_000)}
    bounded = bound_json(value, 4096, what=WHAT)
    assert bounded["branch"] == value["branch"]
    assert json_size(bounded) <= 4096


def test_what_cannot_be_cut_enough_keeps_its_short_scalars_and_says_it_was_truncated():
    value = {"commit": "c" * 40, "ok": True, **{f"k{i}": "v" * 200 for i in range(5000)}}
    bounded = bound_json(value, 1024, what=WHAT)
    assert json_size(bounded) <= 1024
    assert bounded["commit"] == "c" * 40 and bounded["ok"] is True
    assert "bytes truncated" in bounded["truncated"]


def test_the_log_budget_stops_at_the_line_limit_and_counts_every_dropped_line():
    budget = LogBudget(LogLimits(lines=3, bytes=10_000, line_bytes=100))
    kept = [budget.admit(10) for _ in range(10)]
    assert kept == [True] * 3 + [False] * 7
    assert budget.dropped == 7
    assert budget.reason == "3 lines per stage"
    assert lines_dropped(budget.dropped, budget.reason) == (
        "… 7 lines dropped (limit 3 lines per stage) …")


def test_the_log_budget_stops_at_the_byte_limit_and_never_lets_a_later_short_line_through():
    budget = LogBudget(LogLimits(lines=1000, bytes=2500, line_bytes=2000))
    assert budget.admit(2000)
    assert not budget.admit(2000)
    assert not budget.admit(1)  # no holes: once stopped, the output stays stopped
    assert budget.bytes == 2000 and budget.dropped == 2
    assert budget.reason == "2,500 bytes of output per stage"
    assert limit_reached(budget.reason) == (
        "… output limit reached (limit 2,500 bytes of output per stage): further lines are "
        "dropped and counted …")


@pytest.mark.parametrize("limit", [300, 1000, 5000, 20_000])
def test_bound_json_always_fits_whatever_the_limit(limit):
    value = {"a": noise(50_000), "b": [noise(3000, seed=i) for i in range(50)], "n": 1}
    assert json_size(bound_json(value, limit, what=WHAT)) <= limit
