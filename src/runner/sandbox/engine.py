"""The edge between the sandbox and the Docker SDK: clients, retries, error translation.

Every Docker call of the sandbox goes through :func:`call`, so nothing above this module
sees a ``docker.errors`` or ``requests`` exception. Transient engine answers (connection
reset, 5xx, 409 "in progress") are retried with exponential backoff; an engine that does
not answer at all becomes an ``InfrastructureError`` naming the endpoint.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import docker
import docker.errors
import requests.exceptions
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from runner.dockerhost import docker_base_url
from runner.errors import InfrastructureError, RunnerError, TransientError
from runner.settings import Settings, get_settings

T = TypeVar("T")

RETRY_ATTEMPTS = 4
"""Tries of one Docker call when the engine answers with a transient error."""
MAX_CONNECTIONS = 32
"""Connections kept to the engine: each running command holds one while it streams."""


class NotFoundError(RunnerError):
    """The container, volume or image asked for does not exist (never leaves the package)."""


def make_client(settings: Settings | None = None, *, timeout: int = 60) -> Any:
    """A ``docker.DockerClient`` for the configured engine, checked with a ping.

    Raises ``InfrastructureError`` with the endpoint when the engine does not answer.
    """
    settings = settings or get_settings()
    url = docker_base_url(settings)
    try:
        client = docker.DockerClient(
            base_url=url, timeout=timeout, version="auto", max_pool_size=MAX_CONNECTIONS
        )
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure here means "engine not usable"
        raise InfrastructureError(
            f"Docker engine at {url} is not reachable ({type(exc).__name__}); "
            "start it with `devteam services up` or set DEVTEAM_SANDBOX_DOCKER_HOST",
            details={"docker_host": url},
        ) from None
    return client


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, docker.errors.APIError) and not isinstance(exc, docker.errors.NotFound):
        status = exc.status_code or 0
        text = str(exc.explanation or "").lower()
        return status >= 500 or (status == 409 and "in progress" in text)
    if isinstance(exc, requests.exceptions.ConnectionError):
        return "reset" in str(exc).lower() or "aborted" in str(exc).lower()
    return isinstance(exc, ConnectionResetError | requests.exceptions.ReadTimeout)


def translate(exc: BaseException, what: str) -> RunnerError:
    """The runner error for a Docker SDK exception raised while doing ``what``."""
    if isinstance(exc, RunnerError):
        return exc
    if isinstance(exc, docker.errors.NotFound):
        return NotFoundError(f"{what}: not found")
    if isinstance(exc, requests.exceptions.ConnectionError | ConnectionError | FileNotFoundError):
        return InfrastructureError(
            f"{what}: the Docker engine is not reachable ({type(exc).__name__})",
            details={"operation": what},
        )
    if isinstance(exc, docker.errors.APIError):
        status = exc.status_code or 0
        detail = str(exc.explanation or exc)[:300]
        cls = TransientError if _is_transient(exc) else InfrastructureError
        return cls(f"{what}: Docker answered {status}: {detail}", details={"status": status})
    if isinstance(exc, requests.exceptions.RequestException):
        return TransientError(f"{what}: {type(exc).__name__}")
    return InfrastructureError(f"{what}: {type(exc).__name__}: {str(exc)[:300]}")


def pause(seconds: float) -> None:
    """The wait between two attempts of :func:`call` (looked up by each call, so a test
    can record the waits instead of sleeping them)."""
    time.sleep(seconds)


def call(what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run one Docker SDK call, retrying transient failures, translating every error.

    ``what`` names the operation in error messages (e.g. ``"create container dt-…"``).
    Raises ``NotFoundError`` for a 404, ``TransientError`` when retries ran out on a transient
    error, ``InfrastructureError`` otherwise.
    """
    retrying = Retrying(
        retry=retry_if_exception(_is_transient),
        stop=stop_after_attempt(RETRY_ATTEMPTS),
        wait=wait_exponential(multiplier=0.1, max=2.0),
        sleep=pause,
        reraise=True,
    )
    try:
        for attempt in retrying:
            with attempt:
                return fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - translated right here, at the edge
        raise translate(exc, what) from None
    raise AssertionError("unreachable")  # pragma: no cover


def ignore_missing(what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> bool:
    """Like :func:`call` for removals: ``False`` when the object was already gone."""
    try:
        call(what, fn, *args, **kwargs)
    except NotFoundError:
        return False
    except RunnerError as exc:
        # Removing something that is already being removed is done, not failed.
        if "already in progress" in exc.message or "is being removed" in exc.message:
            return False
        raise
    return True
