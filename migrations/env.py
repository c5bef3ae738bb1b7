"""Alembic environment: runs migrations over asyncpg, one migrator at a time."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection, text

from reportsvc.db.engine import create_engine
from reportsvc.db.schema import metadata
from reportsvc.settings import load_settings

# Any constant works; it only has to be the same for every `reportsvc migrate`, so that
# several containers starting at once apply migrations one after another.
MIGRATION_LOCK_ID = 7_401_330_001

config = context.config


def _database_url() -> str:
    url: str | None = config.attributes.get("database_url")
    return url or load_settings().require_database_url()


def _run(connection: Connection) -> None:
    # A transaction-level lock: held until the migrations' transaction commits (or rolls
    # back), so the next migrator starts only once this one's changes are visible. (A
    # session lock released before the commit let a second migrator in too early: it did
    # not see the tables the first had created, and failed creating them again.)
    connection.execute(text(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_ID})"))
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()


async def _run_online() -> None:
    engine = create_engine(_database_url())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(url="postgresql://", dialect_name="postgresql", literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_online())
