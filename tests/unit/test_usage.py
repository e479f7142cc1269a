"""Usage: Aider's token lines, container stats, the sums and the report (pure parts)."""

from __future__ import annotations

import json
from datetime import date

import pytest

from pipeline.store.usage import DayUsage, UsageSums, sum_runs
from pipeline.usage import (
    MAX_RANGE_DAYS,
    RangeError,
    bounds,
    combine,
    containers_usage,
    parse_range,
    report,
    round_usage,
    view,
)
from runner.aider import Reports, genuine_usage, model_metadata
from runner.sandbox.usage import ContainerUsage, from_stats

USAGE_LINES = [
    "Tokens: 2.4k sent, 310 received. Cost: $0.0070 message, $0.0070 session.",
    "Tokens: 12k sent, 1.5k received. Cost: $0.12 message, $0.13 session.",
]
MARK = "@@devteam-0123456789abcdef@@ "


def test_a_round_sums_every_tokens_line_aider_printed_and_its_message_costs() -> None:
    usage = round_usage(USAGE_LINES)
    assert usage["tokensSent"] == 2_400 + 12_000
    assert usage["tokensReceived"] == 310 + 1_500
    assert usage["cost"] == pytest.approx(0.127)
    assert (usage["cpuSeconds"], usage["peakMemoryBytes"], usage["containers"]) == (None, None, 0)


def test_a_round_without_cost_records_tokens_and_a_null_cost() -> None:
    usage = round_usage(["Tokens: 754 sent, 30 received."])
    assert (usage["tokensSent"], usage["tokensReceived"], usage["cost"]) == (754, 30, None)


def test_a_round_that_never_reached_the_model_records_nulls() -> None:
    usage = round_usage([])
    assert (usage["tokensSent"], usage["tokensReceived"], usage["cost"]) == (None, None, None)


def test_a_forged_tokens_line_inside_a_model_reply_is_not_a_line_start() -> None:
    # Only lines Aider starts with "Tokens:" count; text quoted mid-line does not.
    usage = round_usage(["> the model said Tokens: 9m sent, 9m received."])
    assert usage["tokensSent"] is None


def test_the_reports_keep_every_marked_usage_line_however_much_is_printed_after_it() -> None:
    # Given a run whose first replies' usage lines are followed by far more output than the
    # artifact keeps (echoed SEARCH/REPLACE blocks, say)
    seen: list[str] = []
    reports = Reports(MARK, seen.append)
    for round_ in range(3):
        reports(f"{MARK}Tokens: 300k sent, 2k received. Cost: $0.90 message, $0.90 session.")
        for i in range(5_000):
            reports(f"<<<<<<< SEARCH block {round_}.{i} that did not match")
    # Then all three count, and the live output shows them without the mark
    assert len(reports.usage) == 3
    usage = round_usage(reports.usage)
    assert (usage["tokensSent"], usage["tokensReceived"]) == (900_000, 6_000)
    assert usage["cost"] == pytest.approx(2.7)
    assert seen[0] == "Tokens: 300k sent, 2k received. Cost: $0.90 message, $0.90 session."
    assert not [line for line in seen if MARK in line]


def test_the_reports_read_usage_and_model_errors_only_from_marked_lines() -> None:
    seen: list[str] = []
    reports = Reports(MARK, seen.append)
    for line in ("Tokens: 9m sent, 9m received. Cost: $999.00 message, $999.00 session.",
                 "model error: AuthenticationError",
                 "litellm.AuthenticationError: AuthenticationError: OpenAIException",
                 f"  {MARK}Tokens: 1 sent, 1 received.",
                 f"{MARK}Tokens: 400 sent, 120 received. Cost: $0.0070 message, $0.0070 session.",
                 f"{MARK}model error: RateLimitError"):
        reports(line)
    assert reports.usage == [
        "Tokens: 400 sent, 120 received. Cost: $0.0070 message, $0.0070 session."]
    assert reports.model_errors == ["RateLimitError"]
    assert seen[0].startswith("> Tokens: 9m")
    assert seen[-1] == "model error: RateLimitError"


def test_a_model_reply_after_an_error_means_a_retry_worked() -> None:
    reports = Reports(MARK, None)
    reports(f"{MARK}model error: RateLimitError")
    reports(f"{MARK}Tokens: 400 sent, 120 received.")
    assert reports.model_errors == []
    reports(f"{MARK}model error: InternalServerError")
    assert reports.model_errors == ["InternalServerError"]


def test_a_sink_that_raises_does_not_stop_the_reports() -> None:
    def broken(line: str) -> None:
        raise RuntimeError("the log is gone")

    reports = Reports(MARK, broken)
    reports("hello")
    reports(f"{MARK}Tokens: 400 sent, 120 received.")
    assert reports.usage == ["Tokens: 400 sent, 120 received."]


