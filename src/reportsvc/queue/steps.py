"""The workers' side of the queue: claim, lease, complete, retry, fail, release, rescue.

Every transition of a step is one statement in `steps.sql`, the same for every kind of
step. This module speaks asyncpg directly: on this hot path SQLAlchemy's execution layer
costs about three times the CPU of the driver per statement (see DEVLOG.md), and every
statement here is hand-written anyway.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Final
from uuid import UUID

import asyncpg
import msgspec

from reportsvc import failures
from reportsvc.domain import Delivery, JobOptions, Step, StepKind, StepStatus
from reportsvc.queue.notifications import Publisher
from reportsvc.queue.outcomes import Done, Failed, Outcome, Released
from reportsvc.queue.sql import literal, load_queries

Q: Final = load_queries("steps.sql")

# The advisory lock that claims under MAX_RUNNING_STEPS_PER_OWNER take in turn.
BOUNDED_CLAIMS_LOCK: Final = 0x7265706F7274  # "report"
_json = msgspec.json.Encoder().encode


# A claimed row's kind, looked up rather than constructed (`StepKind(...)` per row showed
# in profiles of a busy worker).
_KINDS: Final = {kind.value: kind for kind in StepKind}


@lru_cache(maxsize=1024)
def _claim_sql(ceiling: int, max_running_per_owner: int) -> str:
    return literal(Q["claim_steps"], claim_limit=ceiling, owner_bound=max_running_per_owner)


class Claim(msgspec.Struct, frozen=True):
    steps: list[Step]
    # Fewer rows were ready than asked for: the queue is (for now) empty.
    exhausted: bool


class Written(msgspec.Struct, kw_only=True):
    """What writing a batch of outcomes did."""

    # Results stored; results refused because the lease was lost.
    written: int = 0
    lost: int = 0
    completed_jobs: list[UUID] = msgspec.field(default_factory=list)
    failed_jobs: list[UUID] = msgspec.field(default_factory=list)
    # Jobs of the batch found already ended (cancelled or failed by someone else).
    ended_jobs: list[UUID] = msgspec.field(default_factory=list)


class Rescue(msgspec.Struct, frozen=True):
    requeued: int
    failed_jobs: list[UUID]


class StepQueue:
    def __init__(self, pool: asyncpg.Pool, publisher: Publisher) -> None:
        self.pool = pool
        self.publisher = publisher

    async def claim(
        self,
        worker_id: str,
        limit: int,
        lease_seconds: float,
        *,
        ceiling: int | None = None,
        max_running_per_owner: int = 0,
    ) -> Claim:
        """Up to `limit` steps, leased to `worker_id`, in turn order (owners take turns;
        within an owner, reports under way before new ones). One round trip (two for a
        summary step, or when webhook deliveries are among them). `ceiling`: the most any
        of this worker's claims asks for (its batch size), the same on every call, so the
        statement has one text and one plan whatever `limit` is."""
        ceiling = max(limit, ceiling or limit)
        sql = _claim_sql(ceiling, max_running_per_owner)
        if max_running_per_owner:
            # Claims that count running steps take turns, cluster-wide: two at once would
            # each see the other's steps as not yet running and pass the bound together.
            async with self.pool.acquire() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", BOUNDED_CLAIMS_LOCK)
                rows = await conn.fetch(sql, worker_id, lease_seconds, limit)
        else:
            rows = await self.pool.fetch(sql, worker_id, lease_seconds, limit)
        # The steps of one job share its options (frozen): converted once per job.
        options: dict[UUID, JobOptions] = {}
        steps = [
            Step(
                id=r[0],
                kind=_KINDS[r[1]],
                job_id=r[2],
                position=r[3],
                title=r[4],
                attempt=r[5],
                topic=r[7],
                model=r[8],
                options=options.get(r[2]) or options.setdefault(r[2], JobOptions.from_row(r[9])),
                outline=r[10] or [],
                previous=r[11],
                instruction=r[12],
            )
            for r in rows
            if r[6]
        ]
        for i, step in enumerate(steps):
            if step.kind is StepKind.SUMMARY:  # rare: one per job, and only when asked for
                written = await self.pool.fetch(Q["written_sections"], step.job_id)
                steps[i] = msgspec.structs.replace(step, written={r[0]: r[1] for r in written})
        if any(step.kind is StepKind.WEBHOOK for step in steps):  # one per ended job at most
            steps = await self._with_deliveries(steps)
        return Claim(steps, exhausted=len(rows) < limit)

    async def _with_deliveries(self, steps: list[Step]) -> list[Step]:
        ids = [s.id for s in steps if s.kind is StepKind.WEBHOOK]
        rows = {r["id"]: r for r in await self.pool.fetch(Q["webhook_deliveries"], ids)}
        return [
            step
            if step.kind is not StepKind.WEBHOOK
            else msgspec.structs.replace(
                step,
                delivery=Delivery(
                    url=rows[step.id]["webhook_url"],
                    event=rows[step.id]["title"],
                    occurred_at=rows[step.id]["created_at"],
                    first_attempt_at=rows[step.id]["started_at"],
                    body=rows[step.id]["content"],
                ),
            )
            for step in steps
        ]

    async def keep_webhook_body(self, step: Step, body: str) -> str | None:
        """Store the body a delivery's first attempt is about to send, and return the body
        to send: the one stored first. None: this attempt no longer holds the step."""
        stored: str | None = await self.pool.fetchval(
            Q["keep_webhook_body"], step.id, step.attempt, body
        )
        return stored

    async def write(self, worker_id: str, outcomes: Sequence[Outcome]) -> Written:
        """Write a batch of outcomes: one statement per transition present in the batch.
        Every write is fenced on (worker, attempt): writing a batch twice is harmless."""
        done = [o for o in outcomes if isinstance(o, Done)]
        failed = [o for o in outcomes if isinstance(o, Failed)]
        retries = [o for o in failed if o.retry_in is not None]
        failures_ = [o for o in failed if o.retry_in is None]
        released = [o for o in outcomes if isinstance(o, Released)]
        written = Written()
        if done:
            await self._complete(worker_id, done, written)
        if retries:
            await self._retry(worker_id, retries)
        if failures_:
            written.failed_jobs = await self._fail(worker_id, failures_)
            self.publisher.progress(written.failed_jobs)
        for requeue in (True, False):
            batch = [o for o in released if o.requeue is requeue]
            if batch:
                row = await self.pool.fetchrow(
                    Q["release_steps"],
                    worker_id,
                    [o.step.id for o in batch],
                    [o.step.attempt for o in batch],
                    requeue,
                    [o.delay for o in batch],
                    [o.waiting_for for o in batch],
                )
                assert row is not None
                written.ended_jobs += row["ended"]
        return written

    async def _complete(self, worker_id: str, done: list[Done], written: Written) -> None:
        row = await self.pool.fetchrow(
            Q["complete_steps"],
            worker_id,
            [d.step.id for d in done],
            [d.step.attempt for d in done],
            [d.result.content for d in done],
            [d.result.finish_reason for d in done],
            [d.result.usage.prompt_tokens for d in done],
            [d.result.usage.completion_tokens for d in done],
            [_titles(d) for d in done],
            [d.result.status_code for d in done],
            [d.result.passages_given for d in done],
            [d.result.citations_removed for d in done],
        )
        assert row is not None
        written.written = row["written"]
        written.lost = len(done) - row["written"]
        written.completed_jobs = row["completed"]
        written.ended_jobs += row["ended"]
        self.publisher.progress(row["moved"])

    async def _retry(self, worker_id: str, retries: list[Failed]) -> None:
        await self.pool.fetch(
            Q["retry_steps"],
            worker_id,
            [r.step.id for r in retries],
            [r.step.attempt for r in retries],
            [failures.last_error(r.detail or r.reason) for r in retries],
            [r.retry_in for r in retries],
            [r.usage.prompt_tokens for r in retries],
            [r.usage.completion_tokens for r in retries],
            [r.status_code for r in retries],
        )

    async def _fail(self, worker_id: str, failed: list[Failed]) -> list[UUID]:
        """Fail the steps for good and, atomically, their jobs. Returns the failed jobs."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                Q["fail_steps"],
                worker_id,
                [f.step.id for f in failed],
                [f.step.attempt for f in failed],
                [failures.last_error(f.detail or f.reason) for f in failed],
                [f.usage.prompt_tokens for f in failed],
                [f.usage.completion_tokens for f in failed],
                [f.status_code for f in failed],
            )
            reasons = {f.step.id: f.reason for f in failed}
            messages: dict[UUID, str] = {}
            rewrites: dict[int, str] = {}
            for r in rows:
                if r["rewrite"]:
                    rewrites[r["id"]] = _rewrite_error(r, reasons[r["id"]])
                elif _fails_its_job(r):
                    messages.setdefault(r["job_id"], _job_error(r, reasons[r["id"]]))
            await self._restore_rewrites(conn, rewrites)
            return await self._fail_jobs(conn, messages)

    async def extend_leases(
        self, worker_id: str, held: Iterable[Step], lease_seconds: float
    ) -> set[int]:
        """Renew this worker's leases; returns the steps it still holds for live jobs."""
        steps = list(held)
        if not steps:
            return set()
        rows = await self.pool.fetch(
            Q["extend_leases"],
            worker_id,
            [s.id for s in steps],
            [s.attempt for s in steps],
            lease_seconds,
        )
        return {r[0] for r in rows}

    async def rescue(self, max_attempts: int, *, webhook_max_attempts: int) -> Rescue:
        """Requeue steps whose worker vanished; fail the ones out of attempts, and their
        jobs (not for a webhook delivery: its job has ended already)."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                Q["rescue_steps"], max_attempts, failures.WORKER_LOST, webhook_max_attempts
            )
            messages: dict[UUID, str] = {}
            rewrites: dict[int, str] = {}
            for r in rows:
                if r["status"] != StepStatus.FAILED:
                    continue
                if r["rewrite"]:
                    rewrites[r["id"]] = _rewrite_error(r, failures.WORKER_LOST_EVERY_TIME)
                elif _fails_its_job(r):
                    messages.setdefault(r["job_id"], _job_error(r, failures.WORKER_LOST_EVERY_TIME))
            await self._restore_rewrites(conn, rewrites)
            failed = await self._fail_jobs(conn, messages)
        requeued = sum(r["status"] == StepStatus.QUEUED for r in rows)
        if requeued:
            self.publisher.wake_workers()
        self.publisher.progress(failed)
        return Rescue(requeued=requeued, failed_jobs=failed)

    async def fail_overdue_jobs(self, timeout_seconds: float) -> list[UUID]:
        rows = await self.pool.fetch(Q["overdue_jobs"])
        if not rows:
            return []
        message = failures.deadline_passed(timeout_seconds)
        async with self.pool.acquire() as conn, conn.transaction():
            failed = await self._fail_jobs(conn, {r["id"]: message for r in rows})
        self.publisher.progress(failed)
        return failed

    async def expire_reviews(self, timeout_seconds: float) -> list[UUID]:
        """Fail the jobs whose outline waited longer than OUTLINE_REVIEW_TIMEOUT for its
        owner's review."""
        rows = await self.pool.fetch(
            Q["expire_reviews"], timeout_seconds, failures.review_expired(timeout_seconds)
        )
        failed = [r[0] for r in rows]
        self.publisher.progress(failed)
        return failed

    async def _restore_rewrites(
        self, conn: asyncpg.Connection, errors: dict[int, str]
    ) -> list[UUID]:
        """Rewrites that failed for good: their reports are completed again, as they were."""
        if not errors:
            return []
        ids = sorted(errors)
        rows = await conn.fetch(Q["restore_rewrites"], ids, [errors[i] for i in ids])
        restored = [r[0] for r in rows]
        self.publisher.progress(restored)
        return restored

    async def _fail_jobs(self, conn: asyncpg.Connection, messages: dict[UUID, str]) -> list[UUID]:
        if not messages:
            return []
        ids = sorted(messages)
        await conn.execute(Q["retire_queued_steps"], ids)
        rows = await conn.fetch(Q["fail_jobs"], ids, [messages[i] for i in ids])
        return [r[0] for r in rows]


def _titles(done: Done) -> str | None:
    """An outline's titles, as a JSON array; nothing for other steps."""
    if done.step.kind is not StepKind.OUTLINE:
        return None
    if not done.result.titles:
        raise ValueError("an outline step finished without titles")
    return _json(done.result.titles).decode()


def _fails_its_job(row: asyncpg.Record) -> bool:
    """A step failed for good fails its job, unless it is a webhook delivery (which runs
    after its job has ended)."""
    return StepKind(row["kind"]) is not StepKind.WEBHOOK


def _job_error(row: asyncpg.Record, reason: str) -> str:
    return failures.step_failed(
        kind=StepKind(row["kind"]),
        position=row["position"],
        title=row["title"],
        outline_length=row["outline_length"],
        attempts=row["attempts"],
        reason=reason,
    )


def _rewrite_error(row: asyncpg.Record, reason: str) -> str:
    return failures.rewrite_failed(_job_error(row, reason))
