"""The Docker edge (retries, translation), output handling, classification and the image."""

from __future__ import annotations

import shutil

import docker.errors
import pytest
import requests
from requests.models import Response

from runner.errors import Classification, InfrastructureError, TransientError
from runner.ports import CommandResult
from runner.sandbox import build_image, classify, content_hash, engine, image_status
from runner.sandbox.engine import RETRY_ATTEMPTS, NotFoundError, call
from runner.sandbox.image import CONTAINERS, HASH_LABEL
from runner.sandbox.output import OutputCollector
from runner.settings import get_settings, load_settings


def _api_error(status: int, message: str) -> docker.errors.APIError:
    response = Response()
    response.status_code = status
    return docker.errors.APIError(message, response=response, explanation=message)


class Flaky:
    """A Docker call that fails with ``errors`` in turn, then returns ``value``."""

    def __init__(self, errors: list[Exception], value: object = "done") -> None:
        self.errors = list(errors)
        self.calls = 0
        self.value = value

    def __call__(self) -> object:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.value


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waits between attempts, recorded instead of slept."""
    recorded: list[float] = []
    monkeypatch.setattr(engine, "pause", recorded.append)
    return recorded


def test_given_transient_engine_errors_then_the_call_is_retried_until_it_works(
    waits: list[float],
) -> None:
    flaky = Flaky(
        [
            _api_error(500, "server error"),
            _api_error(409, "removal of container x is already in progress"),
            requests.exceptions.ConnectionError("Connection reset by peer"),
        ]
    )

    assert call("inspect x", flaky) == "done"
    assert flaky.calls == 4
    assert waits == pytest.approx([0.1, 0.2, 0.4])


def test_given_a_persistent_5xx_then_transient_error_after_bounded_retries(
    waits: list[float],
) -> None:
    flaky = Flaky([_api_error(503, "busy")] * 10)

    with pytest.raises(TransientError, match="503"):
        call("start x", flaky)
    assert flaky.calls == RETRY_ATTEMPTS
    assert len(waits) == RETRY_ATTEMPTS - 1
    assert waits == sorted(waits) and waits[0] > 0


def test_given_a_404_or_a_refused_connection_then_no_retry_and_a_runner_error():
    missing = Flaky([docker.errors.NotFound("no such container")])
    refused = Flaky([requests.exceptions.ConnectionError("Connection refused")])
    bad = Flaky([_api_error(400, "invalid reference format")])

    with pytest.raises(NotFoundError):
        call("inspect x", missing)
    with pytest.raises(InfrastructureError, match="not reachable"):
        call("inspect x", refused)
    with pytest.raises(InfrastructureError, match="400"):
        call("create x", bad)
    assert (missing.calls, refused.calls, bad.calls) == (1, 1, 1)


def test_given_marker_lines_and_partial_output_then_collector_keeps_only_command_lines():
    seen: list[str] = []

    def sink(line: str) -> None:
        seen.append(line)
        raise RuntimeError("a broken subscriber must not stop the output")

    collector = OutputCollector("n1", sink)
    collector.feed(1, b'@@devteam-n1@@ {"event": "start", "pgid": 7}\nhel')
    collector.feed(2, b"warn\n")
    collector.feed(1, b'lo\n@@devteam-n1@@ {"event": "end", "exit": 0}\n')
    collector.feed(1, b"@@devteam-other@@ {}\nlast")
    collector.close()

    assert seen == ["warn", "hello", "@@devteam-other@@ {}", "last"]
    assert collector.start == {"event": "start", "pgid": 7}
    assert collector.end == {"event": "end", "exit": 0}
    assert collector.tail == "warn\nhello\n@@devteam-other@@ {}\nlast"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"exit_code": 0}, None),
        ({"exit_code": 0, "pids_limited": True}, None),
        ({"exit_code": 1}, Classification.VERIFICATION),
        ({"exit_code": 137, "oom_killed": True}, Classification.RESOURCE_LIMIT),
        ({"exit_code": 2, "pids_limited": True}, Classification.RESOURCE_LIMIT),
        ({"exit_code": 137, "timed_out": True}, Classification.RESOURCE_LIMIT),
        ({"exit_code": 137, "cancelled": True}, Classification.CANCELLED),
    ],
)
def test_given_a_command_result_then_classify_says_what_the_pipeline_does(fields, expected):
    result = CommandResult(command="x", duration=1.0, output_tail="", **fields)

    assert classify(result) == expected


def test_given_a_changed_runner_file_then_the_content_hash_changes(tmp_path):
    copy = tmp_path / "containers"
    shutil.copytree(CONTAINERS, copy)
    before = content_hash("devteam-base:bookworm", copy)

    (copy / "service" / "Dockerfile").write_text("# not part of the runner image\n")
    unchanged = content_hash("devteam-base:bookworm", copy)
    (copy / "runner" / "exec.py").write_text("# changed\n", encoding="utf-8")
    changed = content_hash("devteam-base:bookworm", copy)

    assert before == content_hash("devteam-base:bookworm", CONTAINERS)
    assert unchanged == before
    assert changed != before
    assert content_hash("python:3.11-slim-bookworm", copy) != changed


@pytest.mark.docker
def test_given_an_up_to_date_image_then_build_does_nothing(docker_client, runner_image):
    settings = get_settings()

    report = build_image(docker_client, settings, log=lambda _m: None)

    assert not report.image_built
    assert not report.base_built
    labels = docker_client.api.inspect_image(runner_image)["Config"]["Labels"]
    assert labels[HASH_LABEL] == report.content_hash == content_hash(settings.sandbox.base_image)


@pytest.mark.docker
def test_given_present_or_missing_image_then_health_status_says_so(docker_client, runner_image):
    missing = load_settings({"DEVTEAM_SANDBOX_IMAGE": "devteam-runner:never-built"})

    assert image_status(docker_client, get_settings()) == (True, f"{runner_image} up to date")
    ok, detail = image_status(docker_client, missing)
    assert not ok
    assert "devteam image build" in detail
