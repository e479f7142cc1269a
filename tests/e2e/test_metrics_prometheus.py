"""A real Prometheus scrapes a gateway, a relay and a worker during a scripted execution,
and its query API shows the series operators build dashboards on."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.e2e.checks import stage_runs
from tests.e2e.conftest import start, wait_status
from tests.e2e.test_run_command import SHORT_LIST
from tests.support.procs import Processes, free_port
from tests.unit.test_deploy_metrics import dashboard_exprs

from devtools.demo.sample import INITIAL, create_sample
from devtools.scripted_model import ScriptedModelServer

pytestmark = [pytest.mark.docker, pytest.mark.slow]

PROMETHEUS = shutil.which("prometheus")
PROJECT = "acme/metered"
ALLOWED_LABELS = {"__name__", "job", "instance", "method", "route", "status", "stage",
                  "outcome", "classification", "customer", "direction", "result", "reason",
                  "le", "quantile"}


class Prometheus:
    """A Prometheus server on loopback with a config and data directory under ``root``."""

    def __init__(self, root: Path, targets: dict[str, int]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        root.mkdir(parents=True, exist_ok=True)
        jobs = "".join(
            f"  - job_name: {job}\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
            for job, port in targets.items())
        config = root / "prometheus.yml"
        config.write_text("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                          f"scrape_configs:\n{jobs}", encoding="utf-8")
        self.log = root / "prometheus.log"
        assert PROMETHEUS is not None, "prometheus is not installed: run make setup"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={root / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text(errors="replace")
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"prometheus not ready:\n{self.log.read_text(errors='replace')}")

    def query(self, expr: str) -> list[dict[str, Any]]:
        body = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10).json()
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def series(self, match: str) -> list[dict[str, str]]:
        body = httpx.get(f"{self.url}/api/v1/series", params={"match[]": match},
                         timeout=10).json()
        assert body["status"] == "success", body
        return list(body["data"])

    async def until(self, expr: str, timeout: float = 60) -> list[dict[str, Any]]:
        """The query's result once it is not empty (Prometheus scrapes every second)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = await asyncio.to_thread(self.query, expr)
            if result:
                return result
            await asyncio.sleep(0.5)
        raise AssertionError(f"no series for {expr} within {timeout}s:\n"
                             f"{self.query('up')}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _value(result: list[dict[str, Any]]) -> float:
    assert len(result) == 1, result
    return float(result[0]["value"][1])


async def test_prometheus_scrapes_gateway_relay_and_worker_during_an_execution(
    tmp_path, pipeline_env, model: ScriptedModelServer, procs: Processes, store, token_for
):
    sample = create_sample(tmp_path / "short", files={**INITIAL, "tasks_list.md": SHORT_LIST})
    relay_port, worker_port = free_port(), free_port()
    if True:
        procs.env.update({"DEVTEAM_METRICS_REFRESH_SECONDS": "0.5"})
        gateway = procs.gateway()
        procs.relay(DEVTEAM_METRICS_RELAY_PORT=str(relay_port))
        procs.worker(threads=2, DEVTEAM_METRICS_WORKER_PORT=str(worker_port))
        prometheus = Prometheus(tmp_path / "prometheus", {
            "gateway": int(gateway.port or 0), "relay": relay_port, "worker": worker_port})
        try:
            # all three targets up before the execution starts
            up = await prometheus.until('sum(up{job=~"gateway|relay|worker"}) == 3')
            assert _value(up) == 3
            # the outbox backlog is reported while the execution runs, by the relay
            await prometheus.until('devteam_outbox_backlog{job="relay"}')
            began = time.monotonic()
            execution = await start(store, PROJECT, sample.url)
            headers = {"Authorization": f"Bearer {token_for('mona', ['acme/*'])}"}
            async with httpx.AsyncClient(base_url=gateway.url, headers=headers) as client:
                assert (await client.get(f"/api/devteam/automation/status/{PROJECT}")).status_code == 200
                assert (await client.get("/no/such/path")).status_code == 404
            row = await wait_status(store, execution, {"completed", "error", "stopped",
                                                       "paused"}, timeout=600)
            assert row["status"] == "completed", row
            elapsed = time.monotonic() - began
            requests = len(model.requests)

            # stage durations, by stage and outcome, from the worker: as many as the
            # stage runs the database recorded
            recorded = Counter((r["stage"], r["status"]) for r in
                               await stage_runs(store, execution))
            assert recorded[("IMPLEMENT", "succeeded")] == 2  # two tasks, one round each
            for (stage, outcome), number in recorded.items():
                runs = await prometheus.until(
                    f'devteam_stage_duration_seconds_count{{job="worker",stage="{stage}",'
                    f'outcome="{outcome}"}} == {number}')
                assert _value(runs) == number, (stage, outcome)
            mean = _value(await prometheus.until(
                'devteam_stage_duration_seconds_sum{stage="IMPLEMENT",outcome="succeeded"} / '
                'devteam_stage_duration_seconds_count{stage="IMPLEMENT",outcome="succeeded"}'))
            assert 0 < mean < elapsed
            buckets = prometheus.query(
                'devteam_stage_duration_seconds_bucket{stage="IMPLEMENT",outcome="succeeded"}')
            assert {b["metric"]["le"] for b in buckets} >= {"1.0", "60.0", "+Inf"}

            # the backlog drains to nothing once the execution ended; no command waits
            backlog = await prometheus.until('devteam_outbox_backlog{job="relay"} == 0')
            assert _value(backlog) == 0
            assert _value(prometheus.query('devteam_outbox_oldest_age_seconds{job="relay"}')) == 0
            dispatched = _value(await prometheus.until('devteam_relay_dispatches_total >= 10'))
            assert dispatched >= 10  # every stage of two tasks went through the relay
            completed = await prometheus.until(
                'devteam_executions{job="relay",status="completed"} == 1')
            assert _value(completed) == 1

            # model tokens per customer, as Aider reported them from the model's usage
            sent = await prometheus.until(
                'devteam_model_tokens_total{job="worker",customer="acme",direction="sent"} > 0')
            received = await prometheus.until(
                'devteam_model_tokens_total{customer="acme",direction="received"} > 0')
            assert requests <= _value(sent) <= 1_000_000 * requests
            assert 0 < _value(received) <= _value(sent) * 100

            # HTTP requests by route template (never the path itself) and status
            status = await prometheus.until(
                'devteam_http_requests_total{job="gateway",method="GET",'
                'route="/api/devteam/automation/status/{project}",status="200"}')
            assert _value(status) >= 1
            unmatched = await prometheus.until(
                'devteam_http_requests_total{route="<unmatched>",status="404"}')
            assert _value(unmatched) >= 1
            assert not prometheus.query('devteam_http_requests_total{route="/no/such/path"}')

            # bounded labels: no execution or task id anywhere, only known label names
            series = prometheus.series('{__name__=~"devteam_.+"}')
            assert series
            for labels in series:
                assert set(labels) <= ALLOWED_LABELS, labels
                assert not any(str(execution) in v for v in labels.values()), labels
                assert not any(v in ("1.1", "1.2") for v in labels.values()), labels

            # every query of the Grafana dashboard in deploy/ is valid PromQL here, and the
            # stage, backlog and token panels show this execution
            answered = {}
            for expr in dashboard_exprs():
                concrete = (expr.replace("$__rate_interval", "1m").replace("$__range", "1h")
                            .replace("$customer", ".*"))
                answered[expr] = prometheus.query(concrete)
            shown = {e for e, result in answered.items() if result}
            assert any("devteam_stage_duration_seconds_bucket" in e for e in shown)
            assert any("devteam_outbox_backlog" in e for e in shown)
            assert any("devteam_model_tokens_total" in e and "$__range" in e for e in shown)
        finally:
            prometheus.stop()
