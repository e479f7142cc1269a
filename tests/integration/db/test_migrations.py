"""The migrations in db/ create exactly what the models describe, and undo cleanly."""

from __future__ import annotations

import asyncio

import asyncpg
from alembic import command
from alembic.config import Config
from tests.conftest import ROOT

from pipeline.models import metadata


def _config(url: str) -> Config:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.attributes["url"] = url
    return cfg


def _tables(url: str) -> set[str]:
    async def read() -> set[str]:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            rows = await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            )
            return {r[0] for r in rows}
        finally:
            await conn.close()

    return asyncio.run(read())


def test_upgrade_head_on_an_empty_database_matches_the_models(db_url: str) -> None:
    # Given an empty database
    cfg = _config(db_url)
    command.downgrade(cfg, "base")
    assert _tables(db_url) == {"alembic_version"}
    # When every migration is applied
    command.upgrade(cfg, "head")
    # Then every table of the models exists and autogenerate finds no difference
    assert set(metadata.tables) <= _tables(db_url)
    command.check(cfg)


def test_downgrade_base_removes_every_table(db_url: str) -> None:
    command.downgrade(_config(db_url), "base")
    assert _tables(db_url) == {"alembic_version"}


def test_the_stream_position_row_exists_after_upgrade(db_url: str) -> None:
    async def read() -> int:
        conn = await asyncpg.connect(db_url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            return int(await conn.fetchval("SELECT pos FROM stream_position WHERE id = 1"))
        finally:
            await conn.close()

    assert asyncio.run(read()) == 0
