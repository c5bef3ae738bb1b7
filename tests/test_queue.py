"""The queue's state machine, statement by statement, against real PostgreSQL."""

from __future__ import annotations

import asyncio
from uuid import UUID

import asyncpg
import msgspec
import pytest

from reportsvc.domain import JobStatus, Step, StepKind, StepResult, Usage
from reportsvc.queue.outcomes import Done, Failed, Released
from tests.helpers import Stores, submit

LEASE = 30.0


def section(step: Step, text: str) -> Done:
    return Done(step, StepResult(content=text))


async def outline_done(stores: Stores, job_id: UUID, titles: list[str], worker: str = "w1") -> None:
    """Write `job_id`'s outline; give back anything else the claim picked up."""
    steps = (await stores.queue.claim(worker, 1000, LEASE)).steps
    [outline] = [s for s in steps if s.kind is StepKind.OUTLINE and s.job_id == job_id]
    others = [s for s in steps if s is not outline]
    written = await stores.queue.write(worker, [Done(outline, StepResult(titles=titles))])
    assert written.written == 1
    await stores.queue.write(worker, [Released(s, requeue=True) for s in others])


async def claim(stores: Stores, worker: str, limit: int = 100) -> list[Step]:
    return (await stores.queue.claim(worker, limit, LEASE)).steps


async def test_claim_leases_the_outline_step_and_counts_the_attempt(
    stores: Stores, pool: asyncpg.Pool
) -> None:
    job_id = await submit(stores)
    [step] = await claim(stores, "w1", 10)
    assert step.kind is StepKind.OUTLINE
    assert step.job_id == job_id
    assert step.attempt == 1
    assert step.topic == "The Roman Empire"
    row = await pool.fetchrow(
        "SELECT status, lease_owner, lease_expires_at > now() AS live FROM steps"
    )
    assert dict(row) == {"status": "running", "lease_owner": "w1", "live": True}
    assert await pool.fetchval("SELECT status FROM jobs") == JobStatus.OUTLINING
    assert await claim(stores, "w2", 10) == []


async def test_outline_queues_one_section_per_title(stores: Stores) -> None:
    job_id = await submit(stores)
    await outline_done(stores, job_id, ["I. A", "II. B", "III. C"])
    job = await stores.reports.get_job(job_id)
    assert job is not None
    assert job.status is JobStatus.WRITING
    assert job.sections_total == 3
    steps = await claim(stores, "w2")
    assert [(s.kind, s.position, s.title) for s in steps] == [
        (StepKind.SECTION, 0, "I. A"),
        (StepKind.SECTION, 1, "II. B"),
        (StepKind.SECTION, 2, "III. C"),
    ]
    assert all(s.outline == ["I. A", "II. B", "III. C"] for s in steps)


async def test_claim_respects_its_limit_and_prefers_sections(stores: Stores) -> None:
    first = await submit(stores)
    await outline_done(stores, first, ["I. A", "II. B", "III. C"])
    await submit(stores, "Second")
    steps = await claim(stores, "w1", 2)
    assert [s.kind for s in steps] == [StepKind.SECTION, StepKind.SECTION]
    steps = await claim(stores, "w1", 5)
    assert sorted(s.kind for s in steps) == [StepKind.OUTLINE, StepKind.SECTION]


async def test_concurrent_claims_never_hand_out_a_row_twice(stores: Stores) -> None:
    for i in range(5):
        await outline_done(stores, await submit(stores, f"T{i}"), [f"I. S{j}" for j in range(8)])
    batches = await asyncio.gather(*(claim(stores, f"w{i}", 7) for i in range(8)))
    ids = [s.id for batch in batches for s in batch]
    assert len(ids) == 40
    assert len(set(ids)) == 40


async def test_completion_is_fenced_on_owner_and_attempt(stores: Stores) -> None:
    job_id = await submit(stores)
    await outline_done(stores, job_id, ["I. A", "II. B"])
    [a, _] = await claim(stores, "w1")
    stale = msgspec.structs.replace(a, attempt=a.attempt - 1)
    assert (await stores.queue.write("w1", [section(stale, "stale")])).written == 0
    assert (await stores.queue.write("intruder", [section(a, "x")])).written == 0
    assert (await stores.queue.write("w1", [section(a, "real")])).written == 1
    again = await stores.queue.write("w1", [section(a, "twice")])
    assert (again.written, again.lost) == (0, 1)
    job = await stores.reports.get_job(job_id)
    assert job is not None
    assert job.done_sections == {"I. A": "real"}
    assert job.sections_done == 1


