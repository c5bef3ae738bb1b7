"""Riding out database outages: every loop that talks to the database waits with backoff
and tries again; only the first failure of an outage is logged."""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from reportsvc.backoff import Backoff
from reportsvc.db.errors import DATABASE_UNAVAILABLE, RETRYABLE_CONFLICTS

log = structlog.get_logger("reportsvc.worker")

# Errors after which the same write or claim is simply tried again later.
DATABASE_ERRORS = DATABASE_UNAVAILABLE + RETRYABLE_CONFLICTS


def describe(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown error"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class Outages:
    def __init__(self, stopping: asyncio.Event) -> None:
        self._stopping = stopping

    async def wait_out(
        self, what: str, exc: BaseException | None, backoff: Backoff, *, keep_trying: bool = False
    ) -> None:
        """Wait before trying `what` again. A stop request cuts the wait short, unless
        `keep_trying` (results still to write have their own bound at shutdown)."""
        if backoff.failing_since is None and exc is not None:
            log.warning(
                "database unavailable; retrying with backoff", action=what, error=describe(exc)
            )
        delay = backoff.next_delay()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), delay)
        if self._stopping.is_set() and keep_trying:
            await asyncio.sleep(delay)
