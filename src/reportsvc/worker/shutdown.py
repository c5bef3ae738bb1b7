"""Shutdown: stop claiming, give running steps `SHUTDOWN_GRACE_SECONDS` to finish, release
the rest back to the queue (their attempt not counted), then write what is left, for at
most `RESULT_WRITE_SECONDS` more."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

import structlog

from reportsvc.worker.executor import Executor
from reportsvc.worker.results import ResultWriter
from reportsvc.worker.slots import Slots

log = structlog.get_logger("reportsvc.worker")

# After the grace period, how long the worker keeps trying to write its last results and
# releases before it exits anyway (their leases then expire instead).
RESULT_WRITE_SECONDS: Final = 5.0


async def finish_running(
    slots: Slots, executor: Executor, *, grace_seconds: float, hurry: asyncio.Event
) -> None:
    """Wait for running steps, up to the grace period (or until `hurry`), then release
    those still running."""
    running = slots.running()
    if running:
        log.info("finishing in-flight steps", count=len(running), grace_seconds=grace_seconds)
        waiters = [
            asyncio.ensure_future(asyncio.wait([h.call for h in running])),
            asyncio.ensure_future(hurry.wait()),
        ]
        await asyncio.wait(waiters, timeout=grace_seconds, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()
    still = slots.running()
    if still:
        log.info("releasing unfinished steps", count=len(still))
        await executor.cancel_running()


async def write_last_results(writer: ResultWriter, writing: asyncio.Task[None]) -> None:
    writer.close()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(writing), timeout=RESULT_WRITE_SECONDS)
