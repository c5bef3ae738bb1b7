"""Webhook deliveries in the queue, statement by statement: created with the job's final
state on every path that ends a job, and run by the same lifecycle as every other step,
except where a delivery must differ (its job has ended; its failing fails nothing)."""

from __future__ import annotations

import asyncio
from uuid import UUID

import asyncpg
import pytest

from reportsvc.domain import JobOptions, JobStatus, Step, StepKind, StepResult, StepStatus
from reportsvc.queue.outcomes import Done, Failed, Outcome, Released
from tests.helpers import Stores, submit
from tests.test_cli import reportsvc
from tests.test_queue import LEASE, claim, outline_done

URL = "https://receiver.example/hooks"


async def submit_with_webhook(stores: Stores, sections: int = 2) -> UUID:
    job_id = await stores.reports.create_job(
        topic="Tea",
        model="m",
        options=JobOptions(sections=sections),
        idempotency_key=None,
        timeout_seconds=3600,
        webhook_url=URL,
    )
    assert job_id is not None
    return job_id


async def deliveries(pool: asyncpg.Pool, job_id: UUID) -> list[tuple[int, str, str]]:
    rows = await pool.fetch(
        """SELECT position, title, status FROM steps
           WHERE job_id = $1 AND kind = 'webhook' ORDER BY position""",
        job_id,
    )
    return [(r[0], r[1], r[2]) for r in rows]


async def write_sections(stores: Stores, job_id: UUID, worker: str = "w1") -> None:
    steps = [s for s in await claim(stores, worker) if s.job_id == job_id]
    await stores.queue.write(worker, [Done(s, StepResult(content="text")) for s in steps])


async def complete(stores: Stores, job_id: UUID) -> None:
    await outline_done(stores, job_id, ["I. A", "II. B"])
    await write_sections(stores, job_id)


async def test_completing_the_last_section_queues_one_delivery(
    stores: Stores, pool: asyncpg.Pool
) -> None:
    job_id = await submit_with_webhook(stores)
    await outline_done(stores, job_id, ["I. A", "II. B"])
    assert await deliveries(pool, job_id) == []
    await write_sections(stores, job_id)
    assert await deliveries(pool, job_id) == [(0, "report.completed", "queued")]
    job = await stores.reports.get_job(job_id)
    assert job is not None
    assert job.status is JobStatus.COMPLETED
    assert job.webhook is not None
    assert (job.webhook.status, job.webhook.attempts) == (StepStatus.QUEUED, 0)


async def test_a_job_without_a_url_gets_no_delivery(stores: Stores, pool: asyncpg.Pool) -> None:
    job_id = await submit(stores, sections=2)
    await complete(stores, job_id)
    assert (await stores.reports.get_job(job_id)).status is JobStatus.COMPLETED  # type: ignore[union-attr]
    assert await pool.fetchval("SELECT count(*) FROM steps WHERE kind = 'webhook'") == 0


async def test_a_failed_step_queues_a_failed_event(stores: Stores, pool: asyncpg.Pool) -> None:
    job_id = await submit_with_webhook(stores)
    [outline] = await claim(stores, "w1")
    written = await stores.queue.write("w1", [Failed(step=outline, reason="refused")])
    assert written.failed_jobs == [job_id]
    assert await deliveries(pool, job_id) == [(0, "report.failed", "queued")]


async def test_the_rescuer_failing_a_job_queues_a_failed_event(
    stores: Stores, pool: asyncpg.Pool
) -> None:
    job_id = await submit_with_webhook(stores)
    await stores.queue.claim("crashy", 1, 0.01)
    await asyncio.sleep(0.05)
    rescue = await stores.queue.rescue(max_attempts=1, webhook_max_attempts=5)
    assert rescue.failed_jobs == [job_id]
    assert await deliveries(pool, job_id) == [(0, "report.failed", "queued")]


