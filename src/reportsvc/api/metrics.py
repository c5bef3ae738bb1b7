"""The queue's gauges for /metrics, read from the database as a shared snapshot."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Final

from reportsvc.db.errors import DATABASE_UNAVAILABLE
from reportsvc.domain import UNFINISHED_JOB_STATUSES
from reportsvc.metrics import (
    JOBS,
    QUEUE_OLDEST_SECONDS,
    QUEUE_READY,
    QUEUE_RETRYING,
    QUEUE_RUNNING,
    QUOTA_LIMIT,
    QUOTA_PAUSED_SECONDS,
    QUOTA_REMAINING,
)
from reportsvc.queue.operations import OperationsStore

# How old the queue's gauges may be when scraped.
METRICS_REFRESH_SECONDS: Final = 5.0


class QueueMetrics:
    """The queue's gauges, read from the database at most every METRICS_REFRESH_SECONDS by
    one query at a time: scrapers share the snapshot, so scraping costs the database the
    same whether one Prometheus or sixty clients ask, and each refresh reads only small
    partial indexes (jobs under way, queued and running steps)."""

    def __init__(self, store: OperationsStore) -> None:
        self._store = store
        self._refreshed_at = float("-inf")
        self._lock = asyncio.Lock()

    async def refresh(self) -> None:
        if time.monotonic() - self._refreshed_at < METRICS_REFRESH_SECONDS:
            return
        async with self._lock:
            if time.monotonic() - self._refreshed_at < METRICS_REFRESH_SECONDS:
                return
            # While the database is unreachable the last values stay; /readyz says why.
            with contextlib.suppress(*DATABASE_UNAVAILABLE):
                await self._read()
            self._refreshed_at = time.monotonic()

    async def _read(self) -> None:
        counts = await self._store.job_counts()
        for status in UNFINISHED_JOB_STATUSES:
            JOBS.labels(status.value).set(counts.get(status, 0))
        for kind, stats in (await self._store.queue_stats()).items():
            QUEUE_READY.labels(kind.value).set(stats.ready)
            QUEUE_OLDEST_SECONDS.labels(kind.value).set(stats.oldest_seconds)
            QUEUE_RETRYING.labels(kind.value).set(stats.retrying)
            QUEUE_RUNNING.labels(kind.value).set(stats.running)
        for quota in await self._store.quota_state():
            for unit, limit, remaining in (
                ("requests", quota.rpm, quota.remaining_requests),
                ("tokens", quota.tpm, quota.remaining_tokens),
            ):
                if limit is not None:
                    QUOTA_LIMIT.labels(quota.model, unit).set(limit)
                if remaining is not None:
                    QUOTA_REMAINING.labels(quota.model, unit).set(remaining)
            QUOTA_PAUSED_SECONDS.labels(quota.model).set(quota.paused_for)
