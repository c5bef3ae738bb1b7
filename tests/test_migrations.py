"""Migrations: upgrade from empty, downgrade cleanly, and match the schema in code."""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection

from reportsvc.db import migrate
from reportsvc.db.engine import create_engine
from reportsvc.db.schema import metadata
from tests.conftest import with_database


@pytest.fixture
async def empty_database(postgres_url: str) -> AsyncIterator[str]:
    name = f"reportsvc_m_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(postgres_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield with_database(postgres_url, name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def tables(url: str) -> set[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    finally:
        await conn.close()
    return {r[0] for r in rows}


async def test_upgrade_from_empty_then_downgrade_then_upgrade(empty_database: str) -> None:
    await asyncio.to_thread(migrate.upgrade, empty_database)
    assert await tables(empty_database) == {"jobs", "sections", "api_tokens", "alembic_version"}
    await asyncio.to_thread(migrate.downgrade, empty_database, "base")
    assert await tables(empty_database) == {"alembic_version"}
    await asyncio.to_thread(migrate.upgrade, empty_database)
    assert await tables(empty_database) >= {"jobs", "sections"}


async def test_migrations_match_the_schema_in_code(database_url: str) -> None:
    def diff(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(connection)
        return list(compare_metadata(context, metadata))

    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            differences = await connection.run_sync(diff)
    finally:
        await engine.dispose()
    assert differences == []


async def test_queue_tables_carry_their_storage_parameters(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT relname, reloptions FROM pg_class WHERE relname IN ('jobs', 'sections')"
        )
    finally:
        await conn.close()
    for row in rows:
        options = dict(option.split("=") for option in row["reloptions"])
        assert options["fillfactor"] == "80"
        assert float(options["autovacuum_vacuum_scale_factor"]) <= 0.05


async def test_concurrent_migrate_commands_take_turns(empty_database: str) -> None:
    """Several containers running `reportsvc migrate` at once must not collide."""
    env = {**os.environ, "DATABASE_URL": empty_database, "LOG_FORMAT": "json"}
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "reportsvc", "migrate", env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        for _ in range(3)
    ]  # fmt: skip
    outputs = [await p.communicate() for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0], outputs
    assert await tables(empty_database) == {"jobs", "sections", "api_tokens", "alembic_version"}
