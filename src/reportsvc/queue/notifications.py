"""PostgreSQL notifications: waking idle workers, and telling API processes about progress.

Two channels:
- `reportsvc_work`: "there is work" (payload ignored). Workers LISTEN and claim at once.
- `reportsvc_events`: comma-separated ids of jobs whose state changed (a step finished, the
  job ended). API processes LISTEN and wake the event streams of those jobs.

Notifications are hints, never the record: the rows are. A listener that reconnects
assumes it missed something; a lost notification costs a poll interval.

Where LISTEN cannot work (PgBouncer in transaction mode, without a direct URL beside it),
`JobPoller` gives event streams the same hints by polling the rows, one query for all the
jobs an API process is watching; workers poll for work on their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable, Callable, Collection, Iterable
from typing import Final
from uuid import UUID

import asyncpg
import structlog

from reportsvc.backoff import Backoff
from reportsvc.db.errors import DATABASE_UNAVAILABLE
from reportsvc.queue.sql import load_queries

WORK_CHANNEL: Final = "reportsvc_work"
EVENTS_CHANNEL: Final = "reportsvc_events"
# PostgreSQL's payload limit is 8000 bytes; a UUID and a comma take 37.
_IDS_PER_NOTIFY: Final = 200

log = structlog.get_logger("reportsvc.notifications")
QUERIES: Final = load_queries("notifications.sql")

# Event streams' stand-in for LISTEN (see `JobPoller` and the statement's comment).
JOB_VERSIONS: Final = QUERIES["job_versions"]


class Listener:
    """A dedicated connection LISTENing on some channels, reconnecting forever."""

    def __init__(
        self,
        database_url: str,
        channels: dict[str, Callable[[str], None]],
        *,
        application_name: str,
        on_connect: Callable[[], None] | None = None,
        health_check_seconds: float = 15.0,
    ) -> None:
        self._url = database_url
        self._channels = channels
        self._application_name = application_name
        self._on_connect = on_connect
        self._health_check_seconds = health_check_seconds
        self.listening = False

    async def run(self) -> None:
        backoff = Backoff(first=0.2, cap=10.0)
        while True:
            lost = asyncio.Event()
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(
                    self._url,
                    timeout=10,
                    # LISTEN and the health check are simple queries: nothing to prepare.
                    statement_cache_size=0,
                    server_settings={"application_name": self._application_name},
                )
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                for channel, callback in self._channels.items():
                    await conn.add_listener(channel, _payload_only(callback))
                self.listening = True
                backoff.reset()
                if self._on_connect is not None:
                    self._on_connect()  # anything sent while we were not listening
                while not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), timeout=self._health_check_seconds)
                    if not lost.is_set():
                        # A silent network can leave a dead socket looking alive.
                        await conn.execute("SELECT 1", timeout=5)
            except DATABASE_UNAVAILABLE as exc:
                log.debug("listen connection lost", error=f"{type(exc).__name__}: {exc}")
            except Exception as exc:
                # Not an outage (a dropped database, a refused login): keep trying, but say so.
                log.warning("cannot listen for notifications", error=f"{type(exc).__name__}: {exc}")
            finally:
                self.listening = False
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=1)
            await asyncio.sleep(backoff.next_delay())


def _payload_only(callback: Callable[[str], None]) -> Callable[..., None]:
    def on_notification(_conn: object, _pid: int, _channel: str, payload: str) -> None:
        callback(payload)

    return on_notification


async def job_versions(pool: asyncpg.Pool, job_ids: Collection[UUID]) -> dict[UUID, str]:
    """Each job's row version (see `JOB_VERSIONS`); deleted jobs are absent."""
    rows = await pool.fetch(JOB_VERSIONS, list(job_ids))
    return {row[0]: row[1] for row in rows}


class JobPoller:
    """LISTEN's stand-in for event streams: every `interval` seconds, one query reads the
    row version of every job in `watched()`, and `changed` gets the ids of those whose row
    changed since the last look, was seen for the first time (it may have changed between
    the stream's first read and now), or is gone. Nothing is queried while nobody watches."""

    def __init__(
        self,
        versions: Callable[[Collection[UUID]], Awaitable[dict[UUID, str]]],
        watched: Callable[[], Collection[UUID]],
        changed: Callable[[Iterable[UUID]], None],
        *,
        interval: float,
    ) -> None:
        self._versions = versions
        self._watched = watched
        self._changed = changed
        self._interval = interval

    async def run(self) -> None:
        seen: dict[UUID, str] = {}
        while True:
            await asyncio.sleep(self._interval)
            watched = set(self._watched())
            if not watched:
                seen.clear()
                continue
            try:
                current = await self._versions(watched)
            except DATABASE_UNAVAILABLE as exc:
                # The next round compares with what was seen before the outage.
                log.debug("cannot poll job versions", error=f"{type(exc).__name__}: {exc}")
                continue
            except Exception as exc:
                log.warning("cannot poll job versions", error=f"{type(exc).__name__}: {exc}")
                continue
            moved = [job_id for job_id, version in current.items() if seen.get(job_id) != version]
            gone = [job_id for job_id in seen if job_id in watched and job_id not in current]
            seen = current
            if moved or gone:
                self._changed([*moved, *gone])


class Publisher:
    """Sends notifications after the transactions they announce have committed, without
    making anyone wait, and coalesced: while one NOTIFY is under way, later requests share
    the next. (A NOTIFY inside every transaction would serialise all commits on
    PostgreSQL's notification queue lock.) Progress goes out at most once per
    `progress_interval` seconds, with every job that changed in between: a busy worker
    writes results hundreds of times a second, and a person watching a report needs far
    fewer updates than that. A wake-up for workers is never held back."""

    def __init__(self, pool: asyncpg.Pool, *, progress_interval: float = 0.025) -> None:
        self._pool = pool
        self._progress_interval = progress_interval
        self._wake = False
        self._woken = asyncio.Event()
        self._progress: set[UUID] = set()
        self._progress_sent_at = -math.inf
        self._task: asyncio.Task[None] | None = None

    def wake_workers(self) -> None:
        self._wake = True
        self._woken.set()
        self._ensure_running()

    def progress(self, job_ids: Iterable[UUID]) -> None:
        self._progress.update(job_ids)
        if self._progress:
            self._ensure_running()

    async def close(self, grace: float = 2.0) -> None:
        """Send what is pending (briefly), before the pool goes away."""
        self._progress_interval = 0.0
        self._woken.set()
        if self._task is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._task), grace)
            if self._task is not None:
                self._task.cancel()

    def _ensure_running(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._send())

    async def _send(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._wake or self._progress:
                hold = self._progress_sent_at + self._progress_interval - loop.time()
                if not self._wake and hold > 0:
                    self._woken.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._woken.wait(), hold)
                wake, self._wake = self._wake, False
                ids, self._progress = sorted(self._progress), set()
                with contextlib.suppress(*DATABASE_UNAVAILABLE):
                    if wake:
                        await self._pool.execute(QUERIES["wake_workers"])
                    if ids:
                        self._progress_sent_at = loop.time()
                    for start in range(0, len(ids), _IDS_PER_NOTIFY):
                        chunk = ",".join(str(i) for i in ids[start : start + _IDS_PER_NOTIFY])
                        await self._pool.execute(QUERIES["notify_progress"], chunk)
        finally:
            self._task = None


def parse_job_ids(payload: str) -> list[UUID]:
    ids = []
    for part in payload.split(","):
        with contextlib.suppress(ValueError):
            ids.append(UUID(part))
    return ids
