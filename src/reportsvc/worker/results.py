"""Writing results: outcomes are buffered and written in batches (group commit), one
statement per kind of transition for the whole batch. A step's slot is given back only
once its outcome is committed."""

from __future__ import annotations

import asyncio

import structlog

from reportsvc.backoff import Backoff
from reportsvc.domain import StepKind
from reportsvc.metrics import JOBS_FINISHED, STEPS_FINISHED
from reportsvc.queue.outcomes import Done, Failed, Outcome, Released
from reportsvc.queue.steps import StepQueue, Written
from reportsvc.worker.executor import step_ids
from reportsvc.worker.outages import DATABASE_ERRORS, Outages
from reportsvc.worker.slots import Slots

log = structlog.get_logger("reportsvc.worker")

_OUTCOME_NAMES: dict[type, str] = {Done: "done", Failed: "error", Released: "released"}
# Labelled children resolved once, and counted once per written batch: `labels().inc()`
# on every step cost more than the rest of a no-op step's bookkeeping.
_STEPS_FINISHED = {
    (kind, name): STEPS_FINISHED.labels(kind.value, name)
    for kind in StepKind
    for name in _OUTCOME_NAMES.values()
}

_JOBS_COMPLETED = JOBS_FINISHED.labels("completed")
_JOBS_FAILED = JOBS_FINISHED.labels("failed")


class ResultWriter:
    def __init__(
        self,
        queue: StepQueue,
        worker_id: str,
        slots: Slots,
        write_lock: asyncio.Lock,
        outages: Outages,
    ) -> None:
        self._queue = queue
        self._worker_id = worker_id
        self._slots = slots
        # The heartbeat writes this worker's running rows too; one writer at a time keeps
        # the two from locking the same rows in different orders.
        self._lock = write_lock
        self._outages = outages
        self._pending: list[Outcome] = []
        self._wake = asyncio.Event()
        self._closing = False

    def record(self, outcome: Outcome) -> None:
        self._pending.append(outcome)
        self._wake.set()

    @property
    def unwritten(self) -> int:
        return len(self._pending)

    def close(self) -> None:
        """Write what is left, then stop."""
        self._closing = True
        self._wake.set()

    async def run(self) -> None:
        backoff = Backoff()
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            batch, self._pending = self._pending, []
            try:
                async with self._lock:
                    await self._write(batch)
            except DATABASE_ERRORS as exc:
                # Keep the batch and write it again: every write is fenced, so writing
                # twice is harmless, and a result is never dropped for a blip.
                self._pending = batch + self._pending
                await self._outages.wait_out("write results", exc, backoff, keep_trying=True)
                continue
            except Exception:
                # Not an outage: something in the batch cannot be written. Write the rest
                # one by one; a result that still fails is dropped, its lease lapses, and
                # the step is retried (or failed) like one whose worker died.
                log.exception("batch write failed; writing one by one")
                await self._write_one_by_one(batch)
            backoff.reset()

    async def _write_one_by_one(self, batch: list[Outcome]) -> None:
        for outcome in batch:
            try:
                async with self._lock:
                    await self._write([outcome])
            except Exception:
                log.exception("dropping a result that cannot be written", **step_ids(outcome.step))
                self._slots.release(outcome.step)

    async def _commit(self, batch: list[Outcome]) -> Written:
        """Write the batch and give back its slots."""
        # Their slots count as room for the next claim while this write is in flight.
        committing = sum(self._slots.get(o.step) is not None for o in batch)
        self._slots.committing(committing)
        try:
            written = await self._queue.write(self._worker_id, batch)
            # Steps claimed early for a job that has ended since must not start as slots
            # are given back: they go back as abandoned.
            if ended := {*written.ended_jobs, *written.failed_jobs}:
                for step in self._slots.drop_waiting(ended):
                    self.record(Released(step, requeue=False))
            for outcome in batch:
                self._slots.release(outcome.step)
        finally:
            self._slots.committing(-committing)
        return written

    async def _write(self, batch: list[Outcome]) -> None:
        written = await self._commit(batch)
        tally: dict[tuple[StepKind, str], int] = {}
        for outcome in batch:
            key = (outcome.step.kind, _OUTCOME_NAMES[type(outcome)])
            tally[key] = tally.get(key, 0) + 1
        for key, count in tally.items():
            _STEPS_FINISHED[key].inc(count)
        if written.completed_jobs:
            _JOBS_COMPLETED.inc(len(written.completed_jobs))
        if written.failed_jobs:
            _JOBS_FAILED.inc(len(written.failed_jobs))
        if written.lost:
            log.warning("results discarded: lease lost", count=written.lost)
        for job_id in written.completed_jobs:
            log.info("job completed", job_id=str(job_id))
        for job_id in written.failed_jobs:
            log.warning("job failed", job_id=str(job_id))
