"""Fault injection through the stand-in model: every fault ends in completed or failed."""

from __future__ import annotations

import asyncio
import time
from uuid import UUID

import asyncpg
import httpx

from reportsvc.api.app import create_app
from reportsvc.domain import JobOptions
from reportsvc.embedded import free_port
from reportsvc.llm.fake import FakeConfig, FakeLLMThread, Faults
from reportsvc.settings import Settings
from tests.helpers import Stores, make_settings, running_worker, submit, wait_for_job


async def run_reports(
    stores: Stores, settings: Settings, count: int, *, timeout: float = 30, sections: int = 4
) -> list[UUID]:
    job_ids = [await submit(stores, f"Topic {i}", sections=sections) for i in range(count)]
    async with running_worker(stores, settings):
        for job_id in job_ids:
            await wait_for_job(stores, job_id, timeout=timeout)
    return job_ids


async def job_statuses(pool: asyncpg.Pool) -> dict[str, int]:
    rows = await pool.fetch("SELECT status, count(*) FROM jobs GROUP BY status")
    return {r[0]: r[1] for r in rows}


async def test_a_429_pauses_the_model_and_its_steps_try_again_after_the_pause(
    stores: Stores, database_url: str, fake_llm: FakeLLMThread, pool: asyncpg.Pool
) -> None:
    fake_llm.configure(FakeConfig(section=Faults(fail_first=6, error_status=429, retry_after=0.2)))
    settings = make_settings(
        database_url=database_url, openai_base_url=fake_llm.base_url, openai_max_retries=3
    )
    await run_reports(stores, settings, 2)
    assert await job_statuses(pool) == {"completed": 2}
    stats = fake_llm.stats()
    assert stats.statuses["429"] == 6
    # The SDK did not retry the 429s (each was one call); the steps that got one tried
    # again once the model's pause was over, as a second attempt.
    assert stats.calls["section"] == 2 * 4 + 6
    assert await pool.fetchval("SELECT sum(attempts - 1) FROM steps WHERE kind = 'section'") == 6
    assert await pool.fetchval("SELECT rate_limited FROM model_quotas") == 6


async def test_endless_429s_fail_the_job_with_a_rate_limit_message(
    stores: Stores, settings: Settings, fake_llm: FakeLLMThread
) -> None:
    fake_llm.configure(
        FakeConfig(outline=Faults(error_rate=1.0, error_status=429, retry_after=0.01))
    )
    [job_id] = await run_reports(stores, settings, 1)
    job = await stores.reports.get_job(job_id)
    assert job is not None
    assert job.status == "failed"
    assert job.error is not None
    assert "rate limiting" in job.error


async def test_500s_at_a_rate_are_retried_until_every_report_completes(
    stores: Stores, settings: Settings, fake_llm: FakeLLMThread, pool: asyncpg.Pool
) -> None:
    fake_llm.configure(
        FakeConfig(
            outline=Faults(error_rate=0.3),
            section=Faults(error_rate=0.3),
            seed=7,
        )
    )
    settings = settings.model_copy(update={"max_attempts": 10})
    await run_reports(stores, settings, 8)
    assert await job_statuses(pool) == {"completed": 8}
    assert fake_llm.stats().statuses["500"] > 0
    assert await pool.fetchval("SELECT max(attempts) FROM steps") > 1
    # A retried section still has exactly one result.
    assert await pool.fetchval("SELECT count(*) FROM steps WHERE status <> 'done'") == 0


async def test_hangs_past_the_timeout_are_retried(
    stores: Stores, database_url: str, fake_llm: FakeLLMThread, pool: asyncpg.Pool
) -> None:
    fake_llm.configure(FakeConfig(section=Faults(hang_rate=0.3, hang_seconds=30), seed=3))
    settings = make_settings(
        database_url=database_url,
        openai_base_url=fake_llm.base_url,
        openai_timeout=0.3,
        max_attempts=10,
    )
    await run_reports(stores, settings, 4)
    assert await job_statuses(pool) == {"completed": 4}
    assert await pool.fetchval("SELECT max(attempts) FROM steps") > 1


async def test_a_model_that_always_hangs_fails_the_job_in_bounded_time(
    stores: Stores, database_url: str, fake_llm: FakeLLMThread
) -> None:
    fake_llm.configure(FakeConfig(outline=Faults(hang_rate=1.0, hang_seconds=30)))
    settings = make_settings(
        database_url=database_url, openai_base_url=fake_llm.base_url, openai_timeout=0.2
    )
    [job_id] = await run_reports(stores, settings, 1, timeout=15)
    job = await stores.reports.get_job(job_id)
    assert job is not None
    assert job.status == "failed"
    assert job.error is not None
    assert "did not answer in time" in job.error


