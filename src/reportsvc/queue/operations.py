"""What operators and monitoring ask of the database: counts, the queue's state, pruning,
retrying a job, the schema's revision."""

from __future__ import annotations

from typing import Final, NamedTuple
from uuid import UUID

import asyncpg
import msgspec

from reportsvc.domain import ACTIVE_JOB_STATUSES, JobStatus, StepKind, StepStatus
from reportsvc.queue.notifications import Publisher
from reportsvc.queue.sql import load_queries

Q: Final = load_queries("operations.sql")


class Retry(NamedTuple):
    retried: bool
    status: JobStatus
    # Steps put back in the queue.
    steps: int


class WebhookDelivery(NamedTuple):
    event: str
    status: StepStatus
    attempts: int
    last_status_code: int | None
    last_error: str | None


class WebhookRetry(NamedTuple):
    # Deliveries that had given up and are queued again.
    retried: int
    webhook_url: str | None
    # Every delivery of the job after the call, newest first.
    deliveries: list[WebhookDelivery]


class StepStats(msgspec.Struct, frozen=True):
    ready: int = 0
    oldest_seconds: float = 0.0
    retrying: int = 0
    running: int = 0


class QuotaState(msgspec.Struct, frozen=True):
    """A model's quota as metrics show it."""

    model: str
    rpm: float | None
    tpm: float | None
    remaining_requests: int | None
    remaining_tokens: int | None
    rate_limited: int
    paused_for: float


class OperationsStore:
    def __init__(self, pool: asyncpg.Pool, publisher: Publisher) -> None:
        self.pool = pool
        self.publisher = publisher

    async def job_counts(self) -> dict[JobStatus, int]:
        return {JobStatus(r[0]): r[1] for r in await self.pool.fetch(Q["job_counts"])}

    async def queue_stats(self) -> dict[StepKind, StepStats]:
        """Per kind of step: ready to run, age of the oldest ready, retrying, running."""
        stats = dict.fromkeys(StepKind, StepStats())
        for r in await self.pool.fetch(Q["queue_stats"]):
            stats[StepKind(r["kind"])] = StepStats(
                ready=r["ready"],
                oldest_seconds=float(r["oldest"] or 0.0),
                retrying=r["retrying"],
                running=r["running"],
            )
        return stats

    async def prune(self, older_than_seconds: float, *, batch: int = 1000) -> int:
        """Delete finished jobs older than the given age; returns how many."""
        deleted = 0
        while True:
            result = await self.pool.execute(Q["prune_jobs"], older_than_seconds, batch)
            count = int(result.split()[-1])
            deleted += count
            if count < batch:
                return deleted

    async def retry_job(self, job_id: UUID, timeout_seconds: float) -> Retry | None:
        """Re-queue a failed or cancelled job's unfinished steps, with fresh attempts and a
        new deadline. None: no such job. A job in another state is left alone."""
        async with self.pool.acquire() as conn, conn.transaction():
            requeued = await conn.fetch(Q["requeue_unfinished_steps"], job_id)
            status: str | None = await conn.fetchval(Q["reopen_job"], job_id, timeout_seconds)
            if status is None:
                current: str | None = await conn.fetchval(Q["job_status"], job_id)
                if current is None:
                    return None
                return Retry(retried=False, status=JobStatus(current), steps=0)
            if status in ACTIVE_JOB_STATUSES:
                await conn.execute(Q["admit_reopened_job"], job_id)
        self.publisher.wake_workers()
        self.publisher.progress([job_id])
        return Retry(retried=True, status=JobStatus(status), steps=len(requeued))

    async def retry_webhooks(self, job_id: UUID) -> WebhookRetry | None:
        """Re-send the job's webhook deliveries that gave up: fresh attempts, a new retry
        window, the same event (webhook-id and body). None: no such job."""
        retried: int = await self.pool.fetchval(Q["retry_webhooks"], job_id)
        rows = await self.pool.fetch(Q["webhook_deliveries"], job_id)
        if not rows:
            return None
        deliveries = [
            WebhookDelivery(
                event=r["title"],
                status=StepStatus(r["status"]),
                attempts=r["attempts"],
                last_status_code=r["last_status_code"],
                last_error=r["last_error"],
            )
            for r in rows
            if r["status"] is not None
        ]
        return WebhookRetry(retried, rows[0]["webhook_url"], deliveries)

    async def quota_state(self) -> list[QuotaState]:
        return [QuotaState(*r) for r in await self.pool.fetch(Q["quota_state"])]

    async def schema_revision(self) -> str | None:
        """The migration the database is at (None: not migrated)."""
        try:
            revision: str | None = await self.pool.fetchval(Q["schema_revision"])
        except asyncpg.UndefinedTableError:
            return None
        return revision
