"""JWT authentication and per-project authorisation.

Tokens carry ``sub``, ``projects`` (``customer/project`` or ``customer/*``) and ``role``:
``developer`` acts on its projects, ``manager`` only reads across its projects, ``admin``
does everything. HS256 with the shared secret by default; RS256 with the public key when
one is configured. A missing, malformed, expired or wrongly signed token is 401; a valid
token without the project is 403, checked before the project is looked up, so a 403 says
nothing about whether the project exists.
"""

from __future__ import annotations

import math
import re
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import jwt
import msgspec

from gateway.problems import Problem
from runner.settings import Settings

ROLES = ("developer", "manager", "admin")
PROJECT_ID = re.compile(r"^[A-Za-z0-9_-]{1,100}/[A-Za-z0-9_-]{1,100}\Z")
_GRANT = re.compile(r"^[A-Za-z0-9_-]{1,100}/(\*|[A-Za-z0-9_-]{1,100})\Z")
MAX_PROJECT_ID = 200


def is_project_id(value: str) -> bool:
    """CONTRACTS "Common rules": ``customer/project``, letters, digits, ``_`` and ``-`` in
    each part, exactly one ``/``, at most 200 characters."""
    return bool(PROJECT_ID.match(value)) and len(value) <= MAX_PROJECT_ID


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str
    role: str
    projects: tuple[str, ...]
    valid_until: float = math.inf
    """When the token stops being accepted (``exp`` plus the leeway, Unix time): a stream
    opened with it ends then."""

    @property
    def customers(self) -> tuple[str, ...]:
        """Customers granted whole (``customer/*``)."""
        return tuple(p[:-2] for p in self.projects if p.endswith("/*"))

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def may_read(self, project_id: str) -> bool:
        if self.is_admin:
            return True
        customer = project_id.split("/", 1)[0]
        return project_id in self.projects or customer in self.customers

    def may_write(self, project_id: str) -> bool:
        return self.is_admin or (self.role == "developer" and self.may_read(project_id))

    def scope(self) -> tuple[list[str] | None, list[str] | None]:
        """``(project_ids, customer_ids)`` this principal may read; ``(None, None)`` = all."""
        if self.is_admin:
            return None, None
        exact = [p for p in self.projects if not p.endswith("/*")]
        return exact, list(self.customers)


def _key(value: str) -> str:
    if value.strip().startswith("-----BEGIN"):
        return value
    return Path(value).read_text(encoding="utf-8")


MAX_TOKEN_LENGTH = 8 * 1024
"""Characters a bearer token may have; a longer one is refused (401, as an invalid token)
before PyJWT reads it, which costs loop CPU in proportion to its length (about 0.1 ms per
KiB) and is open to anyone without credentials. Tokens from ``mint`` are a few hundred
characters, a hundred project grants make about 4,500, and common proxies refuse an
``Authorization`` line longer than 8 KiB anyway."""
CACHE_SECONDS = 10.0
"""How long a verified token is taken on trust without checking its signature again
(never past its own expiry)."""
CACHE_SIZE = 1024
"""Verified tokens remembered at most (the oldest go first)."""


class Authenticator:
    """Verifies bearer tokens. A token verified in the last ``CACHE_SECONDS`` is not
    decoded again (a client sends the same one with every request): its principal is
    reused until then, or until the token expires if that comes first."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._verified: OrderedDict[str, tuple[float, Principal]] = OrderedDict()
        if settings.jwt.public_key:
            self.algorithms = ["RS256"]
            self.verify_key: Any = _key(settings.jwt.public_key)
        else:
            self.algorithms = ["HS256"]
            self.verify_key = settings.jwt.secret

    def authenticate(self, token: str | None) -> Principal:
        """The principal of ``token``; a :class:`Problem` 401 when it is missing, longer
        than ``MAX_TOKEN_LENGTH``, malformed, wrongly signed, expired or its claims bad."""
        if not token:
            raise Problem(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
        if len(token) > MAX_TOKEN_LENGTH:
            raise Problem(401, f"invalid token: longer than {MAX_TOKEN_LENGTH} characters",
                          headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        now = time.monotonic()
        cached = self._verified.get(token)
        if cached is not None:
            until, principal = cached
            if now < until and time.time() < principal.valid_until:
                return principal
            del self._verified[token]
        principal = self._verify(token)
        self._verified[token] = (now + CACHE_SECONDS, principal)
        if len(self._verified) > CACHE_SIZE:
            self._verified.popitem(last=False)
        return principal

    def _verify(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self.verify_key,
                algorithms=self.algorithms,
                issuer=self.settings.jwt.issuer,
                leeway=self.settings.jwt.leeway_seconds,
                options={"require": ["sub", "exp", "iss"]},
            )
        except jwt.ExpiredSignatureError:
            raise Problem(401, "token expired", headers={"WWW-Authenticate": "Bearer"}) from None
        except jwt.PyJWTError:
            raise Problem(
                401, "invalid token", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
            ) from None
        role = claims.get("role", "developer")
        projects = claims.get("projects", [])
        if (
            role not in ROLES
            or not isinstance(projects, list)
            or not all(isinstance(p, str) and _GRANT.match(p) for p in projects)
            or not isinstance(claims["sub"], str)
        ):
            raise Problem(401, "invalid token claims", headers={"WWW-Authenticate": "Bearer"})
        return Principal(user_id=claims["sub"], role=role, projects=tuple(projects),
                         valid_until=float(claims["exp"]) + self.settings.jwt.leeway_seconds)


def bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def require_read(principal: Principal, project_id: str) -> None:
    if not principal.may_read(project_id):
        raise Problem(403, "this token does not grant access to that project")


def require_write(principal: Principal, project_id: str) -> None:
    require_read(principal, project_id)
    if not principal.may_write(project_id):
        raise Problem(403, f"role '{principal.role}' may not change this project")


def mint(
    settings: Settings, *, sub: str, projects: list[str], role: str = "developer", ttl: int = 3600
) -> str:
    """A development token signed with the configured key (HS256 secret or RS256 private key)."""
    now = int(time.time())
    claims = {"sub": sub, "projects": projects, "role": role, "iss": settings.jwt.issuer,
              "iat": now, "exp": now + ttl}
    if settings.jwt.public_key:
        if not settings.jwt.private_key:
            raise ValueError("RS256 is configured: set DEVTEAM_JWT_PRIVATE_KEY to mint tokens")
        return jwt.encode(claims, _key(settings.jwt.private_key), algorithm="RS256")
    return jwt.encode(claims, settings.jwt.secret, algorithm="HS256")
