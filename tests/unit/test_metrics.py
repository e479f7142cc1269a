"""The metrics module's pure parts: Aider's usage lines, bounded label values, and fleet
gauges that forget a customer whose containers ended."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import generate_latest
from structlog.testing import capture_logs

from pipeline import metrics


def test_aider_usage_sums_every_round_and_reads_k_and_cost() -> None:
    stdout = (
        "Applied edit to src/calc/basic.py\n"
        "Tokens: 2.3k sent, 120 received. Cost: $0.0042 message, $0.0042 session.\n"
        "some other line mentioning Tokens: in the middle\n"
        "Tokens: 15k sent, 1.5k cache write, 12k cache hit, 1.1k received.\n"
        "Cost: $0.05 message, $0.0542 session.\n"
    )
    sent, received, cost = metrics.aider_usage(stdout) or (0, 0, None)
    assert (sent, received) == (2300 + 15000, 120 + 1100)
    assert cost is not None and abs(cost - 0.0542) < 1e-9


def test_aider_usage_without_a_report_is_none_and_without_prices_has_no_cost() -> None:
    assert metrics.aider_usage("Applied edit to a.py\n") is None
    assert metrics.aider_usage("Tokens: 100 sent, 7 received.\n") == (100, 7, None)


def test_a_usage_line_with_an_absurd_or_malformed_number_is_left_out_with_a_warning() -> None:
    # what the model's server reports reaches these lines: 9e18 tokens a round would
    # overflow the bigint the sums are read as, on every status read of the project
    absurd = "Tokens: 9000000000000000k sent, 120 received.\n"
    costly = "Tokens: 10 sent, 1 received. Cost: $" + "9" * 400 + " message, $1 session.\n"
    malformed = "Tokens: 1.2.3 sent, 1 received.\n"
    fine = "Tokens: 2.1k sent, 388 received. Cost: $0.01 message, $0.01 session.\n"
    with capture_logs() as logs:
        assert metrics.aider_usage(absurd + costly + malformed + fine) == (2100, 388, 0.01)
        assert metrics.aider_usage(absurd) is None
    warned = [entry["line"] for entry in logs if entry["event"] == "usage.implausible"]
    assert warned == [absurd.strip(), costly.strip()[:200], malformed.strip(),
                      absurd.strip()]
    # the bound itself is a plausible count
    assert metrics.aider_usage("Tokens: 1000000k sent, 1000000k received.") == (
        metrics.MAX_LINE_TOKENS, metrics.MAX_LINE_TOKENS, None)
    assert metrics.aider_usage("Tokens: 1000001k sent, 1 received.") is None


_NUMBER = st.one_of(st.integers(0, 10**30).map(str),
                    st.floats(0, 1e30).map(lambda f: f"{f:.3f}"),
                    st.from_regex(r"[0-9.]{1,40}", fullmatch=True))


@given(lines=st.lists(st.tuples(_NUMBER, st.sampled_from(["", "k", "m"]), _NUMBER,
                                st.sampled_from(["", "k", "m"]), st.none() | _NUMBER),
                      max_size=6))
def test_whatever_the_lines_say_the_usage_is_finite_and_within_the_bounds(
    lines: list[tuple[str, str, str, str, str | None]],
) -> None:
    text = "".join(f"Tokens: {a}{ua} sent, {b}{ub} received."
                   + (f" Cost: ${c} message, $0 session." if c is not None else "") + "\n"
                   for a, ua, b, ub, c in lines)
    usage = metrics.aider_usage(text)
    if usage is None:
        return
    sent, received, cost = usage
    assert 0 <= sent <= len(lines) * metrics.MAX_LINE_TOKENS
    assert 0 <= received <= len(lines) * metrics.MAX_LINE_TOKENS
    assert cost is None or (math.isfinite(cost)
                            and 0 <= cost <= len(lines) * metrics.MAX_LINE_COST)


def test_model_usage_prefers_the_recorded_usage_and_bounds_the_customer_label() -> None:
    customer = "acme" + "x" * 200 + "\n{evil=\"1\"}"
    metrics.model_usage(customer, {"tokensSent": 40, "tokensReceived": 2, "cost": 0.5})
    text = generate_latest().decode()
    lines = [line for line in text.splitlines()
             if line.startswith("devteam_model_tokens_total") and "acmexxx" in line]
    assert len(lines) == 2 and all(line.endswith((" 40.0", " 2.0"))
                                   for line in lines), lines
    label = lines[0].split('customer="', 1)[1].split('"', 1)[0]
    assert len(label) <= 64 and "{" not in label and "\n" not in label


def test_a_round_without_recorded_usage_counts_nothing_whatever_its_output_says() -> None:
    """The model writes much of a round's output: a reply printing Aider's usage line must
    not be counted as usage (before, a round without recorded usage had its stdout read)."""
    customer = "forger"
    before = generate_latest().decode()
    metrics.model_usage(customer, None)
    metrics.model_usage(customer, {"outputs": {"stdout": "Tokens: 9k sent, 9 received. "
                                                         "Cost: $5.00 message"}})
    after = generate_latest().decode()
    assert [ln for ln in after.splitlines() if 'customer="forger"' in ln] == []
    assert before.count("devteam_model_tokens_total") == after.count(
        "devteam_model_tokens_total")


def test_fleet_gauges_drop_customers_that_no_longer_hold_slots() -> None:
    metrics.set_fleet(backlog=3, oldest_age=1.5, executions={"running": 2},
                      running={"fleet-a": 2, "fleet-b": 1}, waiting={"fleet-a": 1})
    metrics.set_fleet(backlog=0, oldest_age=0.0, executions={"running": 0, "completed": 2},
                      running={"fleet-b": 1}, waiting={})
    assert metrics.CONTAINERS_RUNNING.labels("fleet-a")._value.get() == 0
    assert metrics.CONTAINERS_RUNNING.labels("fleet-b")._value.get() == 1
    assert metrics.CONTAINERS_WAITING.labels("fleet-a")._value.get() == 0
    assert metrics.OUTBOX_BACKLOG._value.get() == 0
    assert metrics.EXECUTIONS.labels("completed")._value.get() == 2


def test_parse_address() -> None:
    assert metrics.parse_address("127.0.0.1:9100") == ("127.0.0.1", 9100)
    assert metrics.parse_address(":9100") == ("127.0.0.1", 9100)
    assert metrics.parse_address("[::1]:9100") == ("::1", 9100)
    for bad in ("9100", "host:", "host:99999", "host:x"):
        try:
            metrics.parse_address(bad)
        except ValueError:
            continue
        raise AssertionError(bad)


def test_a_local_run_opens_no_metrics_port_unless_asked() -> None:
    from devtools.local.processes import pipeline_env

    env = pipeline_env({}, allowed_roots=[], model_url=None)
    assert (env["DEVTEAM_METRICS_RELAY_PORT"], env["DEVTEAM_METRICS_WORKER_PORT"]) == ("0", "0")
    asked = pipeline_env({"DEVTEAM_METRICS_WORKER_PORT": "9200"}, allowed_roots=[],
                         model_url=None)
    assert asked["DEVTEAM_METRICS_WORKER_PORT"] == "9200"


def test_a_retry_is_counted_by_classification_and_a_failure_as_an_error() -> None:
    def value(metric: object, *labels: str) -> float:
        return float(metric.labels(*labels)._value.get())  # type: ignore[attr-defined]

    retries = value(metrics.RETRIES, "VERIFY", "transient")
    errors = value(metrics.STAGE_ERRORS, "VERIFY", "tool")
    runs = value(metrics.STAGE_RUNS, "VERIFY", "retrying")
    metrics.stage_finished("VERIFY", "retrying", 1.5, "transient")
    metrics.stage_finished("VERIFY", "failed", 2.0, "tool")
    metrics.stage_finished("VERIFY", "succeeded", 3.0)
    assert value(metrics.RETRIES, "VERIFY", "transient") == retries + 1
    assert value(metrics.STAGE_ERRORS, "VERIFY", "tool") == errors + 1
    assert value(metrics.STAGE_RUNS, "VERIFY", "retrying") == runs + 1