def test_cgroup_v1_stats_give_cpu_seconds_and_the_max_usage_as_peak() -> None:
    stats = {"cpu_stats": {"cpu_usage": {"total_usage": 2_500_000_000}},
             "memory_stats": {"usage": 10, "max_usage": 64_593_920}}
    assert from_stats(stats) == (2.5, 64_593_920)


def test_cgroup_v2_stats_take_the_peak_from_memory_peak() -> None:
    stats = {"cpu_stats": {"cpu_usage": {"total_usage": 1_000_000}},
             "memory_stats": {"usage": 5_000}}
    assert from_stats(stats, "73400320\n") == (0.001, 73_400_320)
    assert from_stats(stats, "max\n") == (0.001, None)
    assert from_stats({}, None) == (None, None)
    assert from_stats({"cpu_stats": {"cpu_usage": {"total_usage": -1}}}) == (None, None)


def test_containers_sum_cpu_and_wall_and_keep_the_largest_peak() -> None:
    usage = containers_usage([
        ContainerUsage(cpu_seconds=1.25, peak_memory_bytes=100, wall_seconds=4.0),
        None,  # stats unreadable: still a container
        ContainerUsage(cpu_seconds=0.5, peak_memory_bytes=300, wall_seconds=None),
    ])
    assert usage == {"tokensSent": None, "tokensReceived": None, "cost": None,
                     "cpuSeconds": 1.75, "peakMemoryBytes": 300, "wallSeconds": 4.0,
                     "containers": 3}
    assert containers_usage([]) is None


def test_usage_sums_what_was_reported_and_keeps_the_peak() -> None:
    total = combine([
        {"tokensSent": 100, "tokensReceived": 10, "cost": 0.5, "cpuSeconds": None},
        None,
        {"tokensSent": 50, "cost": 0.25, "cpuSeconds": 2.5, "peakMemoryBytes": 300},
        {"peakMemoryBytes": 200, "wallSeconds": 4.0, "tokensReceived": "7"},  # not a number
        {"tokensSent": True},  # a bool is not a count
    ])
    assert total == {"tokensSent": 150, "tokensReceived": 10, "cost": 0.75,
                     "cpuSeconds": 2.5, "peakMemoryBytes": 300, "wallSeconds": 4.0}
    assert combine([None, {}]) == dict.fromkeys(total)


def test_one_sum_serves_the_detail_the_report_and_the_memory_store() -> None:
    runs = [
        ("IMPLEMENT", {"tokensSent": 1, "cost": 0.1, "containers": 0}),
        ("IMPLEMENT", {"tokensSent": 2, "cost": 0.2, "containers": 0}),
        ("VERIFY", {"cpuSeconds": 0.1, "wallSeconds": 0.0004, "peakMemoryBytes": 7,
                    "containers": 1}),
        ("SETUP", {"cpuSeconds": 0.2, "peakMemoryBytes": 5, "containers": 2}),
    ]
    total = combine(usage for _, usage in runs)
    # summed as stored, not rounded: 0.1 + 0.2 is not 0.3 in floating point
    assert total == {"tokensSent": 3, "tokensReceived": None, "cost": 0.1 + 0.2,
                     "cpuSeconds": 0.1 + 0.2, "peakMemoryBytes": 7, "wallSeconds": 0.0004}
    assert total["cost"] != 0.3
    sums = sum_runs(runs)  # the memory store's sums are the same sum
    assert (sums.tokens_sent, sums.cost, sums.cpu_seconds, sums.peak_memory_bytes,
            sums.wall_seconds) == (3, 0.1 + 0.2, 0.1 + 0.2, 7, 0.0004)
    assert (sums.implement_rounds, sums.containers) == (2, 3)
    # the report rounds what was summed, for display
    assert view(sums) == {"tokensSent": 3, "tokensReceived": None, "cost": 0.3,
                          "cpuSeconds": 0.3, "peakMemoryBytes": 7, "wallSeconds": 0.0,
                          "implementRounds": 2, "containers": 3}


def test_combine_ignores_missing_and_non_numeric_fields() -> None:
    total = combine([{"tokensSent": 5, "cost": None}, None,
                     {"tokensSent": 7, "cost": 0.25, "peakMemoryBytes": True}])
    assert total["tokensSent"] == 12
    assert total["cost"] == 0.25
    assert total["peakMemoryBytes"] is None


def test_the_sums_of_runs_count_rounds_and_containers() -> None:
    sums = sum_runs([
        ("IMPLEMENT", {"tokensSent": 400, "tokensReceived": 120, "cost": 0.007,
                       "containers": 0}),
        ("IMPLEMENT", {"tokensSent": 400, "tokensReceived": 120, "cost": None, "containers": 0}),
        ("VERIFY", {"cpuSeconds": 1.5, "peakMemoryBytes": 900, "wallSeconds": 3.0,
                    "containers": 1}),
        ("SETUP", {"cpuSeconds": 0.5, "peakMemoryBytes": 1200, "wallSeconds": 2.0,
                   "containers": 2}),
    ])
    assert sums == UsageSums(tokens_sent=800, tokens_received=240, cost=0.007,
                             cpu_seconds=2.0, peak_memory_bytes=1200, wall_seconds=5.0,
                             implement_rounds=2, containers=3)


