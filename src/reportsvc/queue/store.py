"""Typed access to the queue statements in `queries.sql`.

This is the only module that runs SQL against jobs and sections. It speaks asyncpg
directly: on this hot path SQLAlchemy's execution layer costs about three times the CPU of
the driver per statement (see DEVLOG.md), and every statement here is hand-written anyway.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Final, Literal, NamedTuple
from uuid import UUID, uuid4

import asyncpg
import msgspec

from reportsvc.db.errors import DATABASE_UNAVAILABLE
from reportsvc.domain import JobOptions, OutlineTask, SectionTask, Task
from reportsvc.queue.notifications import Publisher
from reportsvc.queue.sql import QUERIES

Q: Final = QUERIES


class _NewJob(NamedTuple):
    id: UUID
    topic: str
    model: str
    options: object
    idempotency_key: str | None
    timeout: float
    owner: str | None
    inserted: asyncio.Future[UUID | None]


class JobRow(msgspec.Struct, frozen=True):
    id: UUID
    topic: str
    status: str
    model: str
    options: JobOptions
    outline: list[str] | None
    sections_total: int | None
    sections_done: int
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    # Finished sections so far, in outline order.
    done_sections: dict[str, str]
    summary: str | None = None
    # Sections the model stopped because they reached max_tokens.
    truncated: list[str] = msgspec.field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0


class JobListRow(msgspec.Struct, frozen=True):
    id: UUID
    topic: str
    status: str
    sections_total: int | None
    sections_done: int
    created_at: datetime
    finished_at: datetime | None


class Retry(NamedTuple):
    retried: bool
    status: str
    sections: int


class StepStats(msgspec.Struct, frozen=True):
    ready: int
    oldest_seconds: float
    retrying: int
    running: int


class FinishedSection(msgspec.Struct, frozen=True):
    section_id: int
    attempt: int
    content: str
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0


class FinishedOutline(msgspec.Struct, frozen=True):
    job_id: UUID
    attempt: int
    titles: list[str]
    prompt_tokens: int = 0
    completion_tokens: int = 0


class SectionRetry(msgspec.Struct, frozen=True):
    section_id: int
    attempt: int
    error: str
    delay: float
    prompt_tokens: int = 0
    completion_tokens: int = 0


class SectionFailure(msgspec.Struct, frozen=True):
    section_id: int
    attempt: int
    error: str
    prompt_tokens: int = 0
    completion_tokens: int = 0


class HeldSection(msgspec.Struct, frozen=True):
    section_id: int
    attempt: int


class HeldOutline(msgspec.Struct, frozen=True):
    job_id: UUID
    attempt: int


class TokenUse(NamedTuple):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Claim(msgspec.Struct, frozen=True):
    tasks: list[Task]
    # Fewer rows were ready than asked for: the queue is (for now) empty.
    exhausted: bool


class Completion(msgspec.Struct, frozen=True):
    """What a batch of finished sections did: rows written, jobs that moved on, and those
    of them that completed."""

    written: int
    jobs: list[UUID]
    completed_jobs: list[UUID]
    # Summary steps that became ready to run (workers should be woken).
    summaries_queued: int = 0


class Rescue(msgspec.Struct, frozen=True):
    requeued: int
    failed_jobs: list[UUID]


def _options(value: object) -> JobOptions:
    return msgspec.convert(value, JobOptions)


def _fail(jobs: list[_NewJob], exc: BaseException) -> None:
    for job in jobs:
        if job.inserted.done():
            continue
        if isinstance(exc, asyncio.CancelledError):
            job.inserted.cancel()
        else:
            job.inserted.set_exception(exc)


def section_failure_message(row: asyncpg.Record, error: str) -> str:
    """What a user reads when a section (or the summary) failed for good."""
    attempts = row["attempts"]
    tries = "attempt" if attempts == 1 else "attempts"
    if row["kind"] == "summary":
        return f"The summary could not be written after {attempts} {tries}: {error}"
    total = row["outline_length"]
    where = f"Section {row['position'] + 1} of {total}" if total else "A section"
    return f'{where} ("{row["title"]}") could not be written after {attempts} {tries}: {error}'


def outline_failure_message(attempts: int, error: str) -> str:
    tries = "attempt" if attempts == 1 else "attempts"
    return f"The outline could not be written after {attempts} {tries}: {error}"


class Store:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.publisher = Publisher(pool)
        self._new_jobs: list[_NewJob] = []
        self._inserter: asyncio.Task[None] | None = None

    # --- the API's side -------------------------------------------------------------

    async def create_job(
        self,
        *,
        topic: str,
        model: str,
        options: JobOptions,
        idempotency_key: str | None,
        timeout_seconds: float,
        owner: str | None = None,
    ) -> UUID | None:
        """The new job's id once its row is committed; None when `idempotency_key` was
        already used (by this owner). Concurrent calls share one INSERT (`_insert_jobs`)."""
        new = _NewJob(
            id=uuid4(),
            topic=topic,
            model=model,
            options=msgspec.to_builtins(options),
            idempotency_key=idempotency_key,
            timeout=timeout_seconds,
            owner=owner,
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
                    inserted = await self._insert(batch)
                except DATABASE_UNAVAILABLE as exc:
                    _fail(batch, exc)
                    continue
                except Exception:
                    # Not an outage: some row is unacceptable. Insert one by one, so one bad
                    # request cannot fail the others that happened to share its batch.
                    inserted = set()
                    for job in batch:
                        try:
                            inserted |= await self._insert([job])
                        except Exception as exc:
                            _fail([job], exc)
                for job in batch:
                    if not job.inserted.done():
                        job.inserted.set_result(job.id if job.id in inserted else None)
                if inserted:
                    self.wake_workers()
        except BaseException as exc:
            _fail(batch + self._new_jobs, exc)
            self._new_jobs = []
            raise
        finally:
            self._inserter = None

    async def _insert(self, batch: list[_NewJob]) -> set[UUID]:
        rows = await self.pool.fetch(
            Q["create_jobs"],
            [j.id for j in batch],
            [j.topic for j in batch],
            [j.model for j in batch],
            [j.options for j in batch],
            [j.idempotency_key for j in batch],
            [j.timeout for j in batch],
            [j.owner for j in batch],
        )
        return {r[0] for r in rows}

    def wake_workers(self) -> None:
        """NOTIFY idle workers soon, without waiting (see `Publisher`)."""
        self.publisher.wake_workers()

    def publish_progress(self, job_ids: Iterable[UUID]) -> None:
        """Tell event streams these jobs changed, soon, without waiting."""
        self.publisher.progress(job_ids)

    async def find_job_by_key(
        self, idempotency_key: str, owner: str | None = None
    ) -> tuple[UUID, str, str, JobOptions] | None:
        row = await self.pool.fetchrow(Q["find_job_by_key"], idempotency_key, owner)
        if row is None:
            return None
        return row["id"], row["topic"], row["model"], _options(row["options"])

    async def get_job(self, job_id: UUID, owner: str | None = None) -> JobRow | None:
        """The job, if it exists and (when `owner` is given) belongs to `owner`."""
        row = await self.pool.fetchrow(Q["get_job"], job_id, owner)
        if row is None:
            return None
        titles = row["done_titles"] or []
        contents = row["done_contents"] or []
        return JobRow(
            id=row["id"],
            topic=row["topic"],
            status=row["status"],
            model=row["model"],
            options=_options(row["options"]),
            outline=row["outline"],
            sections_total=row["sections_total"],
            sections_done=row["sections_done"],
            error=row["error"],
            created_at=row["created_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            done_sections=dict(zip(titles, contents, strict=True)),
            summary=row["summary"],
            truncated=row["truncated"] or [],
            prompt_tokens=row["prompt_tokens"],
            completion_tokens=row["completion_tokens"],
        )

    async def list_jobs(
        self,
        *,
        statuses: Sequence[str] | None,
        limit: int,
        before: tuple[datetime, UUID] | None,
        owner: str | None = None,
    ) -> list[JobListRow]:
        """Newest first; `before` is the (created_at, id) of the last job already seen."""
        created_at, job_id = before if before is not None else (None, None)
        statuses = list(statuses) if statuses else None
        args = (statuses, limit, created_at, job_id)
        if owner is None:
            rows = await self.pool.fetch(Q["list_jobs"], *args)
        else:
            rows = await self.pool.fetch(Q["list_owner_jobs"], *args, owner)
        return [JobListRow(*r) for r in rows]

    async def cancel_job(self, job_id: UUID, owner: str | None = None) -> str | None:
        """The job's status after the call; None: no such job (of `owner`)."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(Q["retire_queued_sections"], [job_id], owner)
            status: str | None = await conn.fetchval(Q["cancel_job"], job_id, owner)
        if status == "cancelled":
            self.publish_progress([job_id])
        return status

    # --- operations ----------------------------------------------------------------

    async def job_counts(self) -> dict[str, int]:
        return {r[0]: r[1] for r in await self.pool.fetch(Q["job_counts"])}

    async def queue_stats(self) -> dict[str, StepStats]:
        r = await self.pool.fetchrow(Q["queue_stats"])
        assert r is not None
        return {
            step: StepStats(
                ready=r[f"{prefix}_ready"],
                oldest_seconds=float(r[f"{prefix}_oldest"] or 0.0),
                retrying=r[f"{prefix}_retrying"],
                running=r[f"{prefix}_running"],
            )
            for step, prefix in (("section", "sections"), ("outline", "outlines"))
        }

    async def prune(self, older_than_seconds: float, *, batch: int = 1000) -> int:
        """Delete finished jobs older than the given age; returns how many."""
        deleted = 0
        while True:
            result = await self.pool.execute(Q["prune_jobs"], older_than_seconds, batch)
            count = int(result.split()[-1])
            deleted += count
            if count < batch:
                return deleted

    async def retry_job(self, job_id: UUID, timeout_seconds: float) -> Retry | None:
        """Re-queue a failed or cancelled job's unfinished steps, with fresh attempts and a
        new deadline. None: no such job. A job in another state is left alone."""
        async with self.pool.acquire() as conn, conn.transaction():
            requeued = await conn.fetch(Q["requeue_failed_sections"], job_id)
            status: str | None = await conn.fetchval(Q["reopen_job"], job_id, timeout_seconds)
            if status is None:
                current: str | None = await conn.fetchval(Q["job_status"], job_id)
                return None if current is None else Retry(retried=False, status=current, sections=0)
        self.wake_workers()
        self.publish_progress([job_id])
        return Retry(retried=True, status=status, sections=len(requeued))

    async def pending_jobs(self) -> int:
        count: int = await self.pool.fetchval(Q["pending_jobs"])
        return count

    # --- API tokens (stored as sha256 hashes) ------------------------------------------

    async def active_token_hashes(self) -> list[str]:
        return [r[0] for r in await self.pool.fetch(Q["active_token_hashes"])]

    async def add_token(self, name: str, token_hash: str) -> bool:
        """False: the name is taken."""
        return await self.pool.fetchrow(Q["add_token"], name, token_hash) is not None

    async def revoke_token(self, name: str) -> bool:
        """False: no active token of that name."""
        return await self.pool.fetchrow(Q["revoke_token"], name) is not None

    async def list_tokens(self) -> list[tuple[str, datetime, datetime | None]]:
        return [(r[0], r[1], r[2]) for r in await self.pool.fetch(Q["list_tokens"])]

    async def schema_revision(self) -> str | None:
        """The migration the database is at (None: not migrated)."""
        try:
            revision: str | None = await self.pool.fetchval(Q["schema_revision"])
        except asyncpg.UndefinedTableError:
            return None
        return revision

    # --- the worker's side ----------------------------------------------------------

    async def claim(self, worker_id: str, limit: int, lease_seconds: float) -> Claim:
        """Up to `limit` steps: ready sections first, then outlines with the room left.

        One round trip while sections are waiting (the busy case), two when the sections
        run out before the batch is full.
        """
        rows = await self.pool.fetch(Q["claim_sections"], worker_id, limit, lease_seconds)
        sections = [
            SectionTask(
                section_id=r[0],
                job_id=r[1],
                position=r[2],
                title=r[3],
                attempt=r[4],
                topic=r[6],
                model=r[7],
                options=_options(r[8]),
                outline=r[9],
                kind=r[10],
            )
            for r in rows
            if r[5]
        ]
        for i, task in enumerate(sections):
            if task.kind == "summary":  # rare: one per job, and only when asked for
                written = await self._written(task.job_id)
                sections[i] = msgspec.structs.replace(task, written=written)
        tasks: list[Task] = list(sections)
        if len(rows) == limit:
            return Claim(tasks, exhausted=False)
        outlines = await self.pool.fetch(
            Q["claim_outlines"], worker_id, limit - len(rows), lease_seconds
        )
        tasks += [
            OutlineTask(job_id=r[0], topic=r[1], model=r[2], options=_options(r[3]), attempt=r[4])
            for r in outlines
        ]
        return Claim(tasks, exhausted=len(rows) + len(outlines) < limit)

    async def _written(self, job_id: UUID) -> dict[str, str]:
        """The finished sections of a job, title -> text (for its summary step)."""
        return {r[0]: r[1] for r in await self.pool.fetch(Q["written_sections"], job_id)}

    async def complete_sections(
        self, worker_id: str, finished: Sequence[FinishedSection]
    ) -> Completion:
        rows = await self.pool.fetch(
            Q["complete_sections"],
            worker_id,
            [f.section_id for f in finished],
            [f.attempt for f in finished],
            [f.content for f in finished],
            [f.finish_reason for f in finished],
            [f.prompt_tokens for f in finished],
            [f.completion_tokens for f in finished],
        )
        return Completion(
            written=sum(r[2] for r in rows),
            jobs=[r[0] for r in rows],
            completed_jobs=sorted(r[0] for r in rows if r[1] == "completed"),
            summaries_queued=rows[0][3] if rows else 0,
        )

    async def complete_outlines(
        self, worker_id: str, outlines: Sequence[FinishedOutline]
    ) -> set[UUID]:
        """Store outlines and queue their sections; returns the jobs whose outline was written."""
        rows = await self.pool.fetch(
            Q["complete_outlines"],
            worker_id,
            [
                {
                    "job_id": str(o.job_id),
                    "attempt": o.attempt,
                    "titles": o.titles,
                    "prompt_tokens": o.prompt_tokens,
                    "completion_tokens": o.completion_tokens,
                }
                for o in outlines
            ],
        )
        return {r[0] for r in rows}

    async def complete_outline(
        self, worker_id: str, job_id: UUID, attempt: int, titles: list[str]
    ) -> bool:
        written = await self.complete_outlines(
            worker_id, [FinishedOutline(job_id, attempt, titles)]
        )
        return job_id in written

    async def retry_sections(self, worker_id: str, retries: Sequence[SectionRetry]) -> int:
        rows = await self.pool.fetch(
            Q["retry_sections"],
            worker_id,
            [r.section_id for r in retries],
            [r.attempt for r in retries],
            [r.error for r in retries],
            [r.delay for r in retries],
            [r.prompt_tokens for r in retries],
            [r.completion_tokens for r in retries],
        )
        return len(rows)

    async def fail_sections(self, worker_id: str, failures: Sequence[SectionFailure]) -> list[UUID]:
        """Fail the sections for good and, atomically, their jobs. Returns the failed jobs."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                Q["fail_sections"],
                worker_id,
                [f.section_id for f in failures],
                [f.attempt for f in failures],
                [f.error for f in failures],
                [f.prompt_tokens for f in failures],
                [f.completion_tokens for f in failures],
            )
            errors = {f.section_id: f.error for f in failures}
            messages: dict[UUID, str] = {}
            for r in rows:
                messages.setdefault(r["job_id"], section_failure_message(r, errors[r["id"]]))
            return await self._fail_jobs(conn, messages)

    async def release_sections(
        self,
        worker_id: str,
        held: Sequence[HeldSection],
        status: Literal["queued", "cancelled"],
    ) -> int:
        released: int = await self.pool.fetchval(
            Q["release_sections"],
            worker_id,
            [h.section_id for h in held],
            [h.attempt for h in held],
            status,
        )
        return released

    async def retry_outline(
        self, worker_id: str, held: HeldOutline, error: str, delay: float, tokens: TokenUse
    ) -> bool:
        row = await self.pool.fetchrow(
            Q["retry_outline"], worker_id, held.job_id, held.attempt, error, delay, *tokens
        )
        return row is not None

    async def fail_outline(
        self, worker_id: str, held: HeldOutline, error: str, tokens: TokenUse
    ) -> bool:
        message = outline_failure_message(held.attempt, error)
        row = await self.pool.fetchrow(
            Q["fail_outline"], worker_id, held.job_id, held.attempt, message, *tokens
        )
        return row is not None

    async def release_outline(self, worker_id: str, job_id: UUID, attempt: int) -> bool:
        row = await self.pool.fetchrow(Q["release_outline"], worker_id, job_id, attempt)
        return row is not None

    async def extend_leases(
        self,
        worker_id: str,
        sections: Sequence[HeldSection],
        outlines: Sequence[HeldOutline],
        lease_seconds: float,
    ) -> tuple[set[int], set[UUID]]:
        """Renew this worker's leases; returns the ones it still holds for live jobs."""
        kept_sections: set[int] = set()
        kept_outlines: set[UUID] = set()
        if sections:
            rows = await self.pool.fetch(
                Q["extend_section_leases"],
                worker_id,
                [s.section_id for s in sections],
                [s.attempt for s in sections],
                lease_seconds,
            )
            kept_sections = {r[0] for r in rows}
        if outlines:
            rows = await self.pool.fetch(
                Q["extend_outline_leases"],
                worker_id,
                [o.job_id for o in outlines],
                [o.attempt for o in outlines],
                lease_seconds,
            )
            kept_outlines = {r[0] for r in rows}
        return kept_sections, kept_outlines

    async def rescue(self, max_attempts: int) -> Rescue:
        """Requeue steps whose worker vanished; fail the ones out of attempts."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(Q["rescue_sections"], max_attempts)
            messages: dict[UUID, str] = {}
            for r in rows:
                if r["status"] == "failed":
                    messages.setdefault(
                        r["job_id"],
                        section_failure_message(r, "its worker stopped responding each time"),
                    )
            failed = await self._fail_jobs(conn, messages)
            outlines = await conn.fetch(Q["rescue_outlines"], max_attempts)
        failed += [r["id"] for r in outlines if r["status"] == "failed"]
        requeued = sum(r["status"] == "queued" for r in rows) + sum(
            r["status"] == "queued" for r in outlines
        )
        return Rescue(requeued=requeued, failed_jobs=failed)

    async def fail_overdue_jobs(self, timeout_seconds: float) -> list[UUID]:
        rows = await self.pool.fetch(Q["overdue_jobs"])
        if not rows:
            return []
        minutes = timeout_seconds / 60
        message = (
            f"The report did not finish within its deadline of {minutes:g} minutes "
            "(JOB_TIMEOUT_SECONDS); the model may be too slow or unavailable."
        )
        async with self.pool.acquire() as conn, conn.transaction():
            return await self._fail_jobs(conn, {r["id"]: message for r in rows})

    @staticmethod
    async def _fail_jobs(conn: asyncpg.Connection, messages: dict[UUID, str]) -> list[UUID]:
        if not messages:
            return []
        ids = sorted(messages)
        await conn.execute(Q["retire_queued_sections"], ids, None)
        rows = await conn.fetch(Q["fail_jobs"], ids, [messages[i] for i in ids])
        return [r[0] for r in rows]
