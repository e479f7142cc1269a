"""Verified bearer tokens are remembered briefly, never past their expiry, and a token
that differs from a remembered one by a byte is verified afresh."""

from __future__ import annotations

import time

import jwt
import pytest

from gateway import auth
from gateway.auth import Authenticator, mint
from gateway.problems import Problem
from runner.settings import load_settings

SETTINGS = load_settings({})


def test_a_verified_token_is_not_decoded_again(monkeypatch: pytest.MonkeyPatch) -> None:
    authenticator = Authenticator(SETTINGS)
    token = mint(SETTINGS, sub="ann", projects=["acme/web"])
    first = authenticator.authenticate(token)
    decodes: list[str] = []
    monkeypatch.setattr(auth.jwt, "decode", lambda *a, **k: decodes.append("x"))
    assert authenticator.authenticate(token) is first
    assert decodes == []


def test_a_remembered_token_past_its_expiry_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    authenticator = Authenticator(SETTINGS)
    token = mint(SETTINGS, sub="ann", projects=["acme/web"], ttl=60)
    principal = authenticator.authenticate(token)
    later = principal.valid_until + 1
    decodes: list[str] = []

    def expired(*_args: object, **_kwargs: object) -> object:
        decodes.append("x")  # what PyJWT says at that time
        raise jwt.ExpiredSignatureError("expired")

    monkeypatch.setattr(auth.time, "time", lambda: later)
    monkeypatch.setattr(auth.jwt, "decode", expired)
    with pytest.raises(Problem) as refused:
        authenticator.authenticate(token)
    assert (refused.value.status, decodes) == (401, ["x"])


def test_a_remembered_token_is_checked_again_after_the_cache_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    authenticator = Authenticator(SETTINGS)
    token = mint(SETTINGS, sub="ann", projects=["acme/web"])
    authenticator.authenticate(token)
    decodes: list[str] = []
    real = jwt.decode

    def counting(*args: object, **kwargs: object) -> object:
        decodes.append("x")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(auth.jwt, "decode", counting)
    start = time.monotonic()
    monkeypatch.setattr(auth.time, "monotonic", lambda: start + auth.CACHE_SECONDS + 1)
    authenticator.authenticate(token)
    assert decodes == ["x"]


def test_a_tampered_copy_of_a_remembered_token_is_refused() -> None:
    authenticator = Authenticator(SETTINGS)
    token = mint(SETTINGS, sub="ann", projects=["acme/web"])
    authenticator.authenticate(token)
    head, claims, signature = token.split(".")
    forged = jwt.encode({**jwt.decode(token, options={"verify_signature": False}),
                         "role": "admin"}, "another-secret-0123456789abcdef-0123", algorithm="HS256")
    for bad in (f"{head}.{forged.split('.')[1]}.{signature}", forged, token + "x"):
        with pytest.raises(Problem) as refused:
            authenticator.authenticate(bad)
        assert refused.value.status == 401
    assert claims


def test_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "CACHE_SIZE", 3)
    authenticator = Authenticator(SETTINGS)
    tokens = [mint(SETTINGS, sub=f"u{i}", projects=[]) for i in range(5)]
    for token in tokens:
        authenticator.authenticate(token)
    assert len(authenticator._verified) == 3  # noqa: SLF001
    assert list(authenticator._verified) == tokens[2:]  # noqa: SLF001
