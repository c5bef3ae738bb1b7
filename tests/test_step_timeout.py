"""STEP_TIMEOUT_SECONDS: a step running past it is stopped by the worker's timeout sweep,
counted as a failed attempt and retried, and its slot goes to the next step."""

from __future__ import annotations

import asyncio

import asyncpg

from reportsvc.domain import Step, StepKind, StepResult
from reportsvc.runtime import build_worker
from reportsvc.worker import WorkerConfig

SECTIONS = 3


class FirstCallHangs:
    """The first section call never answers (until cancelled); every other one answers."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []
        self.cancelled: list[int] = []

    async def run(self, step: Step) -> StepResult:
        assert step.kind is StepKind.SECTION
        self.calls.append((step.id, step.attempt))
        if len(self.calls) == 1:
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                self.cancelled.append(step.id)
                raise
        return StepResult(content=f"text of {step.title}")


async def test_a_step_past_its_timeout_is_stopped_retried_and_frees_its_slot(
    pool: asyncpg.Pool, database_url: str
) -> None:
    job_id = await pool.fetchval(
        """WITH job AS (
               INSERT INTO jobs (topic, status, model, options, outline, sections_total,
                                 deadline_at)
               VALUES ('Timeouts', 'writing', 'm', jsonb_build_object('sections', $1::int),
                       ARRAY(SELECT i::text FROM generate_series(1, $1) i), $1,
                       now() + interval '1 hour')
               RETURNING id
           ), queued AS (
               INSERT INTO steps (job_id, kind, position, title)
               SELECT job.id, 'section', i - 1, i::text FROM job, generate_series(1, $1) i
           )
           SELECT id FROM job""",
        SECTIONS,
    )
    runner = FirstCallHangs()
    config = WorkerConfig(
        database_url=database_url,
        concurrency=1,  # the hung step holds the only slot until it is stopped
        claim_batch_size=1,
        listen_notify=False,
        poll_interval_seconds=0.02,
        step_timeout_seconds=0.3,
        retry_base_seconds=0.01,
        retry_max_seconds=0.01,
        max_attempts=2,
    )
    worker = build_worker(pool, runner, config)
    running = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(15):
            while await pool.fetchval("SELECT status FROM jobs WHERE id = $1", job_id) != (
                "completed"
            ):
                await asyncio.sleep(0.02)
    finally:
        worker.hurry()
        await running
    hung = runner.calls[0][0]
    assert runner.cancelled == [hung]
    # The hung step was tried again (its first attempt counted) and then written.
    assert (hung, 2) in runner.calls
    row = await pool.fetchrow("SELECT status, attempts, content FROM steps WHERE id = $1", hung)
    assert row is not None
    assert (row["status"], row["attempts"]) == ("done", 2)
    assert row["content"].startswith("text of ")
    others = await pool.fetch("SELECT attempts FROM steps WHERE id <> $1", hung)
    assert [r["attempts"] for r in others] == [1] * (SECTIONS - 1)
