"""Small helpers every controller uses: the caller, the store, JSON responses, docs."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import unquote

import msgspec
from litestar import Request, Response
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example
from litestar.params import PathParameter

from gateway.auth import Authenticator, Principal, bearer, is_project_id
from gateway.coalesce import Coalesced
from gateway.correlation import scope_header
from gateway.problems import TITLES, Problem, correlation_id
from gateway.schemas import END
from pipeline import audit
from pipeline.db import Store
from pipeline.services import Services
from pipeline.store.executions import StatusRow
from runner.settings import Settings

ENCODER = msgspec.json.Encoder()


class ProblemBody(msgspec.Struct, kw_only=True):
    """RFC 9457 problem details (``application/problem+json``)."""

    type: str
    title: str
    status: int
    detail: str
    instance: str
    correlationId: str  # noqa: N815
    errors: list[dict[str, str]] | None = None
    currentStatus: str | None = None  # noqa: N815
    validTransitions: list[str] | None = None  # noqa: N815


def respond(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response[bytes]:
    return Response(
        content=ENCODER.encode(body),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def state(request: Request[Any, Any, Any]) -> State:
    return request.app.state


def store_of(request: Request[Any, Any, Any]) -> Store:
    store: Store = request.app.state.store
    return store


def services_of(request: Request[Any, Any, Any]) -> Services:
    """The runner adapters (git, sandbox, Aider) for the one-step and repository APIs."""
    services: Services = request.app.state.services
    return services


def statuses_of(request: Request[Any, Any, Any]) -> Coalesced[str, StatusRow]:
    """Projects' status reads, coalesced per turn of the event loop."""
    statuses: Coalesced[str, StatusRow] = request.app.state.statuses
    return statuses


