"""CPU per statement: asyncpg directly vs SQLAlchemy's async layer over asyncpg.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test python bench/driver_overhead.py

The decision it backs (DEVLOG.md, "Runtime SQL goes through asyncpg"): the queue's
statements run on asyncpg directly.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

N = 3000


async def measure(label: str, step: Callable[[int], Awaitable[object]]) -> None:
    runs = []
    for _ in range(3):
        cpu = time.process_time()
        for i in range(N):
            await step(i)
        runs.append((time.process_time() - cpu) / N * 1e6)
    print(f"{label:<40} {statistics.median(runs):7.1f} µs CPU per statement")


async def main() -> None:
    url = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    conn = await asyncpg.connect(url)
    await measure("asyncpg fetch", lambda i: conn.fetch("SELECT $1::int, now()", i))
    engine = create_async_engine(
        "postgresql+asyncpg://", async_creator=lambda: asyncpg.connect(url)
    )
    statement = text("SELECT CAST(:x AS int), now()")
    async with engine.connect() as sa:

        async def execute(i: int) -> object:
            return (await sa.execute(statement, {"x": i})).all()

        async def in_transaction(i: int) -> object:
            async with sa.begin():
                return (await sa.execute(statement, {"x": i})).all()

        await measure("SQLAlchemy AsyncConnection.execute", execute)
        await sa.commit()
        await measure("SQLAlchemy execute in begin()/commit", in_transaction)
    await engine.dispose()
    await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
