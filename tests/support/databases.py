"""Throwaway Postgres databases copied from one migrated template (tests and benchmarks).

The template is named by a hash of the migrations and the models, so a changed migration
builds a new one; a copy (``CREATE DATABASE … TEMPLATE``) takes a few tens of milliseconds.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PREFIX = "devteam_tpl_"
TEMPLATE_LOCK = 0x64657674706C  # pg_advisory_lock key of template builds ("devtpl")


def admin_dsn(url: str, database: str = "postgres") -> str:
    """A plain asyncpg DSN for ``database`` on the server of ``url`` (a SQLAlchemy URL)."""
    head = url.replace("postgresql+asyncpg://", "postgresql://", 1).rpartition("/")[0]
    return f"{head}/{database}"


def url_for(url: str, database: str) -> str:
    """``url`` (a SQLAlchemy URL) pointing at ``database`` instead."""
    return f"{url.rpartition('/')[0]}/{database}"


def migrations_hash() -> str:
    h = hashlib.sha256()
    for path in sorted((ROOT / "db").rglob("*.py")):
        h.update(path.read_bytes())
    h.update((ROOT / "src" / "pipeline" / "models.py").read_bytes())
    return h.hexdigest()[:10]


def migrate(url: str) -> None:
    """``alembic upgrade head`` against ``url`` (a SQLAlchemy URL)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.attributes["url"] = url
    command.upgrade(cfg, "head")


async def admin(url: str, *sql: str) -> None:
    """Run statements on the server's ``postgres`` database (CREATE/DROP DATABASE)."""
    conn = await asyncpg.connect(admin_dsn(url))
    try:
        for statement in sql:
            await conn.execute(statement)
    finally:
        await conn.close()


async def ensure_template(url: str, *, drop_stale: bool = False) -> str:
    """Name of the migrated template database, built when missing.

    It is migrated under a name of its own and renamed when done, so a concurrent run
    never copies a half-migrated template. ``drop_stale`` removes the templates of older
    migration sets when a new one is built.
    """
    name = f"{TEMPLATE_PREFIX}{migrations_hash()}"
    conn = await asyncpg.connect(admin_dsn(url))
    try:
        if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            return name
        # One builder at a time (pytest-xdist workers, benchmarks, other sessions): the
        # others wait here and then find the template built, and no builder drops another
        # one's half-migrated database as stale. Released when the connection closes.
        await conn.execute("SELECT pg_advisory_lock($1)", TEMPLATE_LOCK)
        if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            return name
        if drop_stale:
            for row in await conn.fetch(
                "SELECT datname FROM pg_database WHERE datname LIKE $1 AND datname <> $2",
                f"{TEMPLATE_PREFIX}%", name,
            ):
                await conn.execute(f'DROP DATABASE IF EXISTS "{row[0]}" WITH (FORCE)')
        build = f"{name}_build_{uuid.uuid4().hex[:6]}"
        await conn.execute(f'CREATE DATABASE "{build}"')
        try:
            await asyncio.to_thread(migrate, url_for(url, build))
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
                await conn.execute(f'ALTER DATABASE "{build}" RENAME TO "{name}"')
        finally:
            await conn.execute(f'DROP DATABASE IF EXISTS "{build}" WITH (FORCE)')
    finally:
        await conn.close()
    return name


async def create_copy(url: str, template: str, prefix: str) -> str:
    """A fresh copy of ``template`` (returned as a SQLAlchemy URL); drop it with ``drop``."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    await admin(url, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return url_for(url, name)


async def drop(url: str) -> None:
    """Drop the database ``url`` points at (connections to it are closed first)."""
    await admin(url, f'DROP DATABASE IF EXISTS "{url.rpartition("/")[2]}" WITH (FORCE)')
