"""A ``repositoryUrl`` the pipeline will refuse is refused at the door, against a real
``devteam serve`` process: ``POST /events`` and initialize answer 422 naming the field,
with the pipeline's own message (``RepositoryPolicy``, which ``GitWorkspace`` applies
before every network operation), and nothing is stored.

Reproduced from the frontend trial (both were 202, then the execution failed ~130 ms later):

- ``http://`` to a host the operator never allows it for (``DEVTEAM_GIT_PRIVATE_HOSTS``
  names no host and no network): refused whether or not the name resolves right now
  (there is no DNS here, which is how the door used to let it through as "unreachable");
- control characters the URL parser let pass: C1 controls (``\\x9b``, a terminal's CSI),
  bidirectional overrides (``\\u202e``) and zero-width characters; C0 and DEL were refused
  already and stay refused.

A URL the pipeline accepts is still 202 (the control case), and a name that does not
resolve right now for ``https://`` is still let through: the pipeline checks again before
it connects and reports it as unreachable (a DNS outage is transient).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from tests.integration.gateway.conftest import add_project
from tests.integration.security.helpers import row_counts

from runner.errors import Classification
from runner.git.policy import Allowed, Refused, RepositoryPolicy, parse_customer_repos
from runner.settings import get_settings

pytestmark = [pytest.mark.slow]

HOSTS = ("example.com", "repo.invalid")
REPOS = "acme=" + " ".join(f"{s}://{h}/" for s in ("http", "https") for h in HOSTS)
INITIALIZE = "/api/devteam/automation/initialize"
REFUSED = [
    "http://example.com/repo.git",
    "http://repo.invalid/acme/web.git",
    "https://example.com/acme/w\x9beb.git",
    "https://example.com/acme/\u202etig.bew",
    "https://example.com/acme/w\u200beb.git",
    "https://example.com/acme/w\x01eb.git",
    "https://example.com/acme/web.git\x7f",
]


def pipeline_policy() -> RepositoryPolicy:
    """The policy the pipeline's workspace builds from the same settings as the gateway."""
    return RepositoryPolicy(parse_customer_repos(REPOS), settings=get_settings())


def event(project: str, url: str) -> dict[str, Any]:
    return {"workflow_type": "DEVTEAM_AUTOMATION",
            "data": {"projectId": project, "repositoryUrl": url}}


async def test_urls_the_pipeline_refuses_are_422_naming_the_field_and_nothing_is_stored(
    store, procs, sample, token_for
) -> None:
    # Given a gateway whose operator allows acme on example.com and repo.invalid, over
    # http and https, and names no private host
    gateway = procs.gateway(DEVTEAM_GIT_CUSTOMER_REPOS=REPOS, DEVTEAM_GIT_PRIVATE_HOSTS="")
    alice = {"Authorization": f"Bearer {token_for('alice', ['acme/*'])}"}
    policy = pipeline_policy()
    before = await row_counts(store)
    answers: dict[str, list[httpx.Response]] = {}
    async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as client:
        # When each URL the pipeline refuses is submitted to initialize and POST /events
        # (each to a project of its own, so an accepted one cannot hide the next as a 409)
        for n, url in enumerate(REFUSED):
            answers[url] = [
                await client.post(INITIALIZE, json={"projectId": f"acme/init-{n}",
                                                    "repositoryUrl": url}, headers=alice),
                await client.post("/events", json=event(f"acme/event-{n}", url), headers=alice),
            ]
    wrong = []
    for url, (initialized, evented) in answers.items():
        # (the pipeline refuses it: a config error, not a transient one to retry)
        decision = policy.decide("acme", url)
        reason = decision.reason if isinstance(decision, Refused) else "allowed"
        if not isinstance(decision, Refused) or decision.classification is not (
                Classification.CONFIG):
            wrong.append(f"{url!r}: the pipeline's decision is {decision}")
        for answer, field in ((initialized, "repositoryUrl"), (evented, "data.repositoryUrl")):
            expected = [{"field": field, "message": reason}]
            if (answer.status_code != 422
                    or answer.headers["content-type"] != "application/problem+json"
                    or answer.json()["errors"] != expected):
                wrong.append(f"{url!r} {field}: {answer.status_code} {answer.text[:300]}")
    # Then every one is 422 naming its field with the pipeline's reason, nothing stored
    assert wrong == [], "\n".join(wrong)
    assert await row_counts(store) == before


async def test_urls_the_pipeline_accepts_or_retries_are_still_accepted(
    store, procs, sample, token_for
) -> None:
    # Given the same gateway, and acme/web registered with the sample repository
    await add_project(store, "acme/web", sample.url)
    gateway = procs.gateway(DEVTEAM_GIT_CUSTOMER_REPOS=REPOS, DEVTEAM_GIT_PRIVATE_HOSTS="")
    alice = {"Authorization": f"Bearer {token_for('alice', ['acme/*'])}"}
    unresolved = "https://repo.invalid/acme/web.git"
    async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as client:
        # When a local repository under the allowed roots is submitted, and an https URL
        # whose name does not resolve right now
        local = await client.post("/events", json=event("acme/web", sample.url), headers=alice)
        later = await client.post(INITIALIZE, json={"projectId": "acme/other",
                                                    "repositoryUrl": unresolved},
                                  headers=alice)
    # Then both are accepted: the first the pipeline allows outright, the second it
    # checks again before connecting (a transient refusal, retried)
    assert isinstance(pipeline_policy().decide("acme", sample.url), Allowed)
    transient = pipeline_policy().decide("acme", unresolved)
    assert isinstance(transient, Refused)
    assert transient.classification is Classification.TRANSIENT
    assert local.status_code == 202, local.text
    assert later.status_code == 202, later.text
