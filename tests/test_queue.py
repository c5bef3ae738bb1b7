"""The queue's state machine, statement by statement, against real PostgreSQL."""

from __future__ import annotations

import asyncio
from uuid import UUID

import asyncpg
import pytest

from reportsvc.domain import OutlineTask, SectionTask
from reportsvc.queue.store import FinishedSection, HeldSection, SectionFailure, Store
from tests.helpers import submit

LEASE = 30.0


async def outline_done(store: Store, job_id: UUID, titles: list[str], worker: str = "w1") -> None:
    """Write `job_id`'s outline; give back anything else the claim picked up."""
    tasks = (await store.claim(worker, 1000, LEASE)).tasks
    others = [t for t in tasks if not (isinstance(t, OutlineTask) and t.job_id == job_id)]
    [task] = [t for t in tasks if t not in others]
    assert await store.complete_outline(worker, job_id, task.attempt, titles)
    for other in others:
        if isinstance(other, SectionTask):
            held = [HeldSection(other.section_id, other.attempt)]
            await store.release_sections(worker, held, "queued")
        else:
            await store.release_outline(worker, other.job_id, other.attempt)


async def sections_of(store: Store, worker: str, limit: int = 100) -> list[SectionTask]:
    tasks = (await store.claim(worker, limit, LEASE)).tasks
    return [t for t in tasks if isinstance(t, SectionTask)]


async def test_claim_leases_the_outline_step_and_counts_the_attempt(store: Store) -> None:
    job_id = await submit(store)
    [task] = (await store.claim("w1", 10, LEASE)).tasks
    assert isinstance(task, OutlineTask)
    assert task.job_id == job_id
    assert task.attempt == 1
    assert task.topic == "The Roman Empire"
    async with store.pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT status, lease_owner, lease_expires_at > now() AS live FROM jobs"
        )
    assert dict(row) == {"status": "outlining", "lease_owner": "w1", "live": True}
    assert (await store.claim("w2", 10, LEASE)).tasks == []


async def test_outline_queues_one_section_per_title(store: Store) -> None:
    job_id = await submit(store)
    await outline_done(store, job_id, ["I. A", "II. B", "III. C"])
    job = await store.get_job(job_id)
    assert job is not None
    assert job.status == "writing"
    assert job.sections_total == 3
    tasks = await sections_of(store, "w2")
    assert [(t.position, t.title) for t in tasks] == [(0, "I. A"), (1, "II. B"), (2, "III. C")]
    assert all(t.outline == ["I. A", "II. B", "III. C"] for t in tasks)


async def test_claim_respects_its_limit_and_prefers_sections(store: Store) -> None:
    first = await submit(store)
    await outline_done(store, first, ["I. A", "II. B", "III. C"])
    await submit(store, "Second")
    tasks = (await store.claim("w1", 2, LEASE)).tasks
    assert [type(t) for t in tasks] == [SectionTask, SectionTask]
    tasks = (await store.claim("w1", 5, LEASE)).tasks
    assert sorted(type(t).__name__ for t in tasks) == ["OutlineTask", "SectionTask"]


async def test_concurrent_claims_never_hand_out_a_row_twice(store: Store) -> None:
    for i in range(5):
        await outline_done(store, await submit(store, f"T{i}"), [f"I. S{j}" for j in range(8)])
    batches = await asyncio.gather(*(sections_of(store, f"w{i}", 7) for i in range(8)))
    ids = [t.section_id for batch in batches for t in batch]
    assert len(ids) == 40
    assert len(set(ids)) == 40


async def test_completion_is_fenced_on_owner_and_attempt(store: Store) -> None:
    job_id = await submit(store)
    await outline_done(store, job_id, ["I. A", "II. B"])
    [a, _] = await sections_of(store, "w1")
    stale_attempt = FinishedSection(a.section_id, a.attempt - 1, "stale")
    completion = await store.complete_sections("w1", [stale_attempt])
    assert completion.written == 0
    completion = await store.complete_sections(
        "intruder", [FinishedSection(a.section_id, a.attempt, "x")]
    )
    assert completion.written == 0
    completion = await store.complete_sections(
        "w1", [FinishedSection(a.section_id, a.attempt, "real")]
    )
    assert completion.written == 1
    again = await store.complete_sections("w1", [FinishedSection(a.section_id, a.attempt, "twice")])
    assert again.written == 0
    job = await store.get_job(job_id)
    assert job is not None
    assert job.done_sections == {"I. A": "real"}
    assert job.sections_done == 1


async def test_last_section_completes_the_job_in_the_same_statement(store: Store) -> None:
    job_id = await submit(store)
    await outline_done(store, job_id, ["I. A", "II. B"])
    tasks = await sections_of(store, "w1")
    completion = await store.complete_sections(
        "w1", [FinishedSection(t.section_id, t.attempt, t.title.lower()) for t in tasks]
    )
    assert completion.completed_jobs == [job_id]
    job = await store.get_job(job_id)
    assert job is not None
    assert job.status == "completed"
    assert job.finished_at is not None


