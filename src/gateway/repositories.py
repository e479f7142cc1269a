"""The door check of a ``repositoryUrl``: who may use which repository.

A URL carrying credentials (user information, a query string) is a 422 on every endpoint,
before anything is stored or sent. A URL the customer may not use (``RepositoryPolicy``:
the operator's per-customer prefixes, no loopback or private destinations unless allowed)
is a 422 naming the field where the URL would be stored (initialize, ``POST /events``),
and a result where it is only probed (``/repository/validate``). Host names are resolved
off the event loop. A name that does not resolve right now is let through: the pipeline
checks again before it connects, and reports it like any unreachable repository.
"""

from __future__ import annotations

import asyncio

from gateway.problems import Problem
from pipeline.services import Services
from runner.errors import Classification, ConfigError
from runner.git.policy import Refused
from runner.git.remote import UrlCredentialsError, parse_remote_url


def refuse_credentials(url: str, field: str) -> None:
    """422 when ``url`` carries credentials; the URL is never echoed."""
    try:
        parse_remote_url(url)
    except UrlCredentialsError as exc:
        raise _unprocessable(field, exc.message) from None
    except ConfigError:
        pass  # other problems are the policy's to report


async def require_allowed(services: Services, customer_id: str, url: str, field: str) -> None:
    """422 naming ``field`` unless ``customer_id`` may use ``url``."""
    refuse_credentials(url, field)
    decision = await asyncio.to_thread(services.repositories.decide, customer_id, url)
    if isinstance(decision, Refused) and decision.classification is Classification.CONFIG:
        raise _unprocessable(field, decision.reason)


def _unprocessable(field: str, message: str) -> Problem:
    return Problem(422, f"{field}: {message}", errors=[{"field": field, "message": message}])
