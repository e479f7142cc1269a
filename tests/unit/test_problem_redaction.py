"""Problem answers pass through the app's redactor, built once at startup (no secret and
no host path in what a tenant reads), and through one built on the spot without it."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import msgspec
from litestar import Litestar, Request, get
from litestar.testing import TestClient

from gateway.problems import Problem, on_problem
from runner.redact import Redactor, host_paths
from runner.settings import get_settings, reset_settings_cache

CREDENTIAL = "ghp_only-the-apps-redactor-knows-1"


def _app(services: Any = None) -> Litestar:
    workspace = get_settings().path(get_settings().workspace.root)

    @get("/boom")
    async def boom(request: Request[Any, Any, Any]) -> None:
        raise Problem(422, f"cannot read {workspace}/acme/work/web/run-1/src/app.py "
                           f"with {CREDENTIAL}", where=f"{workspace}/acme")

    app = Litestar(route_handlers=[boom], exception_handlers={Problem: on_problem})
    if services is not None:
        app.state.services = services
    return app


def _problem(app: Litestar) -> dict[str, Any]:
    with TestClient(app) as client:
        response = client.get("/boom")
    assert response.status_code == 422
    body: dict[str, Any] = msgspec.json.decode(response.content)
    return body


def test_a_problem_passes_through_the_apps_redactor(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DEVTEAM_WORKSPACE_ROOT", str(tmp_path / "ws"))
    reset_settings_cache()
    try:
        redactor = Redactor([CREDENTIAL]).with_paths(host_paths())
        body = _problem(_app(SimpleNamespace(redactor=redactor)))
    finally:
        monkeypatch.delenv("DEVTEAM_WORKSPACE_ROOT")
        reset_settings_cache()
    assert body["detail"] == "cannot read src/app.py with [REDACTED:secret]"
    assert body["where"] == "<workspace>/acme"


def test_without_the_apps_services_a_problem_still_hides_host_paths(
    tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("DEVTEAM_WORKSPACE_ROOT", str(tmp_path / "ws"))
    reset_settings_cache()
    try:
        body = _problem(_app())
    finally:
        monkeypatch.delenv("DEVTEAM_WORKSPACE_ROOT")
        reset_settings_cache()
    assert str(tmp_path) not in msgspec.json.encode(body).decode()
    assert body["detail"].startswith("cannot read src/app.py with ")
