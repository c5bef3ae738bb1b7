"""The API's side: new jobs (group-committed), a job with its report, listings, cancelling,
an outline's review, and section rewrites with their history."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import Final, Literal, NamedTuple
from uuid import UUID, uuid4

import asyncpg
import msgspec

from reportsvc.db.errors import DATABASE_UNAVAILABLE
from reportsvc.domain import JobOptions, JobStatus, StepKind, StepStatus
from reportsvc.metrics import JOBS_FINISHED
from reportsvc.queue.notifications import Publisher
from reportsvc.queue.sql import load_queries
from reportsvc.sources import Passage
from reportsvc.sources.citations import cited_numbers

Q: Final = load_queries("reports.sql")
_json = msgspec.json.Encoder().encode
_JOBS_CANCELLED: Final = JOBS_FINISHED.labels("cancelled")


class WebhookRow(msgspec.Struct, frozen=True):
    """The latest delivery of a job's webhook events."""

    status: StepStatus
    attempts: int
    last_status_code: int | None
    last_error: str | None
    # When the next attempt is due (while queued).
    run_after: datetime


class JobRow(msgspec.Struct, frozen=True):
    id: UUID
    topic: str
    status: JobStatus
    model: str
    options: JobOptions
    outline: list[str] | None
    sections_total: int | None
    sections_done: int
    error: str | None
    created_at: datetime
    finished_at: datetime | None
    # Finished sections so far, in outline order.
    done_sections: dict[str, str]
    summary: str | None = None
    # Sections the model stopped because they reached max_tokens.
    truncated: list[str] = msgspec.field(default_factory=list)
    # A step waits in the queue for its model's quota.
    waiting_for_quota: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    webhook_url: str | None = None
    # None until the job's first ending queues a delivery.
    webhook: WebhookRow | None = None
    # A report with sources: the passages its finished sections cite, the citations of
    # passages a section was not given (removed), and the sections no passage was
    # relevant to.
    references: list[Passage] = msgspec.field(default_factory=list)
    citations_removed: int = 0
    unsourced_sections: list[str] = msgspec.field(default_factory=list)
    # When the job began to wait for its outline's review (awaiting_review only).
    review_since: datetime | None = None


class HistoryRow(msgspec.Struct, frozen=True):
    """A text a rewrite replaced: a section's, or the summary's."""

    kind: StepKind
    position: int
    title: str
    content: str
    instruction: str | None
    prompt_tokens: int
    completion_tokens: int
    written_at: datetime | None
    replaced_at: datetime


class JobNotFound(Exception):  # noqa: N818 - an answer, not an error of ours
    """No such job (of this owner)."""


class JobStateConflict(Exception):  # noqa: N818 - an answer, not an error of ours
    """The job is not in a state that allows the change: its status, and its outline's
    length (None before it has one)."""

    def __init__(self, status: JobStatus, outline_length: int | None) -> None:
        super().__init__(status)
        self.status = status
        self.outline_length = outline_length


class JobListRow(msgspec.Struct, frozen=True):
    id: UUID
    topic: str
    status: JobStatus
    sections_total: int | None
    sections_done: int
    created_at: datetime
    finished_at: datetime | None


