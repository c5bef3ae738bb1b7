"""Connections: an asyncpg pool for the service, a SQLAlchemy engine for migrations.

Both take the same plain `postgresql://` URL; asyncpg parses it (host, port, user,
password, database, `sslmode` and friends, several hosts and `target_session_attrs`)
exactly as psql would, so there is one spelling of the URL everywhere.

Behind a pooler in transaction mode (PgBouncer 1.18 and older, or newer ones without
`max_prepared_statements`), each transaction may run on a different server connection,
so nothing may outlive a transaction on the server: no named prepared statements, no
session settings, no LISTEN. `prepared_statements=False` gives a pool that keeps to that.
"""

from __future__ import annotations

import uuid
from typing import Any, Final

import asyncpg
import msgspec
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

# Statements are few and fixed; a per-connection cache keeps them parsed and planned.
STATEMENT_CACHE_SIZE: Final = 256


def create_engine(database_url: str) -> AsyncEngine:
    """A SQLAlchemy engine over asyncpg, used by Alembic and the schema check.

    Safe behind a transaction pooler whatever the settings say (migrations are rare, so
    the cache buys nothing): no statement cache, and the statements SQLAlchemy prepares
    get unique names, which cannot collide with another client's on a shared server
    connection.
    """

    async def connect() -> Any:
        return await asyncpg.connect(database_url, statement_cache_size=0)

    def creator() -> Any:
        # SQLAlchemy's documented way to pass adapter arguments along with a creator.
        dbapi: Any = engine.sync_engine.dialect.dbapi
        return dbapi.connect(
            async_creator_fn=connect,
            prepared_statement_cache_size=0,
            prepared_statement_name_func=_unique_statement_name,
        )

    engine = create_async_engine("postgresql+asyncpg://", creator=creator, poolclass=NullPool)
    return engine


def _unique_statement_name() -> str:
    return f"__reportsvc_{uuid.uuid4().hex}__"


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
    prepared_statements: bool = True,
) -> asyncpg.Pool:
    """A pool whose connections never hang forever: connecting and each statement are
    bounded, so an unreachable database turns into an error the caller can handle.

    Without `prepared_statements` (behind PgBouncer in transaction mode) asyncpg sends
    every statement unnamed, parsed again in the same round trip as its execution, so
    it cannot land on a server connection that lacks it, or has another client's.
    """
    pool: asyncpg.Pool = await asyncpg.create_pool(
        database_url,
        min_size=min_size,
        max_size=max_size,
        init=init_connection,
        reset=_no_reset,
        timeout=connect_timeout,
        command_timeout=command_timeout,
        statement_cache_size=STATEMENT_CACHE_SIZE if prepared_statements else 0,
        # Shown in pg_stat_activity, so an operator can tell the API from the workers.
        server_settings={"application_name": application_name},
    )
    return pool