def settings_of(request: Request[Any, Any, Any]) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def principal_of(request: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    """The authenticated caller (401 otherwise); computed once per request."""
    scope_state = request.scope.setdefault("state", {})
    cached = scope_state.get("principal")
    if isinstance(cached, Principal):
        return cached
    auth: Authenticator = request.app.state.auth
    principal = auth.authenticate(bearer(_authorization(request.scope)))
    scope_state["principal"] = principal
    return principal


NEEDS_TOKEN = "needs_token"  # noqa: S105 - the name of an opt key, not a secret
"""``opt`` key of the router whose routes need a token (every API route; ``/health``,
``/health/live``, the schema and the stream's own handshake do not)."""


def _authorization(scope: Any) -> str | None:
    """The ``Authorization`` header (see ``scope_header``)."""
    value = scope_header(scope, b"authorization")
    return None if value is None else value.decode("latin-1")


async def admit(request: Request[Any, Any, Any]) -> None:
    """``before_request`` hook of every route: a 401 before anything else where a token is
    needed (body validation included, so an anonymous caller learns nothing from a 400,
    404 or 415), then the JSON body's checks (``json_body``).

    Not a Litestar guard: Litestar hands each guard a copy of the route handler, a
    shallow copy of some 60 attributes on every request (about a twentieth of a status
    read's CPU), and this hook runs at the same point, before the body is read."""
    handler = request.scope.get("route_handler")
    if handler is not None and handler.opt.get(NEEDS_TOKEN):
        principal_of(request)
    await json_body(request)


_JSON_TYPES = ("application/json",)
MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays and objects a JSON body may have (no schema needs a tenth)."""


async def json_body(request: Request[Any, Any, Any]) -> None:
    """``before_request`` hook: 415 unless a handler's JSON body comes as JSON; 400 when it
    is nested deeper than ``MAX_JSON_DEPTH``.

    Litestar decodes any body as JSON whatever its ``Content-Type``; clients that send
    ``text/plain`` or a form by mistake deserve a clear 415 instead. A body of a few
    hundred kilobytes of ``[`` would make the decoder recurse past Python's limit, which
    Litestar reports as a 500; it is refused here first.
    """
    handler = request.scope.get("route_handler")
    if getattr(handler, "parsed_data_field", None) is None:
        return
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if not (media in _JSON_TYPES or (media.startswith("application/") and media.endswith("+json"))):
        raise Problem(
            415,
            "send the body as JSON with Content-Type: application/json",
            headers={"Accept": "application/json"},
        )
    body = await request.body()
    if body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH and _too_deep(body):
        raise Problem(
            400,
            f"malformed JSON body: nested deeper than {MAX_JSON_DEPTH} levels",
            errors=[{"field": "", "message": f"nested deeper than {MAX_JSON_DEPTH} levels"}],
        )


def _too_deep(body: bytes) -> bool:
    """Whether ``body`` is JSON nested deeper than ``MAX_JSON_DEPTH`` (malformed JSON that
    is not too deep is left for Litestar to report)."""
    try:
        value = msgspec.json.decode(body)
    except RecursionError:
        return True
    except msgspec.DecodeError:
        return False
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return True
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return False


def actor_of(request: Request[Any, Any, Any]) -> audit.Principal:
    """The caller as the pipeline's command API and audit log name it."""
    principal = principal_of(request)
    return audit.Principal(user_id=principal.user_id, role=principal.role,
                           correlation_id=correlation_id(request))


async def record_change(
    request: Request[Any, Any, Any], action: str, project_id: str, details: dict[str, Any]
) -> None:
    """One audit row for a state change the pipeline does not record itself."""
    async with store_of(request).tx() as tx:
        await audit.record(tx, principal=actor_of(request), action=action,
                           project_id=project_id, details=details)


_PROJECT = r"[A-Za-z0-9_-]{1,100}/[A-Za-z0-9_-]{1,100}"
ProjectPath = Annotated[str, PathParameter(
    pattern=rf"^/?{_PROJECT}{END}", max_length=202,
    description="customer/project; the slash may also be sent as %2F",
    examples=[Example(value="customer-123/project-abc")],
)]
"""A ``{name:path}`` parameter holding a projectId (Litestar keeps its leading slash)."""
TaskPath = Annotated[str, PathParameter(
    pattern=rf"^/?{_PROJECT}/[A-Za-z0-9][A-Za-z0-9._-]{{0,99}}{END}", max_length=302,
    description="customer/project/taskId; the project's slash may also be sent as %2F",
    examples=[Example(value="customer-123/project-abc/1.1")],
)]
"""A ``{name:path}`` parameter holding ``projectId/taskId``."""


def project_param(raw: str) -> str:
    """A projectId from a path: with its slash or as ``%2F``; 400 when malformed."""
    value = unquote(raw.lstrip("/"))
    if not is_project_id(value):
        raise Problem(
            400,
            "projectId must be customer/project (letters, digits, _ and -)",
            errors=[{"field": "projectId", "message": "must match customer/project"}],
        )
    return value


def docs(
    status: int,
    model: type[Any],
    example: dict[str, Any] | list[Any],
    *errors: int,
    public: bool = False,
) -> dict[int, ResponseSpec]:
    """OpenAPI responses: the success body with an example, plus problem bodies.

    Every API route may answer 400 (validation), 401, 403, 413 and 415 besides the
    ``errors`` it names; a ``public`` route (no token, no body) only the ones it names.
    The examples are these and the models' own: Litestar would otherwise fill each
    model's fields with values it makes up (a command that ran for -12447749.3 seconds),
    and spend half of the gateway's start-up building them.
    """
    specs = {
        status: ResponseSpec(
            data_container=model,
            description="success",
            examples=[Example(summary="example", value=example)],
            generate_examples=False,
        )
    }
    common = () if public else (400, 401, 403, 413, 415)
    for code in (*common, *errors):
        specs[code] = ResponseSpec(
            data_container=ProblemBody,
            description="problem details",
            media_type="application/problem+json",
            examples=[Example(summary="problem", value=_problem_example(code))],
            generate_examples=False,
        )
    return specs


def _problem_example(code: int) -> dict[str, Any]:
    return {
        "type": f"https://devteam.dev/problems/{code}", "title": TITLES.get(code, "Error"),
        "status": code, "detail": "what went wrong, for a person", "instance": "/path",
        "correlationId": "c0ffee",
    }
