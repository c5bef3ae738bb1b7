"""Claiming: take up to `claim_batch_size` steps per round trip whenever there is room and
a reason to think work is waiting (a wake-up, a full previous batch, or the poll interval).

Lane 0 always runs; a second lane joins only while claims keep coming back full, so a
busy queue has two claims in flight (hiding one round trip) and an idle one costs a
single poller. Slots are reserved before a claim, so two lanes never claim past the
worker's concurrency; the slots of results being committed count as room, so a claim
overlaps the write that frees them (see `slots`).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

import structlog

from reportsvc.backoff import Backoff
from reportsvc.queue.steps import Claim, StepQueue
from reportsvc.worker.config import WorkerConfig
from reportsvc.worker.executor import Executor
from reportsvc.worker.outages import DATABASE_ERRORS, Outages
from reportsvc.worker.slots import Slots

log = structlog.get_logger("reportsvc.worker")

# Claims in flight at once while the queue is busy.
CLAIM_LANES: Final = 2


class Claimer:
    def __init__(
        self,
        queue: StepQueue,
        worker_id: str,
        config: WorkerConfig,
        slots: Slots,
        executor: Executor,
        outages: Outages,
        *,
        work_hint: asyncio.Event,
        stopping: asyncio.Event,
    ) -> None:
        self._queue = queue
        self._worker_id = worker_id
        self._config = config
        self._slots = slots
        self._executor = executor
        self._outages = outages
        self._work_hint = work_hint
        self._stopping = stopping
        self._busy = asyncio.Event()

    def stop(self) -> None:
        """Wake every lane so it sees the stop request."""
        self._busy.set()
        self._slots.freed.set()
        self._work_hint.set()

    async def run(self) -> None:
        await asyncio.gather(*(self._lane(lane) for lane in range(CLAIM_LANES)))

    async def _lane(self, lane: int) -> None:
        backoff = Backoff()
        while not self._stopping.is_set():
            if lane > 0 and not self._busy.is_set():
                await self._busy.wait()
                continue
            free = self._slots.claimable()
            if free <= 0:
                self._slots.freed.clear()
                await self._slots.freed.wait()
                continue
            if lane == 0:
                self._work_hint.clear()
            claim = await self._claim(min(free, self._config.claim_batch_size), backoff)
            if claim is None or claim.exhausted:
                self._busy.clear()
                if lane == 0 and claim is not None:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(
                            self._work_hint.wait(), self._config.poll_interval_seconds
                        )
            else:
                self._busy.set()  # probably more waiting: claim again at once

    async def _claim(self, want: int, backoff: Backoff) -> Claim | None:
        """Claim up to `want` steps and start them; None after a failure (already waited)."""
        self._slots.reserve(want)
        try:
            claim = await self._queue.claim(
                self._worker_id,
                want,
                self._config.lease_seconds,
                ceiling=self._config.claim_batch_size,
                max_running_per_owner=self._config.max_running_steps_per_owner,
            )
        except DATABASE_ERRORS as exc:
            self._slots.unreserve(want)
            await self._outages.wait_out("claim", exc, backoff)
            return None
        except Exception:
            self._slots.unreserve(want)
            log.exception("claim failed unexpectedly")
            await self._outages.wait_out("claim", None, backoff)
            return None
        if backoff.failing_since is not None:
            log.info("database reachable again")
        backoff.reset()
        # The claimed steps take their slots as the reservation is given back, with no
        # await in between, so no other lane sees the room twice.
        for step in claim.steps:
            self._executor.start(step)
        self._slots.unreserve(want)
        return claim
