"""API tokens, stored as sha256 hashes: a database leak does not leak tokens."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Final

import asyncpg

from reportsvc.queue.sql import load_queries

Q: Final = load_queries("tokens.sql")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def token_state(self) -> tuple[frozenset[str], bool]:
        """The hashes of the active tokens, and whether any token was ever stored."""
        row = await self.pool.fetchrow(Q["token_state"])
        assert row is not None
        return frozenset(row["active"]), row["ever"]

    async def add_token(self, name: str, hashed: str) -> bool:
        """False: the name is taken."""
        return await self.pool.fetchrow(Q["add_token"], name, hashed) is not None

    async def revoke_token(self, name: str) -> bool:
        """False: no active token of that name."""
        return await self.pool.fetchrow(Q["revoke_token"], name) is not None

    async def list_tokens(self) -> list[tuple[str, datetime, datetime | None]]:
        return [(r[0], r[1], r[2]) for r in await self.pool.fetch(Q["list_tokens"])]
