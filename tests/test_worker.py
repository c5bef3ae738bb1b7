"""Workers against the stand-in model over real HTTP and a real database."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from uuid import UUID

import asyncpg
import httpx
import pytest

from reportsvc.domain import JobStatus
from reportsvc.llm.fake import FakeConfig, FakeLLMThread, Faults
from reportsvc.settings import Settings
from tests.helpers import (
    Stores,
    make_settings,
    running_worker,
    submit,
    wait_for_job,
    wait_until_calls,
)


async def test_two_workers_share_one_report_and_write_each_section_once(
    stores: Stores, settings: Settings, fake_llm: FakeLLMThread, pool: asyncpg.Pool
) -> None:
    fake_llm.configure(FakeConfig(section=Faults(latency=0.15)))
    job_id = await submit(stores, sections=12)
    async with (
        running_worker(stores, settings, worker_id="worker-a", concurrency=3),
        running_worker(stores, settings, worker_id="worker-b", concurrency=3),
    ):
        job = await wait_for_job(stores, job_id)
    assert job.status == "completed"
    assert job.outline is not None
    assert len(job.outline) == 12
    writers = await pool.fetch(
        "SELECT claimed_by, count(*) FROM steps WHERE job_id = $1 GROUP BY 1", job_id
    )
    assert {r["claimed_by"] for r in writers} == {"worker-a", "worker-b"}
    stats = fake_llm.stats()
    assert stats.calls == {"outline": 1, "section": 12}
    assert sorted(stats.section_calls.values()) == [1] * 12
    attempts = await pool.fetchval("SELECT max(attempts) FROM steps WHERE job_id = $1", job_id)
    assert attempts == 1


async def test_sections_of_one_report_run_concurrently(
    stores: Stores, settings: Settings, fake_llm: FakeLLMThread
) -> None:
    fake_llm.configure(FakeConfig(outline=Faults(latency=0.2), section=Faults(latency=0.3)))
    job_id = await submit(stores, sections=8)
    async with running_worker(stores, settings):
        await wait_for_job(stores, job_id)
    # All eight section calls were at the model at the same moment. (Wall-clock speed is
    # measured by the benchmark, not asserted here.)
    assert fake_llm.stats().max_in_flight >= 8


async def test_progress_only_grows_and_stays_inside_zero_one_while_writing(
    stores: Stores, settings: Settings, fake_llm: FakeLLMThread, client: httpx.AsyncClient
) -> None:
    fake_llm.configure(
        FakeConfig(outline=Faults(latency=0.1), section=Faults(latency=0.05, jitter=0.6))
    )
    job_id = (await client.post("/reports", json={"topic": "Glaciers"})).json()["jobId"]
    seen: list[tuple[str, float]] = []
    async with running_worker(stores, settings):
        while True:
            body = (await client.get(f"/reports/{job_id}")).json()
            seen.append((body["status"], body["progress"]))
            if body["status"] != "processing":
                break
            await asyncio.sleep(0.01)
    progresses = [p for _, p in seen]
    assert progresses == sorted(progresses)
    assert seen[-1] == ("completed", 1.0)
    during = {p for s, p in seen if s == "processing"}
    assert 0.0 in during
    writing = sorted(p for p in during if p > 0)
    assert writing
    assert all(0 < p < 1 for p in writing)
    total = settings.default_sections + 1
    assert {round(p * total) for p in writing} <= set(range(1, total))


async def test_a_failing_model_ends_in_failed_with_a_useful_error(
    stores: Stores, settings: Settings, fake_llm: FakeLLMThread
) -> None:
    fake_llm.configure(FakeConfig(outline=Faults(error_rate=1.0, error_status=500)))
    job_id = await submit(stores)
    async with running_worker(stores, settings):
        job = await wait_for_job(stores, job_id)
    assert job.status == "failed"
    assert job.error is not None
    assert job.error.startswith("The outline could not be written after 3 attempts")
    assert "500" in job.error
    assert fake_llm.stats().calls == {"outline": settings.max_attempts}


async def test_a_rejected_api_key_fails_at_once(
    stores: Stores, settings: Settings, fake_llm: FakeLLMThread
) -> None:
    fake_llm.configure(FakeConfig(outline=Faults(error_rate=1.0, error_status=401)))
    job_id = await submit(stores)
    async with running_worker(stores, settings):
        job = await wait_for_job(stores, job_id)
    assert job.status == "failed"
    assert job.error is not None
    assert "API key" in job.error
    assert "after 1 attempt:" in job.error
    assert fake_llm.stats().calls == {"outline": 1}


async def test_a_failing_section_names_the_section(
    stores: Stores, settings: Settings, fake_llm: FakeLLMThread
) -> None:
    fake_llm.configure(FakeConfig(section=Faults(error_rate=1.0, error_status=503)))
    job_id = await submit(stores, sections=3)
    async with running_worker(stores, settings):
        job = await wait_for_job(stores, job_id)
    assert job.status == "failed"
    assert job.error is not None
    assert job.error.startswith("Section ")
    assert "of 3" in job.error
    assert "503" in job.error


async def test_a_malformed_outline_is_retried(
    stores: Stores, settings: Settings, fake_llm: FakeLLMThread
) -> None:
    fake_llm.configure(FakeConfig(malformed_outline_rate=1.0))
    job_id = await submit(stores)
    async with running_worker(stores, settings):
        await wait_for_job(stores, job_id, statuses=(JobStatus.OUTLINING,), timeout=5)
        while fake_llm.stats().calls.get("outline", 0) < 1:
            await asyncio.sleep(0.01)
        fake_llm.configure(FakeConfig())
        job = await wait_for_job(stores, job_id)
    assert job.status == "completed"
    assert fake_llm.stats().calls["outline"] >= 2


async def test_duplicate_and_excess_titles_are_normalised(
    stores: Stores, settings: Settings, fake_llm: FakeLLMThread
) -> None:
    fake_llm.configure(FakeConfig(duplicate_titles=True, outline_items=40))
    job_id = await submit(stores, sections=5)
    async with running_worker(stores, settings):
        job = await wait_for_job(stores, job_id)
    assert job.status == "completed"
    assert job.outline is not None
    assert len(job.outline) == 5
    assert len({t.casefold() for t in job.outline}) == 5
    assert set(job.done_sections) == set(job.outline)


async def test_an_always_malformed_outline_fails_cleanly(
    stores: Stores, settings: Settings, fake_llm: FakeLLMThread
) -> None:
    fake_llm.configure(FakeConfig(wrong_shape_outline_rate=1.0))
    job_id = await submit(stores)
    async with running_worker(stores, settings):
        job = await wait_for_job(stores, job_id)
    assert job.status == "failed"
    assert job.error is not None
    assert "not JSON of the expected shape" in job.error


async def test_cancel_stops_new_model_calls(
    stores: Stores, settings: Settings, fake_llm: FakeLLMThread, client: httpx.AsyncClient
) -> None:
    fake_llm.configure(FakeConfig(section=Faults(latency=0.4)))
    job_id = (await client.post("/reports", json={"topic": "Comets"})).json()["jobId"]
    async with running_worker(stores, settings, concurrency=2):
        await wait_for_job(stores, UUID(job_id), statuses=(JobStatus.WRITING,))
        # Both slots busy with section calls (0.4 s each): any later call is a new one.
        await wait_until_calls(fake_llm, "section", 2)
        response = await client.delete(f"/reports/{job_id}")
        assert response.status_code == 200
        assert response.json() == {"jobId": job_id, "status": "cancelled"}
        calls_at_cancel = fake_llm.stats().calls.get("section", 0)
        await asyncio.sleep(1.2)
    assert fake_llm.stats().calls.get("section", 0) <= calls_at_cancel
    body = (await client.get(f"/reports/{job_id}")).json()
    assert body["status"] == "cancelled"
    assert "error" in body


async def test_cancelling_a_finished_job_is_409(
    stores: Stores, settings: Settings, fake_llm: FakeLLMThread, client: httpx.AsyncClient
) -> None:
    job_id = (await client.post("/reports", json={"topic": "Comets"})).json()["jobId"]
    async with running_worker(stores, settings):
        await wait_for_job(stores, UUID(job_id))
    response = await client.delete(f"/reports/{job_id}")
    assert response.status_code == 409
    assert response.json()["code"] == "job_finished"


async def test_worker_without_model_configuration_refuses_to_start(database_url: str) -> None:
    from reportsvc.errors import StepError  # noqa: PLC0415
    from reportsvc.llm.client import create_openai_client  # noqa: PLC0415

    settings = make_settings(database_url=database_url, openai_base_url=None)
    with pytest.raises(StepError, match="OPENAI_API_KEY"):
        create_openai_client(settings)


async def test_a_dropped_listen_connection_recovers_and_wakes_the_worker_again(
    stores: Stores, settings: Settings, fake_llm: FakeLLMThread, pool: asyncpg.Pool
) -> None:
    # A 30 s poll interval: within this test, only a NOTIFY can wake the worker.
    settings = settings.model_copy(update={"poll_interval_seconds": 30.0})
    async with running_worker(stores, settings) as worker:
        await until(lambda: worker.listening)
        killed = await pool.fetchval(
            """SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
               WHERE application_name = 'reportsvc-listen' AND datname = current_database()"""
        )
        assert killed == 1
        await until(lambda: not worker.listening)
        await until(lambda: worker.listening)
        job_id = await submit(stores)
        job = await wait_for_job(stores, job_id, timeout=10)
    assert job.status == "completed"


async def test_with_listen_off_workers_find_work_by_polling(
    stores: Stores, settings: Settings, fake_llm: FakeLLMThread
) -> None:
    settings = settings.model_copy(update={"listen_notify": False, "poll_interval_seconds": 0.2})
    async with running_worker(stores, settings) as worker:
        job_id = await submit(stores)
        job = await wait_for_job(stores, job_id)
        assert not worker.listening
    assert job.status == "completed"


async def until(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition never became true"
        await asyncio.sleep(0.01)
