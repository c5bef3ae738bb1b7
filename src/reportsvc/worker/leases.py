"""Keeping leases: every `LEASE_SECONDS / 3`, renew the lease of every step this worker
holds (running, finished with its result not yet written, or claimed and waiting for a
slot), and abandon any running step whose lease was taken over or whose job was
cancelled or failed meanwhile."""

from __future__ import annotations

import asyncio

import structlog

from reportsvc.backoff import Backoff
from reportsvc.queue.steps import StepQueue
from reportsvc.worker.config import WorkerConfig
from reportsvc.worker.executor import step_ids
from reportsvc.worker.outages import DATABASE_ERRORS, describe
from reportsvc.worker.slots import Slots

log = structlog.get_logger("reportsvc.worker")


class LeaseKeeper:
    def __init__(
        self,
        queue: StepQueue,
        worker_id: str,
        config: WorkerConfig,
        slots: Slots,
        write_lock: asyncio.Lock,
    ) -> None:
        self._queue = queue
        self._worker_id = worker_id
        self._config = config
        self._slots = slots
        self._lock = write_lock

    async def run(self) -> None:
        backoff = Backoff()
        while True:
            failing = backoff.failing_since is not None
            await asyncio.sleep(backoff.next_delay() if failing else self._config.heartbeat_seconds)
            try:
                async with self._lock:
                    await self.renew()
            except DATABASE_ERRORS as exc:
                if backoff.failing_since is None:
                    log.warning("heartbeat failed; retrying", error=describe(exc))
                    backoff.next_delay()
                continue
            except Exception:
                log.exception("heartbeat failed unexpectedly")
                continue
            backoff.reset()

    async def renew(self) -> None:
        held = [h for h in self._slots if not h.abandoned]
        waiting = self._slots.waiting
        if not held and not waiting:
            return
        kept = await self._queue.extend_leases(
            self._worker_id, [h.step for h in held] + waiting, self._config.lease_seconds
        )
        for step in waiting:
            if step.id not in kept:
                # Not started yet, and no longer ours to start: its lease lapses and the
                # rescuer deals with the row.
                self._slots.forget(step)
        # Judge only the steps asked about: others may have been claimed during the call.
        for h in held:
            if h.step.id not in kept and h.running:
                # Its job was cancelled or failed, or another worker took the step over:
                # stop spending model calls on it.
                log.info("abandoning step", **step_ids(h.step))
                h.abandon()