async def test_last_section_completes_the_job_in_the_same_statement(stores: Stores) -> None:
    job_id = await submit(stores)
    await outline_done(stores, job_id, ["I. A", "II. B"])
    steps = await claim(stores, "w1")
    written = await stores.queue.write("w1", [section(s, str(s.title).lower()) for s in steps])
    assert written.completed_jobs == [job_id]
    job = await stores.reports.get_job(job_id)
    assert job is not None
    assert job.status is JobStatus.COMPLETED
    assert job.finished_at is not None


async def test_two_workers_finishing_the_last_two_sections_at_once(stores: Stores) -> None:
    """The race that leaves jobs stuck in naive designs: run it many times."""
    for round_ in range(25):
        job_id = await submit(stores, f"race {round_}")
        await outline_done(stores, job_id, ["I. A", "II. B"], worker="planner")
        [a] = await claim(stores, "w1", 1)
        [b] = await claim(stores, "w2", 1)
        results = await asyncio.gather(
            stores.queue.write("w1", [section(a, "a")]),
            stores.queue.write("w2", [section(b, "b")]),
        )
        assert sum(len(r.completed_jobs) for r in results) == 1
        job = await stores.reports.get_job(job_id)
        assert job is not None
        assert (job.status, job.sections_done) == (JobStatus.COMPLETED, 2)


async def test_sections_done_always_matches_the_rows(stores: Stores, pool: asyncpg.Pool) -> None:
    for i in range(3):
        await outline_done(stores, await submit(stores, f"T{i}"), [f"I. S{j}" for j in range(5)])
    steps = await claim(stores, "w1")
    await stores.queue.write("w1", [section(s, "x") for s in steps[::2]])
    mismatches = await pool.fetchval(
        """SELECT count(*) FROM jobs j
           WHERE j.sections_done <> (SELECT count(*) FROM steps s
                                     WHERE s.job_id = j.id AND s.status = 'done'
                                       AND s.kind <> 'outline')"""
    )
    assert mismatches == 0


async def test_a_failed_section_fails_its_job_and_retires_the_rest(
    stores: Stores, pool: asyncpg.Pool
) -> None:
    job_id = await submit(stores)
    await outline_done(stores, job_id, ["I. A", "II. B", "III. C"])
    [a] = await claim(stores, "w1", 1)
    failure = Failed(step=a, reason="the model failed", detail="HTTP 500: /srv/models/x.gguf")
    written = await stores.queue.write("w1", [failure])
    assert written.failed_jobs == [job_id]
    job = await stores.reports.get_job(job_id)
    assert job is not None
    assert job.status is JobStatus.FAILED
    assert job.error == (
        'Section 1 of 3 ("I. A") could not be written after 1 attempt: the model failed'
    )
    assert await claim(stores, "w2") == []
    rows = await pool.fetch(
        "SELECT status, last_error FROM steps WHERE kind = 'section' ORDER BY position"
    )
    assert [r[0] for r in rows] == ["failed", "cancelled", "cancelled"]
    # The detail is for operators (psql), never in what a client reads.
    assert rows[0][1] == "HTTP 500: /srv/models/x.gguf"


async def test_a_failed_outline_fails_its_job(stores: Stores) -> None:
    job_id = await submit(stores)
    [outline] = await claim(stores, "w1")
    await stores.queue.write("w1", [Failed(step=outline, reason="the model refused")])
    job = await stores.reports.get_job(job_id)
    assert job is not None
    assert job.status is JobStatus.FAILED
    assert job.error == "The outline could not be written after 1 attempt: the model refused"


async def test_a_retried_step_waits_out_its_backoff_and_keeps_its_tokens(
    stores: Stores, pool: asyncpg.Pool
) -> None:
    job_id = await submit(stores)
    [outline] = await claim(stores, "w1")
    retry = Failed(step=outline, reason="malformed", retry_in=0.3, usage=Usage(7, 11))
    await stores.queue.write("w1", [retry])
    assert await claim(stores, "w1") == []
    await asyncio.sleep(0.4)
    [again] = await claim(stores, "w1")
    assert again.attempt == 2
    job = await stores.reports.get_job(job_id)
    assert job is not None
    assert (job.prompt_tokens, job.completion_tokens) == (7, 11)
    assert await pool.fetchval("SELECT last_error FROM steps") == "malformed"


