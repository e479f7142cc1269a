"""What one tenant may cost the live stream: at most ``MAX_PROJECTS`` ``projectId`` values
per stream, at most ``streams_per_user`` streams per user and ``streams_per_customer`` per
customer at once (refused past it: SSE 429 with Retry-After, WebSocket close 1013), every
place given back however the stream ended; and a 400 quotes a bad value cut short.

The hub runs in process without a database (``MemoryHub``: its head is what it has
published); the stream routes run in a bare Litestar app over it."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from urllib.parse import quote

import msgspec
import pytest
from litestar import Litestar
from litestar.datastructures import MultiDict
from litestar.exceptions import WebSocketDisconnect
from litestar.testing import TestClient

from gateway.auth import Authenticator, Principal, mint
from gateway.fanout import Hub, Subscriber
from gateway.problems import Problem, on_problem
from gateway.quota import STREAMS_RETRY_AFTER, TooManyStreams
from gateway.routes.stream import (
    CLOSE_UNAVAILABLE,
    MAX_PROJECTS,
    handlers,
    parse_query,
)
from gateway.validation import ECHO_CHARS
from runner.settings import GatewaySettings, Settings

PER_USER, PER_CUSTOMER = 3, 5
FRONTEND = Path(__file__).resolve().parents[2] / "docs" / "frontend.md"


class MemoryHub(Hub):
    """The hub without Postgres: the head is what it has published (nothing to replay);
    ``fail_head`` makes reading it fail as a dead database would."""

    fail_head = False

    async def head(self) -> int:
        await asyncio.sleep(0)
        if self.fail_head:
            raise OSError("the database went away")
        return self.published


def settings(per_user: int = PER_USER, per_customer: int = PER_CUSTOMER) -> Settings:
    return Settings(gateway=GatewaySettings(streams_per_user=per_user,
                                            streams_per_customer=per_customer))


def sub(user: str = "ann", grants: tuple[str, ...] = ("acme/*",), *projects: str,
        role: str = "developer") -> Subscriber:
    return Subscriber(principal=Principal(user_id=user, role=role, projects=grants),
                      projects=frozenset(projects))


def counts(hub: Hub) -> tuple[dict[str, int], dict[str, int]]:
    return dict(hub.quota.per_user), dict(hub.quota.per_customer)


# -- the hub -------------------------------------------------------------------------------
def test_an_admins_streams_neither_use_nor_meet_a_customers_quota() -> None:
    hub = MemoryHub(settings(per_user=10, per_customer=2))
    hub.add(sub("ann"))
    hub.add(sub("bob"))  # acme's quota is full
    with pytest.raises(TooManyStreams):
        hub.add(sub("cyd"))
    # an operator still watches acme's project, and takes none of acme's places
    op = sub("op", (), "acme/web", role="admin")
    hub.add(op)
    assert counts(hub) == ({"ann": 1, "bob": 1, "op": 1}, {"acme": 2})
    hub.remove(op)
    assert counts(hub) == ({"ann": 1, "bob": 1}, {"acme": 2})


def test_a_user_gets_streams_up_to_the_limit_and_then_is_refused() -> None:
    hub = MemoryHub(settings())
    for _ in range(PER_USER):
        hub.add(sub("ann"))
    with pytest.raises(TooManyStreams) as refused:
        hub.add(sub("ann"))
    assert f"this user has {PER_USER} live streams open" in refused.value.detail
    assert refused.value.retry_after == STREAMS_RETRY_AFTER
    # the refused one is neither counted nor indexed; another user is not affected
    assert counts(hub) == ({"ann": PER_USER}, {"acme": PER_USER})
    assert len(hub.subscribers) == PER_USER
    hub.add(sub("bob"))


def test_a_customer_gets_streams_up_to_the_limit_across_its_users() -> None:
    hub = MemoryHub(settings(per_user=10))
    for i in range(PER_CUSTOMER):
        hub.add(sub(f"user{i}", ("acme/web",), "acme/web"))
    with pytest.raises(TooManyStreams) as refused:
        hub.add(sub("zed", ("acme/*",), "acme/api"))
    assert f"customer acme has {PER_CUSTOMER} live streams open" in refused.value.detail
    # another customer's users are not affected, and a stream counts for each customer
    # it follows: its projectIds, else its grants
    hub.add(sub("zed", ("globex/*",)))
    with pytest.raises(TooManyStreams):
        hub.add(sub("zed", ("globex/*", "acme/*")))
    assert counts(hub)[1] == {"acme": PER_CUSTOMER, "globex": 1}


def test_an_admins_streams_count_for_its_user_only() -> None:
    hub = MemoryHub(settings(per_customer=1))
    hub.add(sub("root", (), role="admin"))
    assert counts(hub) == ({"root": 1}, {})
    hub.add(sub("root", (), "acme/web", role="admin"))
    assert counts(hub) == ({"root": 2}, {})


def test_removing_gives_the_place_back_once_however_often_it_is_called() -> None:
    hub = MemoryHub(settings())
    subs = [sub("ann") for _ in range(PER_USER)]
    for s in subs:
        hub.add(s)
    hub.remove(subs[0])
    hub.remove(subs[0])  # the route and Hub.frames both remove: given back once
    hub.remove(sub("ann"))  # one never added gives nothing back
    assert counts(hub) == ({"ann": PER_USER - 1}, {"acme": PER_USER - 1})
    hub.add(sub("ann"))
    for s in [*subs[1:], *list(hub.subscribers)]:
        hub.remove(s)
    assert counts(hub) == ({}, {})  # nothing left behind, not even zeros
    assert not hub.subscribers and not hub.by_customer and not hub.quota._taken


async def test_a_stream_cancelled_mid_flight_gives_its_place_back() -> None:
    # Given a user at the limit, each stream iterating Hub.frames in a task
    hub = MemoryHub(settings())

    async def stream() -> None:
        s = sub("ann")
        cursor = await hub.subscribe(s, None)
        async for _ in hub.frames(s, cursor):
            pass

    tasks = [asyncio.create_task(stream()) for _ in range(PER_USER)]
    await asyncio.sleep(0.05)
    assert counts(hub)[0] == {"ann": PER_USER}
    with pytest.raises(TooManyStreams):
        await hub.subscribe(sub("ann"), None)
    # When the connections die abruptly (the tasks are cancelled mid-await)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    # Then every place is back: the user is not locked out
    assert counts(hub) == ({}, {})
    assert await hub.subscribe(sub("ann"), 0) == 0


async def test_a_subscribe_that_fails_on_the_database_counts_nothing() -> None:
    hub = MemoryHub(settings(per_user=1))
    hub.fail_head = True
    for since in (None, 5):
        with pytest.raises(OSError):
            await hub.subscribe(sub("ann"), since)
    assert counts(hub) == ({}, {}) and not hub.subscribers
    hub.fail_head = False
    await hub.subscribe(sub("ann"), None)  # the one place is free


async def test_a_stream_closed_before_its_first_frame_gives_its_place_back() -> None:
    hub = MemoryHub(settings(per_user=1))
    s = sub("ann")
    frames = hub.frames(s, await hub.subscribe(s, None))
    await frames.aclose()  # type: ignore[attr-defined]
    # never iterated: the route's own ``finally`` removes it
    hub.remove(s)
    assert counts(hub) == ({}, {})


# -- the query -----------------------------------------------------------------------------
def query(*pairs: tuple[str, str]) -> MultiDict[str]:
    return MultiDict(list(pairs))


def test_more_projectids_than_the_limit_is_a_400_naming_it() -> None:
    many = [("projectId", f"a/p{i}") for i in range(MAX_PROJECTS)]
    assert len(parse_query(query(*many)).projects) == MAX_PROJECTS
    for extra in (("projectId", "a/one-more"), ("project_id", "a/one-more"),
                  ("projectId", "a/p0")):  # repeats count: each one is checked
        with pytest.raises(Problem) as bad:
            parse_query(query(*many, extra))
        assert bad.value.status == 400
        assert f"at most {MAX_PROJECTS} projectId values" in bad.value.detail
        assert bad.value.errors == [{"field": "projectId",
                                     "message": f"at most {MAX_PROJECTS} values"}]


def test_62748_projectids_are_refused_before_any_is_checked() -> None:
    many = query(*[("projectId", f"a/{i:x}") for i in range(62_748)])
    with pytest.raises(Problem) as bad:
        parse_query(many)
    assert "not 62748" in bad.value.detail


def test_a_huge_bad_projectid_is_quoted_cut_short() -> None:
    with pytest.raises(Problem) as bad:
        parse_query(query(("projectId", "x" * 1_000_000)))
    assert bad.value.detail == f"projectId '{'x' * ECHO_CHARS}'… is not customer/project"


def test_unknown_types_are_named_a_few_and_cut_short() -> None:
    with pytest.raises(Problem) as bad:
        parse_query(query(("types", ",".join(f"t{i}-" + "y" * 5000 for i in range(10_000)))))
    assert len(bad.value.detail) < 1_000
    assert bad.value.detail.endswith(" and 9995 more")
    with pytest.raises(Problem) as one:
        parse_query(query(("types", "execution-log,bogus")))
    assert one.value.detail == "unknown frame types: 'bogus'"


def test_the_frontend_page_states_the_projectid_limit() -> None:
    row = next(line for line in FRONTEND.read_text(encoding="utf-8").splitlines()
               if line.startswith("| `projectId`"))
    assert re.search(rf"at most {MAX_PROJECTS} times", row), row


# -- the routes ----------------------------------------------------------------------------
def app(hub: Hub) -> Litestar:
    application = Litestar(route_handlers=handlers, exception_handlers={Problem: on_problem})
    application.state.settings = hub.settings
    application.state.auth = Authenticator(hub.settings)
    application.state.hub = hub
    return application


def token(hub: Hub, user: str = "ann", grants: tuple[str, ...] = ("acme/*",)) -> str:
    return mint(hub.settings, sub=user, projects=list(grants))


def test_sse_past_the_user_limit_is_429_with_retry_after() -> None:
    # Given a user with as many streams open as allowed
    hub = MemoryHub(settings())
    for _ in range(PER_USER):
        hub.add(sub("ann"))
    with TestClient(app(hub)) as client:
        # When they open one more over SSE
        response = client.get("/api/devteam/stream?projectId=acme/web",
                              headers={"Authorization": f"Bearer {token(hub)}"})
        # Then 429, with when to retry, as problem+json
        assert response.status_code == 429
        assert response.headers["retry-after"] == str(STREAMS_RETRY_AFTER)
        body = msgspec.json.decode(response.content)
        assert body["status"] == 429 and "live streams open" in body["detail"]
    assert counts(hub)[0] == {"ann": PER_USER}  # the refused one took no place


def test_sse_with_too_many_projectids_is_400_and_its_detail_is_short() -> None:
    hub = MemoryHub(settings())
    ids = "&".join(f"projectId=acme/p{i}" for i in range(MAX_PROJECTS + 1))
    long_id = "projectId=" + "z" * 60_000  # as long as the test client sends
    with TestClient(app(hub)) as client:
        auth = {"Authorization": f"Bearer {token(hub)}"}
        too_many = client.get(f"/api/devteam/stream?{ids}", headers=auth)
        too_long = client.get(f"/api/devteam/stream?{long_id}", headers=auth)
    assert too_many.status_code == 400
    assert f"at most {MAX_PROJECTS}" in msgspec.json.decode(too_many.content)["detail"]
    assert too_long.status_code == 400
    assert len(msgspec.json.decode(too_long.content)["detail"]) < 200


def test_a_websocket_past_the_user_limit_is_closed_1013_and_closing_one_frees_a_place() -> None:
    hub = MemoryHub(settings())
    url = f"/ws/devteam?projectId=acme/web&token={token(hub)}"
    with TestClient(app(hub)) as client:
        # Given a user with as many sockets open as allowed
        open_ = [client.websocket_connect(url) for _ in range(PER_USER)]
        sockets = [ws.__enter__() for ws in open_]
        for ws in sockets:
            assert ws.receive_json()["type"] == "connection-established"
        # When they open one more, it is closed with 1013 and says why
        with client.websocket_connect(url) as extra, pytest.raises(WebSocketDisconnect) as closed:
            extra.receive_json()
        assert closed.value.code == CLOSE_UNAVAILABLE
        assert "live streams open" in str(closed.value.detail)
        # and once one goes away, a new one is served
        open_[0].__exit__(None, None, None)
        for _ in range(100):
            if hub.quota.per_user["ann"] < PER_USER:
                break
            time.sleep(0.02)
        with client.websocket_connect(url) as again:
            assert again.receive_json()["type"] == "connection-established"
        for ws in open_[1:]:
            ws.__exit__(None, None, None)
    assert counts(hub) == ({}, {})


def test_a_websocket_with_too_many_projectids_is_closed_4400() -> None:
    hub = MemoryHub(settings())
    ids = "&".join(f"projectId=acme/p{i}" for i in range(MAX_PROJECTS + 1))
    with TestClient(app(hub)) as client, client.websocket_connect(
            f"/ws/devteam?{ids}&token={token(hub)}") as ws, \
            pytest.raises(WebSocketDisconnect) as closed:
        ws.receive_json()
    assert closed.value.code == 4400
    assert not hub.subscribers


def test_a_websocket_close_reason_quoting_a_long_non_ascii_value_fits_its_frame() -> None:
    hub = MemoryHub(settings())
    with TestClient(app(hub)) as client, client.websocket_connect(
            f"/ws/devteam?projectId={quote('é' * 200)}&token={token(hub)}") as ws, \
            pytest.raises(WebSocketDisconnect) as closed:
        ws.receive_json()
    assert closed.value.code == 4400
    reason = str(closed.value.detail)
    assert reason.startswith("projectId 'éé") and len(reason.encode()) <= 123