async def test_the_deadline_queues_a_failed_event(stores: Stores, pool: asyncpg.Pool) -> None:
    job_id = await submit_with_webhook(stores)
    await pool.execute("UPDATE jobs SET deadline_at = now() - interval '1 second'")
    assert await stores.queue.fail_overdue_jobs(60) == [job_id]
    assert await deliveries(pool, job_id) == [(0, "report.failed", "queued")]


async def test_cancelling_queues_a_cancelled_event(stores: Stores, pool: asyncpg.Pool) -> None:
    job_id = await submit_with_webhook(stores)
    assert await stores.reports.cancel_job(job_id) is JobStatus.CANCELLED
    assert await deliveries(pool, job_id) == [(0, "report.cancelled", "queued")]
    # Cancelling again changes nothing, and queues nothing.
    assert await stores.reports.cancel_job(job_id) is JobStatus.CANCELLED
    assert len(await deliveries(pool, job_id)) == 1


async def test_a_retry_that_completes_at_once_queues_a_completed_event(
    stores: Stores, pool: asyncpg.Pool
) -> None:
    """Every section was written, but the job failed first (here: its deadline); `reportsvc
    retry` completes it at once. Its second ending is a second event."""
    job_id = await submit_with_webhook(stores)
    await outline_done(stores, job_id, ["I. A", "II. B"])
    steps = [s for s in await claim(stores, "w1") if s.job_id == job_id]
    await pool.execute("UPDATE jobs SET deadline_at = now() - interval '1 second'")
    await stores.queue.fail_overdue_jobs(60)
    # The running sections' results still count (the rows are done), but the job has failed.
    await stores.queue.write("w1", [Done(s, StepResult(content="late")) for s in steps])
    retry = await stores.operations.retry_job(job_id, 3600)
    assert retry is not None
    assert retry.status is JobStatus.COMPLETED
    assert await deliveries(pool, job_id) == [
        (0, "report.failed", "queued"),
        (1, "report.completed", "queued"),
    ]


async def test_a_delivery_is_claimed_although_its_job_has_ended(
    stores: Stores, pool: asyncpg.Pool
) -> None:
    job_id = await submit_with_webhook(stores)
    await stores.reports.cancel_job(job_id)
    [step] = await claim(stores, "w1")
    assert step.kind is StepKind.WEBHOOK
    assert step.title == "report.cancelled"
    assert step.delivery is not None
    assert step.delivery.url == URL
    assert step.delivery.event == "report.cancelled"
    assert step.delivery.body is None
    # The heartbeat keeps it: its job's end is what it reports, not a reason to abandon it.
    kept = await stores.queue.extend_leases("w1", [step], LEASE)
    assert kept == {step.id}
    written = await stores.queue.write(
        "w1", [Done(step, StepResult(content="{}", status_code=204))]
    )
    assert written.written == 1
    row = await pool.fetchrow(
        "SELECT status, last_status_code, content FROM steps WHERE id = $1", step.id
    )
    assert dict(row) == {"status": "done", "last_status_code": 204, "content": "{}"}
    job = await stores.reports.get_job(job_id)
    assert job is not None
    assert job.status is JobStatus.CANCELLED


async def test_a_delivery_that_fails_for_good_leaves_its_job_alone(
    stores: Stores, pool: asyncpg.Pool
) -> None:
    job_id = await submit_with_webhook(stores)
    await complete(stores, job_id)
    [step] = await claim(stores, "w1")
    gone = Failed(step=step, reason="the receiver answered 410 Gone", status_code=410)
    written = await stores.queue.write("w1", [gone])
    assert written.failed_jobs == []
    job = await stores.reports.get_job(job_id)
    assert job is not None
    assert job.status is JobStatus.COMPLETED
    assert job.error is None
    assert job.webhook is not None
    assert (job.webhook.status, job.webhook.last_status_code) == (StepStatus.FAILED, 410)
    assert job.webhook.last_error == "the receiver answered 410 Gone"