async def test_expired_leases_are_rescued_and_fenced(stores: Stores) -> None:
    job_id = await submit(stores)
    await outline_done(stores, job_id, ["I. A"])
    [lost] = (await stores.queue.claim("dead-worker", 1, 0.01)).steps
    assert lost.kind is StepKind.SECTION
    await asyncio.sleep(0.05)
    rescue = await stores.queue.rescue(max_attempts=5, webhook_max_attempts=5)
    assert rescue.requeued == 1
    [again] = await claim(stores, "w2")
    assert again.id == lost.id
    assert again.attempt == lost.attempt + 1
    # The dead worker comes back to life: its write is refused.
    assert (await stores.queue.write("dead-worker", [section(lost, "late")])).written == 0
    ok = await stores.queue.write("w2", [section(again, "ok")])
    assert ok.completed_jobs == [job_id]


async def test_rescue_fails_a_step_that_used_every_attempt(stores: Stores) -> None:
    job_id = await submit(stores)
    await outline_done(stores, job_id, ["I. A", "II. B"])
    for _ in range(2):
        await stores.queue.claim("crashy", 2, 0.01)
        await asyncio.sleep(0.03)
        await stores.queue.rescue(max_attempts=2, webhook_max_attempts=2)
    job = await stores.reports.get_job(job_id)
    assert job is not None
    assert job.status is JobStatus.FAILED
    assert job.error is not None
    assert "stopped responding" in job.error


async def test_rescue_handles_outline_steps_the_same_way(stores: Stores) -> None:
    job_id = await submit(stores)
    await stores.queue.claim("crashy", 1, 0.01)
    await asyncio.sleep(0.03)
    rescue = await stores.queue.rescue(max_attempts=1, webhook_max_attempts=1)
    assert rescue.failed_jobs == [job_id]
    job = await stores.reports.get_job(job_id)
    assert job is not None
    assert job.error == (
        "The outline could not be written after 1 attempt: its worker stopped responding each time"
    )


async def test_release_on_shutdown_requeues_without_counting_the_attempt(
    stores: Stores,
) -> None:
    job_id = await submit(stores)
    await outline_done(stores, job_id, ["I. A"])
    [step] = await claim(stores, "w1")
    await stores.queue.write("w1", [Released(step, requeue=True)])
    [again] = await claim(stores, "w2")
    assert again.attempt == step.attempt


async def test_an_abandoned_step_of_a_retried_job_goes_back_to_the_queue(
    stores: Stores, pool: asyncpg.Pool
) -> None:
    job_id = await submit(stores)
    [outline] = await claim(stores, "w1")
    assert await stores.reports.cancel_job(job_id) is JobStatus.CANCELLED
    retry = await stores.operations.retry_job(job_id, 3600)
    assert retry is not None
    assert retry.status is JobStatus.OUTLINING
    # The worker noticed the cancellation before the retry and abandons its step only now.
    await stores.queue.write("w1", [Released(outline, requeue=False)])
    assert await pool.fetchval("SELECT status FROM steps") == "queued"
    [again] = await claim(stores, "w2")
    assert again.id == outline.id


async def test_cancel_stops_claims_and_reports_status(stores: Stores) -> None:
    job_id = await submit(stores)
    await outline_done(stores, job_id, ["I. A", "II. B"])
    assert await stores.reports.cancel_job(job_id) is JobStatus.CANCELLED
    assert await claim(stores, "w1") == []
    assert await stores.reports.cancel_job(job_id) is JobStatus.CANCELLED
    job = await stores.reports.get_job(job_id)
    assert job is not None
    assert job.status is JobStatus.CANCELLED


async def test_heartbeat_keeps_leases_and_drops_cancelled_jobs(stores: Stores) -> None:
    keep = await submit(stores, "keep")
    drop = await submit(stores, "drop")
    await outline_done(stores, keep, ["I. A"])
    await outline_done(stores, drop, ["I. B"])
    steps = await claim(stores, "w1")
    await stores.reports.cancel_job(drop)
    kept = await stores.queue.extend_leases("w1", steps, LEASE)
    assert kept == {s.id for s in steps if s.job_id == keep}


async def test_the_database_refuses_duplicate_outline_titles(stores: Stores) -> None:
    job_id = await submit(stores)
    with pytest.raises(asyncpg.CheckViolationError, match="distinct"):
        await outline_done(stores, job_id, ["I. Same", "I. Same"])