def _day(project: str, day: int, **sums: float) -> DayUsage:
    return DayUsage(project_id=project, day=date(2026, 12, day), sums=UsageSums(**sums))  # type: ignore[arg-type]


def test_the_report_totals_per_customer_project_and_day() -> None:
    days = [
        _day("acme/web", 2, tokens_sent=100, cost=0.5, peak_memory_bytes=10, implement_rounds=1),
        _day("acme/api", 1, cpu_seconds=2.0, peak_memory_bytes=50, containers=1),
        _day("acme/web", 1, tokens_sent=300, cost=0.25, peak_memory_bytes=40, containers=2,
             implement_rounds=2),
    ]
    body = report("acme", date(2026, 12, 1), date(2026, 12, 3), days)
    assert body["customerId"] == "acme"
    assert (body["from"], body["to"]) == ("2026-12-01", "2026-12-03")
    assert body["totals"] == {"tokensSent": 400, "tokensReceived": None, "cost": 0.75,
                              "cpuSeconds": 2.0, "peakMemoryBytes": 50, "wallSeconds": None,
                              "implementRounds": 3, "containers": 3}
    assert [p["projectId"] for p in body["projects"]] == ["acme/api", "acme/web"]
    web = body["projects"][1]
    assert web["totals"]["tokensSent"] == 400
    assert web["totals"]["peakMemoryBytes"] == 40
    assert [d["date"] for d in web["days"]] == ["2026-12-01", "2026-12-02"]
    assert web["days"][0] == {"date": "2026-12-01", **view(days[2].sums)}


def test_an_empty_report_has_null_totals_and_no_projects() -> None:
    body = report("acme", date(2026, 1, 1), date(2026, 1, 1), [])
    assert body["projects"] == []
    assert body["totals"]["tokensSent"] is None
    assert body["totals"]["implementRounds"] == 0


def test_the_range_defaults_to_thirty_days_ending_today() -> None:
    today = date(2026, 12, 4)
    assert parse_range(None, None, today) == (date(2026, 11, 5), today)
    assert parse_range("2026-01-01", "2026-01-01", today) == (date(2026, 1, 1), date(2026, 1, 1))
    start, stop = bounds(date(2026, 1, 1), date(2026, 1, 1))
    assert (stop - start).days == 1


@pytest.mark.parametrize(("start", "end", "message"), [
    ("2026-13-01", None, "from must be a date"),
    ("2026-1-1", None, "from must be a date"),
    ("20260101", None, "from must be a date"),
    (None, "yesterday", "to must be a date"),
    (None, "２０２６-01-01", "to must be a date"),
    ("2026-02-01", "2026-01-01", "is after to"),
    ("0001-01-01", None, "from must be between 1970-01-01 and 9998-12-31"),
    (None, "9999-12-31", "to must be between"),
    ("2025-01-01", "2026-01-02", f"at most {MAX_RANGE_DAYS} days"),
])
def test_bad_ranges_are_refused_with_the_reason(start: str | None, end: str | None,
                                                message: str) -> None:
    with pytest.raises(RangeError, match=message):
        parse_range(start, end, date(2026, 12, 4))


def test_the_default_start_never_precedes_the_earliest_day() -> None:
    assert parse_range(None, "1970-01-05", date(2026, 1, 1)) == (date(1970, 1, 1),
                                                                date(1970, 1, 5))
    assert bounds(date(9998, 12, 31), date(9998, 12, 31))[1].year == 9999


def test_a_full_leap_year_is_within_the_bound() -> None:
    assert parse_range("2028-01-01", "2028-12-31", date(2026, 1, 1))[1] == date(2028, 12, 31)


def test_model_metadata_gives_the_configured_prices_per_token() -> None:
    assert model_metadata("openai/scripted", 0, 0) is None
    text = model_metadata("openai/scripted", 10, 25)
    assert text is not None
    entry = json.loads(text)["openai/scripted"]
    assert entry["input_cost_per_token"] == pytest.approx(10e-6)
    assert entry["output_cost_per_token"] == pytest.approx(25e-6)


def test_only_lines_carrying_the_guards_mark_read_as_usage_lines_in_the_output() -> None:
    text = (f"Tokens: 9m sent, 9m received. Cost: $999.00 message, $999.00 session.\n"
            f"{MARK}Tokens: 400 sent, 120 received. Cost: $0.0070 message, $0.0070 session.\n"
            f"  Tokens: 1 sent, 1 received.\nApplied edit\n")
    clean = genuine_usage(text, MARK)
    assert MARK not in clean
    assert clean.splitlines()[0].startswith("> Tokens: 9m")
    assert clean.splitlines()[1].startswith("Tokens: 400 sent")
