"""Server-Sent Events for one job: a `progress` event per finished step, then one final
`completed`, `failed` or `cancelled` event, and the stream closes. A job that stops for its
outline's review sends an `awaiting_review` event (the job, with the proposed outline) and
the stream stays open: the sections follow once the review is given.

Streams are woken by PostgreSQL notifications (`reportsvc_events`, sent by workers after
each batch they write), received on one LISTEN connection per API process however many
clients watch; each woken stream re-reads its job's row. So events reach clients of any
API process, and a lost notification only delays an event until the next check
(`STREAM_CHECK_SECONDS`), which doubles as a keep-alive.

Without LISTEN (PgBouncer in transaction mode and no direct URL), the API process polls
instead: one query every `EVENT_POLL_INTERVAL_SECONDS` for all the jobs its clients watch,
waking the streams whose job's row changed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Iterator
from functools import partial
from typing import Annotated, Any, Final, Literal
from uuid import UUID

import asyncpg
import msgspec
from litestar.response import ServerSentEventMessage
from msgspec import UNSET, UnsetType

from reportsvc.api.schemas import PUBLIC_STATUS, CamelStruct
from reportsvc.api.views import job_status, progress
from reportsvc.db.errors import DATABASE_UNAVAILABLE
from reportsvc.queue.notifications import (
    EVENTS_CHANNEL,
    JobPoller,
    Listener,
    job_versions,
    parse_job_ids,
)
from reportsvc.queue.reports import JobRow, ReportStore
from reportsvc.sources.citations import cited_numbers

STREAM_CHECK_SECONDS: Final = 15.0
# How often a waiting stream checks that its caller is still let in.
STREAM_AUTH_SECONDS: Final = 1.0


class ProgressEvent(CamelStruct):
    """Data of a `progress` event: one step finished."""

    job_id: UUID
    step: Literal["outline", "section"]
    progress: float
    # The outline step carries the outline; a section step its title.
    outline: list[str] | UnsetType = UNSET
    section: str | UnsetType = UNSET
    citations: (
        Annotated[
            list[int],
            msgspec.Meta(
                description=(
                    "A section of a report with sources: the passage numbers it cites (see "
                    "the report's references)."
                )
            ),
        ]
        | UnsetType
    ) = UNSET


class EventHub:
    """Wakes the event streams of jobs that changed, once someone watches: by LISTEN on
    one connection to `listen_url`, or, without one, by polling every watched job's row in
    one query every `poll_interval` seconds on the pool given to `use_pool`."""

    def __init__(self, *, listen_url: str | None, poll_interval: float = 1.0) -> None:
        self._subscribers: dict[UUID, set[asyncio.Event]] = {}
        self._listen_url = listen_url
        self._poll_interval = poll_interval
        self._pool: asyncpg.Pool | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def listens(self) -> bool:
        return self._listen_url is not None

    def use_pool(self, pool: asyncpg.Pool) -> None:
        """The pool polled on when there is no LISTEN."""
        self._pool = pool

    @contextlib.contextmanager
    def subscribe(self, job_id: UUID) -> Iterator[asyncio.Event]:
        if self._task is None:
            self._task = asyncio.create_task(self._watch(), name="events-watch")
        changed = asyncio.Event()
        self._subscribers.setdefault(job_id, set()).add(changed)
        try:
            yield changed
        finally:
            watchers = self._subscribers[job_id]
            watchers.discard(changed)
            if not watchers:
                del self._subscribers[job_id]

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _watch(self) -> Coroutine[Any, Any, None]:
        if self._listen_url is not None:
            listener = Listener(
                self._listen_url,
                {EVENTS_CHANNEL: self._notified},
                application_name="reportsvc-api-events",
                on_connect=self._wake_all,
            )
            return listener.run()
        assert self._pool is not None, "polling needs the API's pool"
        poller = JobPoller(
            partial(job_versions, self._pool),
            self._subscribers.keys,
            self._wake,
            interval=self._poll_interval,
        )
        return poller.run()

    def _notified(self, payload: str) -> None:
        self._wake(parse_job_ids(payload))

    def _wake(self, job_ids: Iterable[UUID]) -> None:
        for job_id in job_ids:
            for changed in self._subscribers.get(job_id, ()):
                changed.set()

    def _wake_all(self) -> None:
        for watchers in self._subscribers.values():
            for changed in watchers:
                changed.set()


async def job_events(
    store: ReportStore,
    hub: EventHub,
    job: JobRow,
    prices: dict[str, tuple[float, float]],
    *,
    allowed: Callable[[], Awaitable[bool]],
    check_seconds: float = STREAM_CHECK_SECONDS,
    review_timeout_seconds: float | None = None,
) -> AsyncIterator[ServerSentEventMessage]:
    """The events of `job`, starting with the steps already finished. The stream ends as
    soon as `allowed` says its caller would no longer be let in (a revoked token): it is
    asked every STREAM_AUTH_SECONDS while the stream waits."""
    outline_sent = False
    review_sent = False
    sections_sent: set[str] = set()
    with hub.subscribe(job.id) as changed:
        while True:
            if job.outline is not None and not outline_sent:
                outline_sent = True
                yield _progress(job, ProgressEvent(job.id, "outline", 0.0, outline=job.outline))
            for title in job.outline or []:
                if title in job.done_sections and title not in sections_sent:
                    sections_sent.add(title)
                    event = ProgressEvent(job.id, "section", 0.0, section=title)
                    if job.options.sources:
                        event.citations = sorted(cited_numbers(job.done_sections[title]))
                    yield _progress(job, event)
            public = PUBLIC_STATUS[job.status]
            shown = job_status(job, prices, review_timeout_seconds=review_timeout_seconds)
            if public == "awaiting_review" and not review_sent:
                review_sent = True
                yield ServerSentEventMessage(event=public, data=msgspec.json.encode(shown).decode())
            elif public not in ("processing", "awaiting_review"):
                yield ServerSentEventMessage(event=public, data=msgspec.json.encode(shown).decode())
                return
            woken = await _wait(changed, check_seconds, allowed)
            if woken is None:
                return
            if not woken:
                yield ServerSentEventMessage(comment="keep-alive")
            changed.clear()
            job = await _reload(store, job)


async def _wait(
    changed: asyncio.Event, seconds: float, allowed: Callable[[], Awaitable[bool]]
) -> bool | None:
    """Wait up to `seconds` for the job to change: True if it did, False if not; None as
    soon as the caller is no longer allowed (checked every STREAM_AUTH_SECONDS)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        left = deadline - asyncio.get_running_loop().time()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), max(0.0, min(left, STREAM_AUTH_SECONDS)))
        if not await allowed():
            return None
        if changed.is_set() or left <= STREAM_AUTH_SECONDS:
            return changed.is_set()


def _progress(job: JobRow, event: ProgressEvent) -> ServerSentEventMessage:
    event.progress = progress(job.status, job.sections_total, job.sections_done)
    return ServerSentEventMessage(event="progress", data=msgspec.json.encode(event).decode())


async def _reload(store: ReportStore, job: JobRow) -> JobRow:
    """The job's current row; the last one seen while the database is unreachable."""
    try:
        return await store.get_job(job.id) or job
    except DATABASE_UNAVAILABLE:
        return job
