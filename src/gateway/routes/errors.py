"""Domain errors of the pipeline → problem details, in one place."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from gateway.problems import Problem
from pipeline.commands import ExecutionNotFound, ProjectNotFound
from pipeline.db import StoreUnavailable
from pipeline.lifecycle import TransitionError
from runner.errors import Classification, RunnerError


@contextlib.contextmanager
def command_errors() -> Iterator[None]:
    try:
        yield
    except TransitionError as exc:
        raise Problem(
            409,
            str(exc),
            type_="https://devteam.dev/problems/invalid-transition",
            currentStatus=exc.current.value,
            validTransitions=exc.valid,
        ) from None
    except ProjectNotFound:
        raise Problem(
            404,
            "this project has no repository yet: initialize it with repositoryUrl",
        ) from None
    except ExecutionNotFound:
        raise Problem(404, "this project has never run") from None
    except StoreUnavailable:
        raise Problem(503, "the database is unavailable; try again shortly",
                      headers={"Retry-After": "2"}) from None
    except RunnerError as exc:
        status = {
            Classification.CONFIG: 400,
            Classification.CONFLICT: 409,
            Classification.TRANSIENT: 503,
            Classification.INFRASTRUCTURE: 503,
        }.get(exc.classification, 422)
        raise Problem(status, exc.message, classification=str(exc.classification)) from None
