"""A 400 names the bad fields of a body, but boundedly: a 1 MB body with 100,000 unknown
keys gets the first ``MAX_ERRORS`` and one last entry counting the rest (not a 5 MB
answer), and what the client sent (field names, values msgspec quotes) is echoed cut
short. The problem keeps its ``errors: [{field, message}]`` shape."""

from __future__ import annotations

import time
from typing import Annotated, Any

import msgspec
from litestar import Litestar, post
from litestar.exceptions import ValidationException
from litestar.params import Body
from litestar.testing import TestClient

from gateway.problems import on_validation
from gateway.schemas import EventCreate
from gateway.validation import (
    ECHO_CHARS,
    FIELD_CHARS,
    MAX_ERRORS,
    MESSAGE_CHARS,
    collect_errors,
    echo,
    listing,
)

GOOD = {"workflow_type": "DEVTEAM_AUTOMATION", "data": {"projectId": "acme/web"}}


def flood(keys: int, key_length: int = 4) -> bytes:
    """A POST /events body whose ``data`` holds ``keys`` distinct unknown keys."""
    data: dict[str, Any] = {"projectId": "acme/web"}
    data.update({f"{i:0{key_length}d}": 1 for i in range(keys)})
    return msgspec.json.encode({"workflow_type": "DEVTEAM_AUTOMATION", "data": data})


def test_a_body_of_100k_unknown_keys_lists_the_first_ones_and_counts_the_rest() -> None:
    # Given a ~1 MB body whose data holds 107,000 unknown keys
    raw = flood(107_000)
    assert len(raw) > 1_000_000
    # When its errors are collected
    started = time.process_time()
    found = collect_errors(EventCreate, raw)
    spent = time.process_time() - started
    # Then MAX_ERRORS are listed, the other ones counted, and it is cheap
    assert len(found.listed) == MAX_ERRORS
    assert found.omitted == 107_000 - MAX_ERRORS
    assert found.listed[0] == {"field": "data.0000", "message": "unknown field"}
    assert spent < 0.5, f"{spent:.3f} s of CPU"


def test_the_listing_ends_with_one_entry_saying_how_many_more_there_were() -> None:
    found = collect_errors(EventCreate, flood(30))
    errors = listing(found.listed, found.omitted)
    assert len(errors) == MAX_ERRORS + 1
    assert errors[-1] == {"field": "", "message": f"10 more errors not listed (at most "
                                                  f"{MAX_ERRORS} are)"}
    # every entry keeps the {field, message} shape clients type errors with
    assert all(set(e) == {"field", "message"} and all(isinstance(v, str) for v in e.values())
               for e in errors)
    # errors found elsewhere (query parameters) past the limit are counted too
    assert listing([{"field": "a", "message": "m"}] * 3, 0, limit=2)[-1]["message"].startswith(
        "1 more error not listed")
    # and a short list is left as it is
    assert listing(found.listed[:3]) == found.listed[:3]


def test_a_few_errors_are_all_named_as_before() -> None:
    raw = msgspec.json.encode({"workflow_type": "X", "data": {"projectId": "acme/web",
                                                                "bogus": 1}})
    found = collect_errors(EventCreate, raw)
    assert found.omitted == 0
    assert {e["field"] for e in found.listed} == {"workflow_type", "data.bogus"}


def test_a_huge_unknown_key_and_a_huge_bad_value_are_echoed_cut_short() -> None:
    # Given a body with a 500,000-character unknown key and a 500,000-character bad enum
    key, value = "k" * 500_000, "Y" * 500_000
    raw = msgspec.json.encode({"workflow_type": value,
                               "data": {"projectId": "acme/web", key: 1}})
    errors = collect_errors(EventCreate, raw).listed
    by_message = {e["message"][:12]: e for e in errors}
    # Then the field names the key's first ECHO_CHARS characters, marked as cut
    unknown = by_message["unknown fiel"]
    assert unknown["field"] == "data." + "k" * ECHO_CHARS + "…"
    # and msgspec's message quoting the value whole is cut
    enum = next(e for e in errors if e["field"] == "workflow_type")
    assert enum["message"].startswith("Invalid enum value 'YYY")
    assert len(enum["message"]) <= MESSAGE_CHARS + 1 and enum["message"].endswith("…")
    assert all(len(e["field"]) <= FIELD_CHARS + 1 for e in errors)


def test_echo_quotes_like_repr_and_marks_the_cut() -> None:
    assert echo("acme/web") == "'acme/web'"
    assert echo("a\nb") == "'a\\nb'"
    assert echo("x" * 1_000_000) == "'" + "x" * ECHO_CHARS + "'…"


# -- the problem answer, through the handler the gateway installs -------------------------
@post("/events")
async def create_event(data: Annotated[EventCreate, Body()]) -> None:
    raise AssertionError("a bad body never gets here")


def _answer(raw: bytes) -> tuple[int, bytes]:
    app = Litestar(route_handlers=[create_event],
                   exception_handlers={ValidationException: on_validation},
                   request_max_body_size=2_000_000)
    with TestClient(app) as client:
        response = client.post("/events", content=raw,
                               headers={"Content-Type": "application/json"})
    return response.status_code, response.content


def test_a_400_for_a_flood_of_unknown_keys_is_small_and_says_how_many_more() -> None:
    # Given POST /events with ~1 MB of unknown keys, the longest ones 200 characters
    status, content = _answer(flood(4_500, key_length=200))
    body = msgspec.json.decode(content)
    # Then a 400 of a few kilobytes, not megabytes
    assert status == 400
    assert len(content) < 10_000, len(content)
    assert len(body["errors"]) == MAX_ERRORS + 1
    assert body["errors"][-1]["message"].startswith(f"{4_500 - MAX_ERRORS} more errors")
    assert len(body["detail"]) < 1_000
    # and it is still a problem the clients parse: {field, message} entries
    assert all(set(e) == {"field", "message"} for e in body["errors"])


def test_a_good_body_is_not_a_problem() -> None:
    assert collect_errors(EventCreate, msgspec.json.encode(GOOD)) == ([], 0)
