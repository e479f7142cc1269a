"""``devteam watch`` reads the token's subject (PyJWT, unverified: the server verifies) to
ask for that user's active executions; anything that is not a JWT with a subject is a
clear usage error before any connection."""

import jwt
import pytest

from gateway.watch import subject_of

KEY = "k" * 32


def test_the_subject_of_a_token_is_read_whatever_key_signed_it() -> None:
    token = jwt.encode({"sub": "alice", "projects": ["acme/*"]}, KEY, algorithm="HS256")
    assert subject_of(token) == "alice"


def test_an_expired_token_still_names_its_subject() -> None:
    # the watcher only routes by it; the server refuses the expired token itself
    token = jwt.encode({"sub": "bob", "exp": 1}, KEY, algorithm="HS256")
    assert subject_of(token) == "bob"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "not-a-jwt",
        "a.b",
        "x.eyJzdWIiOiJhbGljZSJ9.y",  # a readable payload behind a header that is no JSON
        jwt.encode({"projects": ["acme/*"]}, KEY, algorithm="HS256"),  # no subject
    ],
)
def test_anything_but_a_jwt_with_a_subject_is_a_value_error(token: str) -> None:
    with pytest.raises(ValueError, match="not a JWT with a subject"):
        subject_of(token)