async def test_the_step_timeout_bounds_a_call_whatever_the_sdk_does(
    stores: Stores, database_url: str, fake_llm: FakeLLMThread
) -> None:
    fake_llm.configure(FakeConfig(outline=Faults(hang_rate=1.0, hang_seconds=30)))
    settings = make_settings(
        database_url=database_url,
        openai_base_url=fake_llm.base_url,
        openai_timeout=60,
        step_timeout_seconds=0.3,
        max_attempts=2,
    )
    [job_id] = await run_reports(stores, settings, 1, timeout=15)
    job = await stores.reports.get_job(job_id)
    assert job is not None
    assert job.status == "failed"
    assert job.error is not None
    assert "STEP_TIMEOUT_SECONDS" in job.error


async def test_at_a_total_failure_rate_no_job_is_left_processing(
    stores: Stores, settings: Settings, fake_llm: FakeLLMThread, pool: asyncpg.Pool
) -> None:
    fake_llm.configure(FakeConfig(outline=Faults(error_rate=0.5), section=Faults(error_rate=1.0)))
    started = time.monotonic()
    await run_reports(stores, settings, 10, timeout=30)
    assert await job_statuses(pool) == {"failed": 10}
    assert (
        await pool.fetchval("SELECT count(*) FROM steps WHERE status IN ('queued', 'running')") == 0
    )
    # Bounded by attempts and backoff, not by the test's patience.
    assert time.monotonic() - started < 30


async def test_a_job_past_its_deadline_fails_and_its_steps_stop(
    stores: Stores, database_url: str, fake_llm: FakeLLMThread, pool: asyncpg.Pool
) -> None:
    fake_llm.configure(FakeConfig(section=Faults(hang_rate=1.0, hang_seconds=30)))
    settings = make_settings(
        database_url=database_url,
        openai_base_url=fake_llm.base_url,
        job_timeout_seconds=1.0,
        lease_seconds=1.0,
    )
    job_id = await stores.reports.create_job(
        topic="Slow",
        model="m",
        options=JobOptions(sections=3),
        idempotency_key=None,
        timeout_seconds=1.0,
    )
    assert job_id is not None
    async with running_worker(stores, settings) as worker:
        job = await wait_for_job(stores, job_id, timeout=20)
        assert job.status == "failed"
        assert job.error is not None
        assert "deadline" in job.error
        deadline = time.monotonic() + 5
        while worker.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert worker.in_flight == 0
    statuses = await pool.fetch(
        "SELECT status FROM steps WHERE job_id = $1 AND kind = 'section'", job_id
    )
    assert {r[0] for r in statuses} == {"cancelled"}


async def test_empty_sections_are_retried_and_reasoning_is_stripped(
    stores: Stores, settings: Settings, fake_llm: FakeLLMThread, pool: asyncpg.Pool
) -> None:
    fake_llm.configure(
        FakeConfig(section=Faults(fail_first=0, empty_rate=0.4), think_tags=True, seed=1)
    )
    settings = settings.model_copy(update={"max_attempts": 10})
    [job_id] = await run_reports(stores, settings, 1, sections=6)
    job = await stores.reports.get_job(job_id)
    assert job is not None
    assert job.status == "completed"
    assert all("<think>" not in text and text for text in job.done_sections.values())
    # Empty answers were asked for again: at once with a reminder, or in a later attempt.
    calls = fake_llm.stats().calls["section"]
    attempts = await pool.fetchval("SELECT sum(attempts) FROM steps WHERE kind = 'section'")
    assert calls > 6
    assert calls >= attempts


async def test_api_answers_503_when_the_database_is_unreachable(fake_llm: FakeLLMThread) -> None:
    closed = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
    settings = make_settings(database_url=closed, database_connect_timeout=2)
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with (
        app.lifespan(),
        httpx.AsyncClient(transport=transport, base_url="http://api") as http,
    ):
        started = time.monotonic()
        post = await http.post("/reports", json={"topic": "Rome"})
        get = await http.get("/reports/5b8cfda7-4eaa-40bd-9c0e-93bb9d87ac30")
        assert time.monotonic() - started < 5
        health = await http.get("/healthz")
    for response in (post, get):
        assert response.status_code == 503
        assert response.json()["code"] == "database_unavailable"
        assert response.headers["retry-after"] == "2"
    assert health.status_code == 200
