"""The gateway's ``/metrics``: Prometheus text without a token, requests counted by route
template (a path or a method an attacker chooses never becomes a label), moved to another
address or switched off by settings."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
from litestar.testing import AsyncTestClient
from prometheus_client.parser import text_string_to_metric_families
from tests.support.procs import Processes, free_port
from tests.support.settings import use_settings

from gateway.app import create_app
from runner.settings import get_settings


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [(s.labels, s.value) for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == name]


def count(text: str, **labels: str) -> float:
    return sum(v for got, v in samples(text, "devteam_http_requests_total")
               if all(got.get(k) == w for k, w in labels.items()))


async def test_metrics_need_no_token_and_count_requests_by_route_template(
    client: AsyncTestClient[Any], alice: dict[str, str]
) -> None:
    execution = uuid.uuid4()
    before = (await client.get("/metrics")).text
    for _ in range(3):
        answer = await client.get(f"/api/devteam/errors/{execution}/{uuid.uuid4()}",
                                  headers=alice)
        assert answer.status_code in (403, 404)
    answered = await client.get("/metrics")
    assert answered.status_code == 200
    assert answered.headers["content-type"].startswith("text/plain")
    after = answered.text
    route = "/api/devteam/errors/{execution_id}/{error_id}"
    routes = {labels["route"] for labels, _ in samples(after, "devteam_http_requests_total")}
    assert route in routes, sorted(routes)
    status = str(answer.status_code)
    assert count(after, route=route, status=status) - count(before, route=route,
                                                            status=status) == 3
    assert not any(str(execution) in r for r in routes)
    durations = samples(after, "devteam_http_request_duration_seconds_count")
    assert any(labels.get("route") == route for labels, _ in durations)
    # every family the service defines is there, named devteam_*
    names = {f.name for f in text_string_to_metric_families(after)}
    assert {"devteam_stage_duration_seconds", "devteam_outbox_backlog",
            "devteam_model_tokens", "devteam_stream_clients"} <= names


async def test_unmatched_paths_and_odd_methods_share_one_label(
    client: AsyncTestClient[Any]
) -> None:
    for n in range(20):
        assert (await client.get(f"/attack/{uuid.uuid4()}/{n}")).status_code == 404
        await client.request(f"X{n}CUSTOM", "/metrics")
    text = (await client.get("/metrics")).text
    labels = [got for got, _ in samples(text, "devteam_http_requests_total")]
    assert not [got for got in labels if got["route"].startswith("/attack")]
    assert count(text, route="<unmatched>", status="404") >= 20
    assert not [got for got in labels if "CUSTOM" in got["method"]]
    assert {got["method"] for got in labels} <= {"GET", "HEAD", "POST", "PUT", "PATCH",
                                                  "DELETE", "OPTIONS", "OTHER"}


async def test_metrics_can_be_switched_off(env: dict[str, str], monkeypatch) -> None:
    use_settings(env, monkeypatch, {"DEVTEAM_METRICS_ENABLED": "false"})
    async with AsyncTestClient(create_app(get_settings()), base_url="http://gateway.local") as c:
        assert (await c.get("/metrics")).status_code == 404


def test_metrics_served_on_their_own_address_and_not_on_the_api(procs: Processes) -> None:
    metrics_port = free_port()
    gateway = procs.gateway(DEVTEAM_METRICS_ADDRESS=f"127.0.0.1:{metrics_port}")
    assert httpx.get(f"{gateway.url}/health", timeout=10).status_code in (200, 503)
    assert httpx.get(f"{gateway.url}/metrics", timeout=10).status_code == 404
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    assert count(text, route="/health", method="GET") >= 1
    assert count(text, route="<unmatched>", status="404") >= 1


def test_a_forking_gateway_sums_its_processes(procs: Processes, tmp_path) -> None:
    port = free_port()
    gateway = procs.start("gateway", [str(procs_devteam()), "serve", "--port", str(port),
                                      "--workers", "2"], port=port,
                          extra_env={"DEVTEAM_METRICS_MULTIPROC_DIR": str(tmp_path / "m")})
    from tests.support.procs import wait_http

    wait_http(gateway, "/health", timeout=90)
    counters = tmp_path / "m" / f"gateway-{port}"
    # spread over both processes by the kernel; /health answered as soon as one process
    # was up, so on a busy machine the second may still be starting: send until both
    # have counted a request (at least 40 requests; bounded)
    sent, deadline = 0, time.monotonic() + 90
    while sent < 40 or (len(list(counters.glob("counter_*.db"))) < 2
                        and time.monotonic() < deadline):
        assert httpx.get(f"{gateway.url}/health/live", timeout=10).status_code < 500
        sent += 1
    total = 0.0
    for _ in range(10):  # whichever process answers reports both processes' requests
        text = httpx.get(f"{gateway.url}/metrics", timeout=10).text
        total = count(text, route="/health/live")
        assert total >= sent
    # both processes write their values where /metrics reads them
    files = list(counters.glob("counter_*.db"))
    assert len(files) == 2, files
    live = (tmp_path / "m" / f"gateway-{port}").glob("gauge_livesum_*.db")
    assert len(list(live)) == 2
    # a process that stops no longer counts in the live gauges (stream clients)
    gateway.stop()
    assert list((tmp_path / "m" / f"gateway-{port}").glob("gauge_livesum_*.db")) == []


def procs_devteam() -> Any:
    from tests.support.procs import DEVTEAM

    return DEVTEAM