async def test_two_workers_finishing_the_last_two_sections_at_once(store: Store) -> None:
    """The race that leaves jobs stuck in naive designs: run it many times."""
    for round_ in range(25):
        job_id = await submit(store, f"race {round_}")
        await outline_done(store, job_id, ["I. A", "II. B"], worker="planner")
        [a] = await sections_of(store, "w1", 1)
        [b] = await sections_of(store, "w2", 1)
        results = await asyncio.gather(
            store.complete_sections("w1", [FinishedSection(a.section_id, a.attempt, "a")]),
            store.complete_sections("w2", [FinishedSection(b.section_id, b.attempt, "b")]),
        )
        assert sum(len(r.completed_jobs) for r in results) == 1
        job = await store.get_job(job_id)
        assert job is not None
        assert (job.status, job.sections_done) == ("completed", 2)


async def test_sections_done_always_matches_the_rows(store: Store, pool: asyncpg.Pool) -> None:
    for i in range(3):
        await outline_done(store, await submit(store, f"T{i}"), [f"I. S{j}" for j in range(5)])
    tasks = await sections_of(store, "w1")
    await store.complete_sections(
        "w1", [FinishedSection(t.section_id, t.attempt, "x") for t in tasks[::2]]
    )
    mismatches = await pool.fetchval(
        """SELECT count(*) FROM jobs j
           WHERE j.sections_done <> (SELECT count(*) FROM sections s
                                     WHERE s.job_id = j.id AND s.status = 'done')"""
    )
    assert mismatches == 0


async def test_a_failed_section_fails_its_job_and_retires_the_rest(store: Store) -> None:
    job_id = await submit(store)
    await outline_done(store, job_id, ["I. A", "II. B", "III. C"])
    [a] = await sections_of(store, "w1", 1)
    failed = await store.fail_sections("w1", [SectionFailure(a.section_id, a.attempt, "boom")])
    assert failed == [job_id]
    job = await store.get_job(job_id)
    assert job is not None
    assert job.status == "failed"
    assert job.error == 'Section 1 of 3 ("I. A") could not be written after 1 attempt: boom'
    assert await sections_of(store, "w2") == []
    async with store.pool.acquire() as conn:
        statuses = await conn.fetch("SELECT status FROM sections ORDER BY position")
    assert [r[0] for r in statuses] == ["failed", "cancelled", "cancelled"]


async def test_expired_leases_are_rescued_and_fenced(store: Store) -> None:
    job_id = await submit(store)
    await outline_done(store, job_id, ["I. A"])
    [lost] = (await store.claim("dead-worker", 1, 0.01)).tasks
    assert isinstance(lost, SectionTask)
    await asyncio.sleep(0.05)
    rescue = await store.rescue(max_attempts=5)
    assert rescue.requeued == 1
    [again] = await sections_of(store, "w2")
    assert again.section_id == lost.section_id
    assert again.attempt == lost.attempt + 1
    # The dead worker comes back to life: its write is refused.
    late = await store.complete_sections(
        "dead-worker", [FinishedSection(lost.section_id, lost.attempt, "late")]
    )
    assert late.written == 0
    ok = await store.complete_sections(
        "w2", [FinishedSection(again.section_id, again.attempt, "ok")]
    )
    assert ok.completed_jobs == [job_id]


async def test_rescue_fails_a_section_that_used_every_attempt(store: Store) -> None:
    job_id = await submit(store)
    await outline_done(store, job_id, ["I. A", "II. B"])
    for _ in range(2):
        await store.claim("crashy", 2, 0.01)
        await asyncio.sleep(0.03)
        await store.rescue(max_attempts=2)
    job = await store.get_job(job_id)
    assert job is not None
    assert job.status == "failed"
    assert job.error is not None
    assert "stopped responding" in job.error


async def test_release_on_shutdown_requeues_without_counting_the_attempt(store: Store) -> None:
    job_id = await submit(store)
    await outline_done(store, job_id, ["I. A"])
    [task] = await sections_of(store, "w1")
    released = await store.release_sections(
        "w1", [HeldSection(task.section_id, task.attempt)], "queued"
    )
    assert released == 1
    [again] = await sections_of(store, "w2")
    assert again.attempt == task.attempt


async def test_cancel_stops_claims_and_reports_status(store: Store) -> None:
    job_id = await submit(store)
    await outline_done(store, job_id, ["I. A", "II. B"])
    assert await store.cancel_job(job_id) == "cancelled"
    assert await sections_of(store, "w1") == []
    assert await store.cancel_job(job_id) == "cancelled"
    job = await store.get_job(job_id)
    assert job is not None
    assert job.status == "cancelled"


async def test_heartbeat_keeps_leases_and_drops_cancelled_jobs(store: Store) -> None:
    keep = await submit(store, "keep")
    drop = await submit(store, "drop")
    await outline_done(store, keep, ["I. A"])
    await outline_done(store, drop, ["I. B"])
    tasks = await sections_of(store, "w1")
    held = [HeldSection(t.section_id, t.attempt) for t in tasks]
    await store.cancel_job(drop)
    kept, _ = await store.extend_leases("w1", held, [], LEASE)
    assert kept == {t.section_id for t in tasks if t.job_id == keep}


async def test_the_database_refuses_duplicate_outline_titles(store: Store) -> None:
    job_id = await submit(store)
    with pytest.raises(asyncpg.CheckViolationError, match="distinct"):
        await outline_done(store, job_id, ["I. Same", "I. Same"])
