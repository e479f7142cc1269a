"""RFC 9457 problem details for every error the gateway returns.

One exception type (``Problem``) carries status, title, detail and context fields; the
handlers here turn it, Litestar's own HTTP exceptions, validation failures and anything
unexpected into ``application/problem+json`` bodies with the correlation id. Nothing else
leaks: no stack trace, no SQL, no secret (details pass through the redactor).
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.utils.scope.state import ScopeState

from gateway import correlation
from gateway.validation import FIELD_CHARS, MESSAGE_CHARS, clip, collect_errors, listing
from runner.redact import Redactor, tenant_redactor

log = structlog.get_logger("devteam.gateway")

PROBLEM_JSON = "application/problem+json"

TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class Problem(Exception):
    """An error response. ``extra`` adds context fields (e.g. ``currentStatus``)."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        type_: str | None = None,
        title: str | None = None,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.type = type_ or f"https://devteam.dev/problems/{status}"
        self.title = title or TITLES.get(status, "Error")
        self.errors = errors
        self.headers = headers or {}
        self.extra = extra


def correlation_id(request: Request[Any, Any, Any]) -> str:
    return correlation.ensure(request.scope)


def _redactor(request: Request[Any, Any, Any]) -> Redactor:
    """What tenants read passes through: no secret, and none of the host's paths either.

    The app's ``Services.redactor`` (secrets, credentials, host paths), built once at
    startup: resolving the host's directories for every problem answer cost more than
    the rest of a 4xx. Without services (an app not started), one built now."""
    services = getattr(request.app.state, "services", None)
    redactor = getattr(services, "redactor", None)
    return redactor if isinstance(redactor, Redactor) else tenant_redactor()


def problem_response(request: Request[Any, Any, Any], problem: Problem) -> Response[bytes]:
    redactor = _redactor(request)
    body: dict[str, Any] = {
        "type": problem.type,
        "title": problem.title,
        "status": problem.status,
        "detail": redactor.redact(problem.detail),
        "instance": request.url.path,
        "correlationId": correlation_id(request),
    }
    if problem.errors is not None:
        body["errors"] = problem.errors
    body.update(redactor.redact_obj(problem.extra))
    return Response(
        content=msgspec.json.encode(body),
        status_code=problem.status,
        media_type=PROBLEM_JSON,
        headers={**problem.headers, "X-Correlation-Id": body["correlationId"]},
    )


def on_problem(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    assert isinstance(exc, Problem)
    return problem_response(request, exc)


def on_validation(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    """Name every bad field, not only the first one msgspec stopped at: up to
    ``validation.MAX_ERRORS`` of them, then one entry saying how many more there were."""
    assert isinstance(exc, ValidationException)
    errors: list[dict[str, str]] = []
    omitted = 0
    handler = request.scope.get("route_handler")
    body_type = getattr(handler, "parsed_data_field", None)
    raw = ScopeState.from_scope(request.scope).body
    if body_type is not None and isinstance(raw, bytes | bytearray):
        errors, omitted = collect_errors(body_type.annotation, bytes(raw))
    extra = [e for e in (exc.extra or []) if isinstance(e, dict)]
    # Path and query parameters are checked by Litestar, the body above: report both.
    errors += [_litestar_error(handler, e) for e in extra
               if e.get("source") != "body" or not errors]
    if not errors:
        missing = _MISSING.match(str(exc.detail))
        errors = [{"field": clip(missing[1]), "message": "required parameter is missing"}
                  if missing else {"field": "", "message": clip(str(exc.detail), MESSAGE_CHARS)}]
    detail = "; ".join(f"{e['field'] or 'body'}: {e['message']}" for e in errors[:5])
    return problem_response(request, Problem(400, f"invalid request: {detail}",
                                             errors=listing(errors, omitted)))


_MISSING = re.compile(r"^Missing required \w+ parameter '([^']+)'")


def _litestar_error(handler: Any, entry: dict[str, Any]) -> dict[str, str]:
    key = str(entry.get("key") or "")
    message = str(entry.get("message") or "invalid value")
    if message.startswith(("Expected", "Object")):
        message = message.split(" - at ", 1)[0]
    return {"field": clip(_wire_name(handler, key), FIELD_CHARS),
            "message": clip(message, MESSAGE_CHARS)}


def _wire_name(handler: Any, key: str) -> str:
    """The name the client sent (``projectId``), not the handler's argument (``project``)."""
    signature = getattr(handler, "parsed_fn_signature", None)
    param = signature.parameters.get(key) if signature is not None else None
    kwarg = getattr(param, "kwarg_definition", None)
    for attribute in ("query", "header", "cookie", "name"):
        alias = getattr(kwarg, attribute, None)
        if isinstance(alias, str):
            return alias
    return key


def on_http(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    detail = str(exc.detail or TITLES.get(status, "error"))
    if status == 400:  # the body did not decode (typed problems are Validation's)
        detail = "malformed JSON body" + ("" if "JSON" in detail.upper() else f": {detail}")
    if status == 413:
        detail = "request body too large"
    headers = dict(exc.headers or {})
    return problem_response(request, Problem(status, detail, headers=headers))


def on_unavailable(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    """The database could not be reached, wherever that happened: 503, retry shortly."""
    log.warning("gateway.store_unavailable", error=str(exc), path=request.url.path)
    return problem_response(request, Problem(
        503, "the database is unavailable; try again shortly", headers={"Retry-After": "2"}))


def on_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log.error(
        "gateway.unhandled",
        error=type(exc).__name__,
        path=request.url.path,
        correlation_id=correlation_id(request),
        exc_info=exc,
    )
    return problem_response(
        request, Problem(500, "the server failed to handle this request; it has been logged")
    )
