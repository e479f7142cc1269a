"""A bearer token longer than ``MAX_TOKEN_LENGTH`` is refused as an invalid token before
PyJWT reads it (which costs loop CPU in proportion to its length, for anyone), while real
tokens, far shorter, are verified as before."""

from __future__ import annotations

import pytest

from gateway.auth import MAX_TOKEN_LENGTH, Authenticator, mint
from gateway.problems import Problem
from runner.settings import load_settings

SETTINGS = load_settings({})


def signed(length: int) -> str:
    """A correctly signed token of ``length`` characters, give or take a base64 group."""
    token = mint(SETTINGS, sub="ann", projects=["acme/web"])
    padding = 0
    while len(token) < length - 3:
        padding += max(1, (length - len(token)) * 3 // 4)
        token = mint(SETTINGS, sub="ann" + "x" * padding, projects=["acme/web"])
    return token


def test_given_an_overlong_token_then_it_is_refused_even_though_correctly_signed() -> None:
    # Given a well signed token just over the limit, and one of a megabyte
    authenticator = Authenticator(SETTINGS)
    for token in (signed(MAX_TOKEN_LENGTH + 4), signed(1024 * 1024)):
        assert len(token) > MAX_TOKEN_LENGTH
        # When it is presented
        with pytest.raises(Problem) as refused:
            authenticator.authenticate(token)
        # Then it is a 401 like any invalid token, saying why
        assert refused.value.status == 401
        assert refused.value.headers == {"WWW-Authenticate": 'Bearer error="invalid_token"'}
        assert str(MAX_TOKEN_LENGTH) in refused.value.detail


def test_given_tokens_up_to_the_limit_then_they_are_verified() -> None:
    authenticator = Authenticator(SETTINGS)
    many_grants = [f"customer-{i:03d}/project-name-{i:03d}" for i in range(100)]
    at_limit = signed(MAX_TOKEN_LENGTH)
    assert MAX_TOKEN_LENGTH - 4 <= len(at_limit) <= MAX_TOKEN_LENGTH
    for token in (mint(SETTINGS, sub="ann", projects=many_grants), at_limit):
        assert authenticator.authenticate(token).user_id.startswith("ann")
