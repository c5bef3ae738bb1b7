"""Sources: uploaded documents (the API's side), and the search of a job's passages (the
workers' side, as the pipeline's `PassageIndex`)."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Final
from uuid import UUID

import asyncpg
import msgspec

from reportsvc.metrics import RETRIEVAL_SECONDS
from reportsvc.queue.sql import load_queries
from reportsvc.sources import Passage, SourceOverview
from reportsvc.sources.passages import search_config

Q: Final = load_queries("sources.sql")
# How much of a document's first passage the outline prompt shows.
OPENING_CHARS: Final = 300


class SourceRow(msgspec.Struct, frozen=True):
    id: UUID
    title: str
    characters: int
    created_at: datetime


class SourceText(msgspec.Struct, frozen=True):
    id: UUID
    title: str
    text: str
    created_at: datetime


class SourceStore:
    """Documents uploaded with POST /sources, each visible to its owner only (any owner is
    None when the API runs without tokens)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def create(
        self, *, owner: str | None, title: str, text: str, max_stored: int = 0
    ) -> SourceRow | None:
        """The stored source; None when `owner` already stores `max_stored` (0: no bound)."""
        row = await self.pool.fetchrow(Q["create_source"], owner, title, text, max_stored)
        if row is None:
            return None
        return SourceRow(row[0], row[1], row[2], row[3])

    async def page(
        self, *, owner: str | None, limit: int, before: tuple[datetime, UUID] | None
    ) -> list[SourceRow]:
        """Newest first; `before` is the (created_at, id) of the last source already seen."""
        created_at, source_id = before if before is not None else (None, None)
        rows = await self.pool.fetch(Q["list_sources"], owner, limit, created_at, source_id)
        return [SourceRow(r[0], r[1], r[2], r[3]) for r in rows]

    async def get_many(self, ids: list[UUID], owner: str | None) -> dict[UUID, SourceText]:
        """Those of `ids` that exist and belong to `owner`."""
        rows = await self.pool.fetch(Q["get_sources"], ids, owner)
        return {r[0]: SourceText(r[0], r[1], r[2], r[3]) for r in rows}

    async def delete(self, source_id: UUID, owner: str | None) -> bool:
        """False: no such source (of `owner`)."""
        return await self.pool.fetchval(Q["delete_source"], source_id, owner) is not None


class PassageSearch:
    """A job's passages, searched with PostgreSQL's full-text search (`PassageIndex`)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def search(
        self, job_id: UUID, *, language: str | None, title: str, topic: str, limit: int
    ) -> list[Passage]:
        started = time.perf_counter()
        rows = await self.pool.fetch(
            Q["search_passages"], job_id, search_config(language), title, topic, limit
        )
        RETRIEVAL_SECONDS.observe(time.perf_counter() - started)
        return [Passage(r[0], r[1], r[2]) for r in rows]

    async def overview(self, job_id: UUID) -> list[SourceOverview]:
        rows = await self.pool.fetch(Q["source_overview"], job_id, OPENING_CHARS)
        return [SourceOverview(title=r[1], passages=r[3], opening=r[2]) for r in rows]
