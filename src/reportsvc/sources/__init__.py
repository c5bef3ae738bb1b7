"""Sources a report is written from: documents split into numbered passages, the passages
a section is given, and the citations its text makes to them.

Plain values and functions, shared by the API (which splits documents when a job is
created), the queue (which stores and searches passages) and the pipeline (which puts
passages in prompts and cleans the citations of the answers). Nothing here knows SQL,
HTTP or a model.
"""

from __future__ import annotations

from typing import Protocol
from uuid import UUID

import msgspec


class Passage(msgspec.Struct, frozen=True):
    """One passage of a job's sources, numbered within the job from 1: the number a
    section cites it by, the same in every section of the report."""

    number: int
    # The title of the document it comes from.
    title: str
    text: str


class SourceOverview(msgspec.Struct, frozen=True):
    """One document of a job's sources, as the outline prompt sees it."""

    title: str
    passages: int
    # The document's first words.
    opening: str


class PassageIndex(Protocol):
    """Where a job's passages are searched (PostgreSQL full-text search, in
    `reportsvc.queue.sources`)."""

    async def search(
        self, job_id: UUID, *, language: str | None, title: str, topic: str, limit: int
    ) -> list[Passage]:
        """The job's passages most relevant to a section `title` of a report on `topic`,
        best first; none when no passage shares a word (stemmed) with the title."""
        ...

    async def overview(self, job_id: UUID) -> list[SourceOverview]:
        """The job's documents, in the order they were given."""
        ...
