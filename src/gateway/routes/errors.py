"""Domain errors of the pipeline and the runner → problem details, in one place.

- an invalid lifecycle transition: 409 with ``currentStatus`` and ``validTransitions``;
- an unknown project, execution or task: 404;
- ``options.idempotencyKey`` reused with another request: 422, as for the header;
- the database or an infrastructure piece (Docker, the network) unavailable: 503;
- a runner error by its classification: ``config`` (the repository or the request does
  not fit the project: no task list, a broken one, an unknown branch) 422, ``conflict``
  409, ``transient``/``infrastructure`` 503, anything else 422. The message is the
  runner's own, which is already free of secrets (the problem handler redacts it again).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from gateway.problems import Problem
from pipeline.commands import ExecutionNotFound, IdempotencyKeyReused, ProjectNotFound
from pipeline.db import StoreUnavailable
from pipeline.lifecycle import TransitionError
from runner.errors import Classification, RunnerError

_BY_CLASSIFICATION = {
    Classification.CONFIG: 422,
    Classification.CONFLICT: 409,
    Classification.TRANSIENT: 503,
    Classification.INFRASTRUCTURE: 503,
}


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
    except IdempotencyKeyReused as exc:
        raise Problem(422, str(exc),
                      type_="https://devteam.dev/problems/idempotency-key-reused") from None
    except StoreUnavailable:
        raise Problem(503, "the database is unavailable; try again shortly",
                      headers={"Retry-After": "2"}) from None
    except RunnerError as exc:
        status = _BY_CLASSIFICATION.get(exc.classification, 422)
        headers = {"Retry-After": "5"} if status == 503 else None
        raise Problem(status, exc.message, classification=str(exc.classification),
                      headers=headers) from None
    except LookupError as exc:
        # The pipeline's "no task X in tasks_list.md"; a KeyError is a bug, not a 404.
        if type(exc) is not LookupError:
            raise
        raise Problem(404, str(exc)) from None