async def test_a_retried_delivery_keeps_its_status_code_and_waits(
    stores: Stores, pool: asyncpg.Pool
) -> None:
    job_id = await submit_with_webhook(stores)
    await complete(stores, job_id)
    [step] = await claim(stores, "w1")
    retry = Failed(step=step, reason="the receiver answered 503", retry_in=30, status_code=503)
    await stores.queue.write("w1", [retry])
    assert await claim(stores, "w1") == []
    job = await stores.reports.get_job(job_id)
    assert job is not None
    assert job.webhook is not None
    assert job.webhook.status is StepStatus.QUEUED
    assert (job.webhook.attempts, job.webhook.last_status_code) == (1, 503)
    waits = await pool.fetchval("SELECT run_after - now() FROM steps WHERE id = $1", step.id)
    assert waits.total_seconds() > 20


async def test_the_rescuer_gives_a_delivery_its_own_attempt_limit(
    stores: Stores, pool: asyncpg.Pool
) -> None:
    job_id = await submit_with_webhook(stores)
    await stores.reports.cancel_job(job_id)
    for attempt in (1, 2):
        [step] = (await stores.queue.claim("crashy", 10, 0.01)).steps
        assert (step.kind, step.attempt) == (StepKind.WEBHOOK, attempt)
        await asyncio.sleep(0.05)
        # MAX_ATTEMPTS (1) is for the report's steps; the delivery has 2.
        rescue = await stores.queue.rescue(max_attempts=1, webhook_max_attempts=2)
        assert rescue.failed_jobs == []
    assert await deliveries(pool, job_id) == [(0, "report.cancelled", "failed")]
    assert (await stores.reports.get_job(job_id)).status is JobStatus.CANCELLED  # type: ignore[union-attr]


async def test_the_first_attempt_stores_the_body_and_later_attempts_get_it(
    stores: Stores,
) -> None:
    job_id = await submit_with_webhook(stores)
    await stores.reports.cancel_job(job_id)
    [first] = await claim(stores, "w1")
    assert await stores.queue.keep_webhook_body(first, '{"n": 1}') == '{"n": 1}'
    # A second snapshot by the same attempt does not replace the first.
    assert await stores.queue.keep_webhook_body(first, '{"n": 2}') == '{"n": 1}'
    await stores.queue.write("w1", [Failed(step=first, reason="500", retry_in=0)])
    [second] = await claim(stores, "w2")
    assert second.delivery is not None
    assert second.delivery.body == '{"n": 1}'
    # The first attempt's lease is gone: it can store nothing.
    assert await stores.queue.keep_webhook_body(first, '{"n": 3}') is None


async def test_ending_a_retried_job_leaves_its_earlier_delivery_queued(
    stores: Stores, pool: asyncpg.Pool
) -> None:
    """A job fails (its delivery waits for a retry), an operator retries the job, and it is
    cancelled: the first event still goes, and the second is queued beside it."""
    job_id = await submit_with_webhook(stores)
    [outline] = await claim(stores, "w1")
    await stores.queue.write("w1", [Failed(step=outline, reason="refused")])
    [delivery] = await claim(stores, "w1")
    await stores.queue.write("w1", [Failed(step=delivery, reason="503", retry_in=60)])
    assert await stores.operations.retry_job(job_id, 3600) is not None
    # `reportsvc retry` requeued the outline, not the delivery (which is not the job's work).
    assert await deliveries(pool, job_id) == [(0, "report.failed", "queued")]
    assert await stores.reports.cancel_job(job_id) is JobStatus.CANCELLED
    assert await deliveries(pool, job_id) == [
        (0, "report.failed", "queued"),
        (1, "report.cancelled", "queued"),
    ]
    await pool.execute("UPDATE jobs SET status = 'writing' WHERE id = $1", job_id)
    await pool.execute("UPDATE jobs SET deadline_at = now() - interval '1 second'")
    await stores.queue.fail_overdue_jobs(60)
    assert [d[2] for d in await deliveries(pool, job_id)] == ["queued", "queued", "queued"]


