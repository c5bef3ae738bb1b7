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
from reportsvc.db.engine import create_engine, create_pool
from reportsvc.db.schema import metadata
from reportsvc.llm.fake import FakeLLMThread
from reportsvc.queue.notifications import Publisher
from tests.conftest import with_database
from tests.helpers import Stores, make_settings, running_worker, wait_for_job


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
    assert await tables(empty_database) == {
        "jobs",
        "steps",
        "api_tokens",
        "admission",
        "fair_turns",
        "model_quotas",
        "sources",
        "job_passages",
        "section_history",
        "alembic_version",
    }
    await asyncio.to_thread(migrate.downgrade, empty_database, "base")
    assert await tables(empty_database) == {"alembic_version"}
    await asyncio.to_thread(migrate.upgrade, empty_database)
    assert await tables(empty_database) >= {"jobs", "steps"}


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
            "SELECT relname, reloptions FROM pg_class WHERE relname IN ('jobs', 'steps')"
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
    assert await tables(empty_database) == {
        "jobs",
        "steps",
        "api_tokens",
        "admission",
        "fair_turns",
        "model_quotas",
        "sources",
        "job_passages",
        "section_history",
        "alembic_version",
    }


async def test_jobs_mid_outline_or_mid_sections_finish_after_the_upgrade_to_one_step_table(
    empty_database: str, fake_llm: FakeLLMThread
) -> None:
    """Rows written by the two-table layout (revision 0003) carry on after `migrate`."""
    await asyncio.to_thread(migrate.upgrade, empty_database, "0003")
    conn = await asyncpg.connect(empty_database)
    try:
        options = '{"sections": 2}'
        waiting = await conn.fetchval(
            """INSERT INTO jobs (topic, model, options, deadline_at)
               VALUES ('Waiting', 'm', $1::jsonb, now() + interval '1 hour') RETURNING id""",
            options,
        )
        outlining = await conn.fetchval(
            """INSERT INTO jobs (topic, model, options, deadline_at, status, attempts,
                                 lease_owner, lease_expires_at, started_at)
               VALUES ('Outlining', 'm', $1::jsonb, now() + interval '1 hour', 'outlining', 1,
                       'old-worker', now() + interval '1 minute', now()) RETURNING id""",
            options,
        )
        writing = await conn.fetchval(
            """INSERT INTO jobs (topic, model, options, deadline_at, status, attempts, outline,
                                 sections_total, sections_done, prompt_tokens, completion_tokens)
               VALUES ('Writing', 'm', '{"sections": 3}'::jsonb, now() + interval '1 hour',
                       'writing', 1, ARRAY['I. A', 'II. B', 'III. C'], 3, 1, 10, 20)
               RETURNING id"""
        )
        await conn.execute(
            """INSERT INTO sections (job_id, position, title, status, attempts, content,
                                     lease_owner, lease_expires_at, prompt_tokens)
               VALUES ($1, 0, 'I. A', 'done', 1, 'kept text', NULL, NULL, 5),
                      ($1, 1, 'II. B', 'running', 1, NULL, 'old-worker',
                       now() + interval '1 minute', 0),
                      ($1, 2, 'III. C', 'queued', 0, NULL, NULL, NULL, 0)""",
            writing,
        )
    finally:
        await conn.close()

    await asyncio.to_thread(migrate.upgrade, empty_database)
    settings = make_settings(database_url=empty_database, openai_base_url=fake_llm.base_url)
    pool = await create_pool(empty_database, min_size=1, max_size=4)
    publisher = Publisher(pool)
    stores = Stores.on(pool, publisher)
    try:
        async with running_worker(stores, settings):
            jobs = [await wait_for_job(stores, j) for j in (waiting, outlining, writing)]
    finally:
        await publisher.close()
        await pool.close()
    assert [j.status for j in jobs] == ["completed"] * 3
    written = jobs[2]
    assert written.done_sections["I. A"] == "kept text"  # not written again
    assert list(written.done_sections) == ["I. A", "II. B", "III. C"]
    # The outline's tokens moved to its step; the section's stayed with it.
    assert written.prompt_tokens >= 15
    assert fake_llm.stats().calls == {"outline": 2, "section": 2 + 2 + 2}


async def test_a_downgrade_past_0009_fails_jobs_awaiting_review_and_keeps_the_rest(
    empty_database: str,
) -> None:
    """Before revision 0009 there is no review status: such a job cannot stay in it."""
    await asyncio.to_thread(migrate.upgrade, empty_database)
    conn = await asyncpg.connect(empty_database)
    try:
        waiting = await conn.fetchval(
            """INSERT INTO jobs (topic, model, deadline_at, status, outline, review_since)
               VALUES ('Waiting', 'm', now() + interval '1 hour', 'awaiting_review',
                       ARRAY['I. A'], now()) RETURNING id"""
        )
        writing = await conn.fetchval(
            """INSERT INTO jobs (topic, model, deadline_at, status)
               VALUES ('Writing', 'm', now() + interval '1 hour', 'writing') RETURNING id"""
        )
    finally:
        await conn.close()
    await asyncio.to_thread(migrate.downgrade, empty_database, "0008")
    conn = await asyncpg.connect(empty_database)
    try:
        rows = dict(await conn.fetch("SELECT id, status FROM jobs"))
        error = await conn.fetchval("SELECT error FROM jobs WHERE id = $1", waiting)
    finally:
        await conn.close()
    assert rows == {waiting: "failed", writing: "writing"}
    assert "downgrade" in error
    assert "section_history" not in await tables(empty_database)
