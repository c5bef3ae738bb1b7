"""The README's SQL runs against the real schema, so the operator's queries stay true."""

from __future__ import annotations

import re
from pathlib import Path

import asyncpg

README = Path(__file__).parents[1] / "README.md"


def sql_blocks() -> list[str]:
    return re.findall(r"```sql\n(.*?)```", README.read_text(), re.DOTALL)


async def test_every_sql_query_in_the_readme_runs(pool: asyncpg.Pool) -> None:
    blocks = sql_blocks()
    assert blocks
    statements = [s.strip() for block in blocks for s in block.split(";") if s.strip()]
    async with pool.acquire() as conn:
        for statement in statements:
            code = "\n".join(
                line for line in statement.splitlines() if not line.strip().startswith("--")
            )
            if code.strip():
                await conn.fetch(code)
