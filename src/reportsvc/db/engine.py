"""Connections: an asyncpg pool for the service, a SQLAlchemy engine for migrations.

Both take the same plain `postgresql://` URL; asyncpg parses it (host, port, user,
password, database, `sslmode` and friends) exactly as psql would, so there is one
spelling of the URL everywhere.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool


def create_engine(database_url: str) -> AsyncEngine:
    """A SQLAlchemy engine over asyncpg, used by Alembic and the schema check."""

    async def connect() -> Any:
        return await asyncpg.connect(database_url)

    return create_async_engine("postgresql+asyncpg://", async_creator=connect, poolclass=NullPool)


async def init_connection(connection: asyncpg.Connection) -> None:
    """Decode jsonb with msgspec, so rows arrive as Python values, not strings."""
    await connection.set_type_codec(
        "jsonb",
        schema="pg_catalog",
        encoder=lambda value: msgspec.json.encode(value).decode(),
        decoder=msgspec.json.decode,
        format="text",
    )


async def _no_reset(_connection: asyncpg.Connection) -> None:
    """Skip asyncpg's reset round trip on release: no code here leaves session state."""


async def create_pool(
    database_url: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    connect_timeout: float = 5.0,
    command_timeout: float = 30.0,
    application_name: str = "reportsvc",
) -> asyncpg.Pool:
    """A pool whose connections never hang forever: connecting and each statement are
    bounded, so an unreachable database turns into an error the caller can handle."""
    pool: asyncpg.Pool = await asyncpg.create_pool(
        database_url,
        min_size=min_size,
        max_size=max_size,
        init=init_connection,
        reset=_no_reset,
        timeout=connect_timeout,
        command_timeout=command_timeout,
        # Statements are few and fixed; the per-connection prepared statement cache keeps
        # them parsed and planned.
        statement_cache_size=256,
        # Shown in pg_stat_activity, so an operator can tell the API from the workers.
        server_settings={"application_name": application_name},
    )
    return pool
