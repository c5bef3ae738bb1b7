"""Maintenance, run by every worker (SKIP LOCKED keeps them out of each other's way):
rescue steps whose worker vanished (expired leases), fail jobs past their deadline or
whose outline review did not come in time (OUTLINE_REVIEW_TIMEOUT), and prune old
finished jobs when PRUNE_AFTER is set."""

from __future__ import annotations

import asyncio
import random
import time

import structlog

from reportsvc.metrics import JOBS_FINISHED, OUTLINE_REVIEWS
from reportsvc.queue.operations import OperationsStore
from reportsvc.queue.steps import StepQueue
from reportsvc.worker.config import WorkerConfig
from reportsvc.worker.outages import DATABASE_ERRORS

log = structlog.get_logger("reportsvc.worker")


class Maintenance:
    def __init__(
        self,
        queue: StepQueue,
        operations: OperationsStore,
        config: WorkerConfig,
        work_hint: asyncio.Event,
    ) -> None:
        self._queue = queue
        self._operations = operations
        self._config = config
        self._work_hint = work_hint

    async def run(self) -> None:
        interval = self._config.rescue_interval_seconds
        deadline_every = max(interval * 5, 5.0)
        last_deadline_check = 0.0
        # Workers started together should not all prune at once.
        prune_every = self._config.prune_every_seconds
        last_prune = time.monotonic() - prune_every * random.random()  # noqa: S311
        while True:
            # Jitter keeps many workers from sweeping in lockstep.
            await asyncio.sleep(interval * random.uniform(0.75, 1.25))  # noqa: S311
            try:
                await self.rescue()
                now = time.monotonic()
                if now - last_deadline_check >= deadline_every:
                    last_deadline_check = now
                    await self.fail_overdue()
                    await self.expire_reviews()
                prune_after = self._config.prune_after_seconds
                if prune_after is not None and now - last_prune >= prune_every:
                    last_prune = now
                    if deleted := await self._operations.prune(prune_after):
                        log.info("pruned finished jobs", count=deleted)
            except DATABASE_ERRORS:
                continue  # the claim loop reports outages; this just tries again later
            except Exception:
                log.exception("maintenance failed unexpectedly")

    async def rescue(self) -> None:
        rescue = await self._queue.rescue(
            self._config.max_attempts, webhook_max_attempts=self._config.webhook_max_attempts
        )
        if rescue.requeued:
            log.warning("requeued steps whose worker stopped", count=rescue.requeued)
            self._work_hint.set()
        for job_id in rescue.failed_jobs:
            log.warning("job failed: steps kept losing their worker", job_id=str(job_id))
        if rescue.failed_jobs:
            JOBS_FINISHED.labels("failed").inc(len(rescue.failed_jobs))

    async def fail_overdue(self) -> None:
        overdue = await self._queue.fail_overdue_jobs(self._config.job_timeout_seconds)
        for job_id in overdue:
            log.warning("job failed: past its deadline", job_id=str(job_id))
        if overdue:
            JOBS_FINISHED.labels("failed").inc(len(overdue))

    async def expire_reviews(self) -> None:
        expired = await self._queue.expire_reviews(self._config.outline_review_timeout_seconds)
        for job_id in expired:
            log.warning("job failed: its outline was not reviewed in time", job_id=str(job_id))
        if expired:
            JOBS_FINISHED.labels("failed").inc(len(expired))
            OUTLINE_REVIEWS.labels("expired").inc(len(expired))
