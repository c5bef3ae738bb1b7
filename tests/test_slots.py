"""A worker claims while a write is in flight, but a step it claims early waits for a slot:
never more than `concurrency` model calls running or answered-but-unwritten."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from reportsvc.domain import Step, StepKind, StepResult
from reportsvc.runtime import build_worker
from reportsvc.worker import Worker, WorkerConfig

SECTIONS = 6


class CountingRunner:
    """Answers at once; counts calls, and the most running at the same time."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.running = 0
        self.most_running = 0

    async def run(self, step: Step) -> StepResult:
        assert step.kind is StepKind.SECTION
        self.calls.append(step.id)
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        await asyncio.sleep(0)
        self.running -= 1
        return StepResult(content="ok")


async def _queue_sections(pool: asyncpg.Pool) -> None:
    """One report being written, with SECTIONS queued section steps."""
    await pool.execute(
        """WITH job AS (
               INSERT INTO jobs (topic, status, model, options, outline, sections_total,
                                 deadline_at)
               VALUES ('Slots', 'writing', 'm', jsonb_build_object('sections', $1::int),
                       ARRAY(SELECT i::text FROM generate_series(1, $1) i), $1,
                       now() + interval '1 hour')
               RETURNING id
           )
           INSERT INTO steps (job_id, kind, position, title)
           SELECT job.id, 'section', i - 1, i::text FROM job, generate_series(1, $1) i""",
        SECTIONS,
    )


@asynccontextmanager
async def _writes_blocked(database_url: str) -> AsyncIterator[None]:
    """Holds the job row, so the worker's result writes wait (claims do not)."""
    conn = await asyncpg.connect(database_url)
    try:
        transaction = conn.transaction()
        await transaction.start()
        await conn.execute("SELECT id FROM jobs FOR UPDATE")
        try:
            yield
        finally:
            await transaction.rollback()
    finally:
        await conn.close()


async def _until(pool: asyncpg.Pool, query: str, *args: object) -> None:
    """Wait (10 s at most) until `query` answers true."""
    async with asyncio.timeout(10):
        while not await pool.fetchval(query, *args):
            await asyncio.sleep(0.01)


def _worker(pool: asyncpg.Pool, database_url: str, runner: CountingRunner) -> Worker:
    config = WorkerConfig(
        database_url=database_url,
        concurrency=2,
        claim_batch_size=2,
        listen_notify=False,
        poll_interval_seconds=0.02,
        shutdown_grace_seconds=1,
    )
    return build_worker(pool, runner, config)


LEASED = "SELECT count(*) FROM steps WHERE status = 'running' AND lease_owner = $1"


async def _until_leased(pool: asyncpg.Pool, worker: Worker, count: int) -> None:
    await _until(pool, f"SELECT ({LEASED}) = $2", worker.worker_id, count)


async def test_a_claim_overlaps_a_write_but_its_steps_wait_for_their_slots(
    pool: asyncpg.Pool, database_url: str
) -> None:
    await _queue_sections(pool)
    runner = CountingRunner()
    worker = _worker(pool, database_url, runner)
    running = asyncio.create_task(worker.run())
    try:
        async with _writes_blocked(database_url):
            # Two steps ran and wait to be written; while that write is in flight, the
            # next two are claimed (leased) but not started: calls stay at two.
            await _until_leased(pool, worker, 4)
            await asyncio.sleep(0.2)
            assert len(runner.calls) == 2, runner.calls
            assert worker.held == 2
            assert await pool.fetchval(LEASED, worker.worker_id) == 4
        await _until(pool, "SELECT status = 'completed' FROM jobs")
    finally:
        worker.hurry()
        await running
    # Each section was run once.
    assert len(runner.calls) == len(set(runner.calls)) == SECTIONS
    assert runner.most_running <= 2
    assert await pool.fetchval("SELECT count(*) FROM steps WHERE attempts <> 1") == 0


async def test_stopping_returns_steps_still_waiting_for_a_slot_to_the_queue(
    pool: asyncpg.Pool, database_url: str
) -> None:
    await _queue_sections(pool)
    runner = CountingRunner()
    worker = _worker(pool, database_url, runner)
    running = asyncio.create_task(worker.run())
    async with _writes_blocked(database_url):
        await _until_leased(pool, worker, 4)
        worker.stop()
        await asyncio.sleep(0.2)
    await asyncio.wait_for(running, 15)
    rows = await pool.fetch("SELECT status, attempts FROM steps ORDER BY position")
    statuses = [r["status"] for r in rows]
    # The two that ran are written; the two that waited are queued again, their attempt
    # not counted (nothing was tried); the last two were never claimed.
    assert statuses.count("done") == 2, statuses
    assert statuses.count("queued") == SECTIONS - 2, statuses
    assert all(r["attempts"] == 0 for r in rows if r["status"] == "queued"), rows
    assert len(runner.calls) == 2
