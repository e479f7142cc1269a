"""deploy/: the Grafana dashboard asks only for metrics the service defines, and the
Prometheus scrape config matches compose.yml's services and the metrics settings."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client import REGISTRY

from pipeline import metrics
from runner.settings import MetricsSettings

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana-dashboard.json"
SCRAPE = ROOT / "deploy" / "prometheus.yml"


def dashboard_exprs() -> list[str]:
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [t["expr"] for p in board["panels"] for t in p.get("targets", [])]


def sample_names() -> set[str]:
    assert metrics.HTTP_REQUESTS is not None  # the module's metrics are registered
    return {s.name for family in REGISTRY.collect() for s in family.samples
            if s.name.startswith("devteam_")} | {
        # families without a sample until a label set is used: counters and histograms
        f"{family.name}{suffix}" for family in REGISTRY.collect()
        if family.name.startswith("devteam_")
        for suffix in ("", "_total", "_bucket", "_sum", "_count")}


def test_every_dashboard_query_names_a_defined_metric() -> None:
    exprs = dashboard_exprs()
    assert len(exprs) >= 20
    known = sample_names()
    used = {name for expr in exprs for name in re.findall(r"\bdevteam_[a-z_]+", expr)}
    assert used, exprs
    assert used <= known, sorted(used - known)
    # the figures all have a panel
    for needed in ("devteam_http_request_duration_seconds_bucket", "devteam_stream_clients",
                   "devteam_stream_commit_lag_seconds_bucket", "devteam_outbox_backlog",
                   "devteam_outbox_oldest_age_seconds", "devteam_relay_dispatches_total",
                   "devteam_stage_duration_seconds_bucket", "devteam_stage_retries_total",
                   "devteam_executions", "devteam_containers_running",
                   "devteam_container_slot_waits_total", "devteam_setup_cache_total",
                   "devteam_model_tokens_total", "devteam_model_cost_dollars_total"):
        assert needed in used, needed


def test_dashboard_has_no_unbounded_grouping() -> None:
    for expr in dashboard_exprs():
        for group in re.findall(r"by \(([^)]*)\)", expr):
            labels = {g.strip() for g in group.split(",")}
            assert labels <= {"le", "route", "status", "stage", "outcome", "classification",
                              "customer", "direction", "result", "reason", "instance"}, expr


def test_scrape_config_matches_compose_services_and_ports() -> None:
    scrape = yaml.safe_load(SCRAPE.read_text(encoding="utf-8"))
    compose = yaml.safe_load((ROOT / "compose.yml").read_text(encoding="utf-8"))
    targets = {job["job_name"]: job["dns_sd_configs"][0] for job in scrape["scrape_configs"]}
    assert set(targets) == {"gateway", "relay", "worker"}
    for job, sd in targets.items():
        assert sd["names"] == [job] and job in compose["services"]
    defaults = MetricsSettings()
    assert targets["relay"]["port"] == defaults.relay_port
    assert targets["worker"]["port"] == defaults.worker_port
    gateway = compose["services"]["gateway"]
    # the gateway's /metrics is on its own address, not on the published API port
    address = gateway["environment"]["DEVTEAM_METRICS_ADDRESS"]
    assert address == f"0.0.0.0:{targets['gateway']['port']}"
    assert not [p for p in gateway["ports"] if str(targets["gateway"]["port"]) in p]
    # YAML merge keeps every other variable of the shared environment
    assert gateway["environment"]["DEVTEAM_DATABASE_URL"].startswith("postgresql")
    env = compose["x-service"]["environment"]
    assert env["DEVTEAM_METRICS_HOST"] == "0.0.0.0"  # noqa: S104 - the compose network
    prometheus = compose["services"]["prometheus"]
    assert "./deploy/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prometheus["volumes"]