async def test_prune_keeps_a_job_whose_delivery_is_pending(
    stores: Stores, pool: asyncpg.Pool
) -> None:
    waiting = await submit_with_webhook(stores)
    await stores.reports.cancel_job(waiting)
    delivered = await submit_with_webhook(stores)
    await stores.reports.cancel_job(delivered)
    steps = await claim(stores, "w1")
    [done] = [s for s in steps if s.job_id == delivered]
    await stores.queue.write("w1", [Done(done, StepResult(content="{}", status_code=200))])
    await stores.queue.write("w1", [Released(s, requeue=True) for s in steps if s is not done])
    await pool.execute("UPDATE jobs SET finished_at = now() - interval '8 days'")
    assert await stores.operations.prune(7 * 86_400) == 1
    assert {r[0] for r in await pool.fetch("SELECT id FROM jobs")} == {waiting}


async def test_webhooks_retry_requeues_a_delivery_that_gave_up(
    stores: Stores, pool: asyncpg.Pool
) -> None:
    job_id = await submit_with_webhook(stores)
    await stores.reports.cancel_job(job_id)
    [step] = await claim(stores, "w1")
    await stores.queue.keep_webhook_body(step, '{"kept": true}')
    await stores.queue.write("w1", [Failed(step=step, reason="gave up", status_code=500)])
    outcome = await stores.operations.retry_webhooks(job_id)
    assert outcome is not None
    assert (outcome.retried, outcome.webhook_url) == (1, URL)
    assert [(d.event, d.status, d.attempts) for d in outcome.deliveries] == [
        ("report.cancelled", StepStatus.QUEUED, 0)
    ]
    [again] = await claim(stores, "w2")
    assert again.id == step.id
    assert again.attempt == 1
    assert again.delivery is not None
    # The same event: its stored body, and a retry window that starts again now.
    assert again.delivery.body == '{"kept": true}'
    assert again.delivery.first_attempt_at > step.delivery.first_attempt_at  # type: ignore[union-attr]
    # Nothing to re-send: no delivery has given up.
    second = await stores.operations.retry_webhooks(job_id)
    assert second is not None
    assert second.retried == 0


async def test_webhooks_retry_of_an_unknown_job(stores: Stores) -> None:
    assert await stores.operations.retry_webhooks(UUID(int=7)) is None


@pytest.mark.parametrize("path", ["complete", "fail", "cancel"])
async def test_one_event_per_ending_even_when_endings_race(
    stores: Stores, pool: asyncpg.Pool, path: str
) -> None:
    """A cancellation racing the job's own end: exactly one of them ends it, and exactly
    one event is queued."""
    job_id = await submit_with_webhook(stores)
    await outline_done(stores, job_id, ["I. A", "II. B"])
    steps: list[Step] = [s for s in await claim(stores, "w1") if s.job_id == job_id]
    outcomes: dict[str, list[Outcome]] = {
        "complete": [Done(s, StepResult(content="t")) for s in steps],
        "fail": [Failed(step=s, reason="x") for s in steps],
        "cancel": [Released(s, requeue=False) for s in steps],
    }
    await asyncio.gather(
        stores.queue.write("w1", outcomes[path]), stores.reports.cancel_job(job_id)
    )
    events = await deliveries(pool, job_id)
    assert len(events) == 1
    status = await pool.fetchval("SELECT status FROM jobs WHERE id = $1", job_id)
    assert events[0][1] == f"report.{status}"


async def test_cancelling_from_the_command_line_queues_a_cancelled_event(
    database_url: str, stores: Stores, pool: asyncpg.Pool
) -> None:
    job_id = await submit_with_webhook(stores)
    code, out = await reportsvc(database_url, "cancel", str(job_id))
    assert code == 0, out
    assert await deliveries(pool, job_id) == [(0, "report.cancelled", "queued")]