class AdmissionRefused(Exception):  # noqa: N818 - an answer, not an error of ours
    """A new job was refused: the queue (`full`) or the owner's share of it
    (`owner_full`) holds as many pending jobs as allowed."""

    def __init__(self, reason: Literal["full", "owner_full"], bound: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.bound = bound


class NewPassage(NamedTuple):
    """A passage of a new job's sources; numbered by its place among them."""

    # The document's place in the request, from 0.
    document: int
    # The uploaded source it is copied from (None: a document in the request).
    source_id: UUID | None
    title: str
    text: str


class JobSources(NamedTuple):
    """A new job's sources: its passages, and the text-search configuration of its
    language, which indexes them."""

    passages: Sequence[NewPassage]
    search_config: str


class _NewJob(NamedTuple):
    id: UUID
    topic: str
    model: str
    options: object
    idempotency_key: str | None
    timeout: float
    owner: str | None
    webhook_url: str | None
    sources: JobSources | None
    # The client's outline, as a JSON array (None: the model writes one).
    outline: str | None
    inserted: asyncio.Future[UUID | None]


def _fail(jobs: list[_NewJob], exc: BaseException) -> None:
    for job in jobs:
        if job.inserted.done():
            continue
        if isinstance(exc, asyncio.CancelledError):
            job.inserted.cancel()
        else:
            job.inserted.set_exception(exc)


def _passage_columns(batch: list[_NewJob]) -> tuple[list[object], ...]:
    """The passages of a batch of new jobs, as the columns insert_passages takes."""
    columns: tuple[list[object], ...] = ([], [], [], [], [], [], [])
    for job in batch:
        if job.sources is None:
            continue
        for number, passage in enumerate(job.sources.passages, start=1):
            values = (job.id, number, passage.document, passage.source_id, passage.title,
                      passage.text, job.sources.search_config)  # fmt: skip
            for column, value in zip(columns, values, strict=True):
                column.append(value)
    return columns


def _webhook(row: asyncpg.Record) -> WebhookRow | None:
    if row["webhook_status"] is None:
        return None
    return WebhookRow(
        status=StepStatus(row["webhook_status"]),
        attempts=row["webhook_attempts"],
        last_status_code=row["webhook_status_code"],
        last_error=row["webhook_error"],
        run_after=row["webhook_run_after"],
    )


class ReportStore:
    def __init__(
        self,
        pool: asyncpg.Pool,
        publisher: Publisher,
        *,
        max_pending: int = 0,
        max_pending_per_owner: int = 0,
    ) -> None:
        self.pool = pool
        self.publisher = publisher
        # Admission bounds (0: none), enforced by the insert itself.
        self.max_pending = max_pending
        self.max_pending_per_owner = max_pending_per_owner
        self._new_jobs: list[_NewJob] = []
        self._inserter: asyncio.Task[None] | None = None

    async def create_job(  # noqa: PLR0913 - keyword-only: one per column of the new job
        self,
        *,
        topic: str,
        model: str,
        options: JobOptions,
        idempotency_key: str | None,
        timeout_seconds: float,
        owner: str | None = None,
        webhook_url: str | None = None,
        sources: JobSources | None = None,
        outline: list[str] | None = None,
    ) -> UUID | None:
        """The new job's id once its rows are committed; None when `idempotency_key` was
        already used (by this owner); `AdmissionRefused` when there is no room for it.
        With an `outline`, the job starts with its sections (no outline step). Concurrent
        calls share one INSERT (`_insert_jobs`). The job's `sources` are stored with it, in
        the same transaction."""
        new = _NewJob(
            id=uuid4(),
            topic=topic,
            model=model,
            options=msgspec.to_builtins(options),
            idempotency_key=idempotency_key,
            timeout=timeout_seconds,
            owner=owner,
            webhook_url=webhook_url,
            sources=sources,
            outline=None if outline is None else _json(outline).decode(),
            inserted=asyncio.get_running_loop().create_future(),
        )
        self._new_jobs.append(new)
        if self._inserter is None:
            self._inserter = asyncio.create_task(self._insert_jobs())
        return await new.inserted

    async def _insert_jobs(self) -> None:
        """Insert every job waiting, batch after batch, until none is left."""
        batch: list[_NewJob] = []
        try:
            while self._new_jobs:
                batch, self._new_jobs = self._new_jobs, []
                try:
                    outcomes = await self._insert(batch)
                except DATABASE_UNAVAILABLE as exc:
                    _fail(batch, exc)
                    continue
                except Exception:
                    # Not an outage: some row is unacceptable. Insert one by one, so one bad
                    # request cannot fail the others that happened to share its batch.
                    outcomes = {}
                    for job in batch:
                        try:
                            outcomes |= await self._insert([job])
                        except Exception as exc:
                            _fail([job], exc)
                for job in batch:
                    if not job.inserted.done():
                        self._answer(job, outcomes.get(job.id))
                if any(created for created, _ in outcomes.values()):
                    self.publisher.wake_workers()
        except BaseException as exc:
            _fail(batch + self._new_jobs, exc)
            self._new_jobs = []
            raise
        finally:
            self._inserter = None

    def _answer(self, job: _NewJob, outcome: tuple[bool, str | None] | None) -> None:
        created, refused = outcome or (False, None)
        if refused == "full":
            job.inserted.set_exception(AdmissionRefused("full", self.max_pending))
        elif refused == "owner_full":
            job.inserted.set_exception(AdmissionRefused("owner_full", self.max_pending_per_owner))
        else:
            job.inserted.set_result(job.id if created else None)

    async def _insert(self, batch: list[_NewJob]) -> dict[UUID, tuple[bool, str | None]]:
        """Per job: whether it was created, and why not when it was refused for room."""
        args = (
            [j.id for j in batch],
            [j.topic for j in batch],
            [j.model for j in batch],
            [j.options for j in batch],
            [j.idempotency_key for j in batch],
            [j.timeout for j in batch],
            [j.owner for j in batch],
            self.max_pending,
            self.max_pending_per_owner,
            [j.webhook_url for j in batch],
            [j.outline for j in batch],
        )
        if not any(j.sources for j in batch):
            rows = await self.pool.fetch(Q["create_jobs"], *args)
        else:
            async with self.pool.acquire() as conn, conn.transaction():
                rows = await conn.fetch(Q["create_jobs"], *args)
                created = [r[0] for r in rows if r[1]]
                if created:
                    await conn.execute(Q["insert_passages"], *_passage_columns(batch), created)
        return {r[0]: (r[1], r[2]) for r in rows}

    async def find_job_by_key(
        self, idempotency_key: str, owner: str | None = None
    ) -> tuple[UUID, str, str, JobOptions, str | None, list[str] | None] | None:
        """The job created with this key: id, topic, model, options, webhook URL, and the
        outline its client gave (None: the model's, or none yet)."""
        row = await self.pool.fetchrow(Q["find_job_by_key"], idempotency_key, owner)
        if row is None:
            return None
        options = JobOptions.from_row(row["options"])
        return (
            row["id"],
            row["topic"],
            row["model"],
            options,
            row["webhook_url"],
            row["outline"] if options.outline_given else None,
        )

    async def get_job(self, job_id: UUID, owner: str | None = None) -> JobRow | None:
        """The job, if it exists and (when `owner` is given) belongs to `owner`."""
        row = await self.pool.fetchrow(Q["get_job"], job_id, owner)
        if row is None:
            return None
        titles = row["done_titles"] or []
        contents = row["done_contents"] or []
        options = JobOptions.from_row(row["options"])
        references: list[Passage] = []
        # Only a completed report shows its references.
        if options.sources and contents and row["status"] == JobStatus.COMPLETED:
            cited = sorted(set().union(*(cited_numbers(text) for text in contents)))
            if cited:
                rows = await self.pool.fetch(Q["cited_passages"], job_id, cited)
                references = [Passage(r[0], r[1], r[2]) for r in rows]
        return JobRow(
            id=row["id"],
            topic=row["topic"],
            status=JobStatus(row["status"]),
            model=row["model"],
            options=options,
            outline=row["outline"],
            sections_total=row["sections_total"],
            sections_done=row["sections_done"],
            error=row["error"],
            created_at=row["created_at"],
            finished_at=row["finished_at"],
            done_sections=dict(zip(titles, contents, strict=True)),
            summary=row["summary"],
            truncated=row["truncated"] or [],
            waiting_for_quota=row["waiting_for_quota"],
            prompt_tokens=row["prompt_tokens"],
            completion_tokens=row["completion_tokens"],
            webhook_url=row["webhook_url"],
            webhook=_webhook(row),
            references=references,
            citations_removed=row["citations_removed"],
            unsourced_sections=row["unsourced"] or [],
            review_since=row["review_since"],
        )

    async def list_jobs(
        self,
        *,
        statuses: Sequence[JobStatus] | None,
        limit: int,
        before: tuple[datetime, UUID] | None,
        owner: str | None = None,
    ) -> list[JobListRow]:
        """Newest first; `before` is the (created_at, id) of the last job already seen."""
        created_at, job_id = before if before is not None else (None, None)
        wanted = [str(s) for s in statuses] if statuses else None
        args = (wanted, limit, created_at, job_id)
        if owner is None:
            rows = await self.pool.fetch(Q["list_jobs"], *args)
        else:
            rows = await self.pool.fetch(Q["list_owner_jobs"], *args, owner)
        return [JobListRow(r[0], r[1], JobStatus(r[2]), r[3], r[4], r[5], r[6]) for r in rows]

    async def cancel_job(self, job_id: UUID, owner: str | None = None) -> JobStatus | None:
        """The job's status after the call; None: no such job (of `owner`)."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(Q["retire_owned_queued_steps"], job_id, owner)
            row = await conn.fetchrow(Q["cancel_job"], job_id, owner)
        if row is None:
            return None
        if row["now"]:
            _JOBS_CANCELLED.inc()
            self.publisher.progress([job_id])
        return JobStatus(row["status"])

    async def approve_outline(
        self, job_id: UUID, owner: str | None, outline: list[str], timeout_seconds: float
    ) -> int:
        """The owner's review: the job in awaiting_review takes `outline` and its sections
        are queued (returns how many). `JobNotFound`, or `JobStateConflict` when the job is
        not awaiting a review (another review won, or it ended)."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                Q["approve_outline"], job_id, owner, _json(outline).decode(), timeout_seconds
            )
            if row is not None:
                await conn.execute(Q["admit_resumed_job"], job_id)
        if row is None:
            raise await self._refusal(job_id, owner)
        self.publisher.progress([job_id])
        queued: int = row["queued"]
        return queued

    async def rewrite_section(
        self,
        job_id: UUID,
        owner: str | None,
        index: int,
        instruction: str | None,
        timeout_seconds: float,
    ) -> str:
        """Queue section `index` of a completed job to be written again (and the summary
        after it, if the job has one), keeping the texts replaced in section_history.
        `JobNotFound`; `JobStateConflict` when the job is not completed (a rewrite under
        way included) or has no section `index` (see its outline_length). Returns the
        section's title."""
        async with self.pool.acquire() as conn, conn.transaction():
            steps = await conn.fetch(Q["lock_rewrite_steps"], job_id, owner, index)
            titles = [s["title"] for s in steps if StepKind(s["kind"]) is StepKind.SECTION]
            if not titles:
                raise await self._refusal(job_id, owner, conn)
            turn = await conn.fetchval(Q["reopen_for_rewrite"], job_id, len(steps), timeout_seconds)
            if turn is None:  # pragma: no cover - the steps' lock keeps the job completed
                raise await self._refusal(job_id, owner, conn)
            await conn.fetch(Q["queue_rewrite"], [s["id"] for s in steps], instruction, turn)
            await conn.execute(Q["admit_resumed_job"], job_id)
        self.publisher.progress([job_id])
        title: str = titles[0]
        return title

    async def _refusal(
        self, job_id: UUID, owner: str | None, conn: asyncpg.Connection | None = None
    ) -> Exception:
        row = await (conn or self.pool).fetchrow(Q["job_state"], job_id, owner)
        if row is None:
            return JobNotFound(job_id)
        return JobStateConflict(JobStatus(row["status"]), row["outline_length"])

    async def section_history(self, job_id: UUID) -> list[HistoryRow]:
        """The texts rewrites replaced, by position, oldest first."""
        rows = await self.pool.fetch(Q["section_history"], job_id)
        return [
            HistoryRow(
                kind=StepKind(r["kind"]),
                position=r["position"],
                title=r["title"],
                content=r["content"],
                instruction=r["instruction"],
                prompt_tokens=r["prompt_tokens"],
                completion_tokens=r["completion_tokens"],
                written_at=r["written_at"],
                replaced_at=r["replaced_at"],
            )
            for r in rows
        ]
