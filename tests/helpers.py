"""Shared test helpers: settings for tests, a worker running in the background, waiting."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, NamedTuple
from uuid import UUID

import asyncpg
import httpx
import msgspec

from reportsvc.domain import JobOptions, JobStatus, StepRunner
from reportsvc.llm.fake import FakeLLMThread
from reportsvc.queue.notifications import Publisher
from reportsvc.queue.operations import OperationsStore
from reportsvc.queue.reports import JobRow, ReportStore
from reportsvc.queue.sources import PassageSearch
from reportsvc.queue.steps import StepQueue
from reportsvc.queue.tokens import TokenStore
from reportsvc.runtime import model_client, report_pipeline, worker_config
from reportsvc.settings import Settings
from reportsvc.worker import Worker

# Fast timings, so retries and lease expiry happen within a test's patience.
FAST: dict[str, object] = {
    "lease_seconds": 2.0,
    "retry_base_seconds": 0.05,
    "retry_max_seconds": 0.2,
    "rescue_interval_seconds": 0.2,
    "poll_interval_seconds": 0.2,
    "openai_max_retries": 0,
    "openai_timeout": 5.0,
    "shutdown_grace_seconds": 2.0,
    "max_attempts": 3,
}


class Stores(NamedTuple):
    """Every store, as the API, the workers and the operators' commands use them."""

    reports: ReportStore
    queue: StepQueue
    operations: OperationsStore
    tokens: TokenStore

    @classmethod
    def on(cls, pool: asyncpg.Pool, publisher: Publisher) -> Stores:
        return cls(
            ReportStore(pool, publisher),
            StepQueue(pool, publisher),
            OperationsStore(pool, publisher),
            TokenStore(pool),
        )


def make_settings(**overrides: object) -> Settings:
    values = {"openai_api_key": None, **FAST, **overrides}
    return Settings(_env_file=None, **values)  # type: ignore[call-arg, arg-type]


@asynccontextmanager
async def running_worker(
    stores: Stores,
    settings: Settings,
    *,
    runner: StepRunner | None = None,
    worker_id: str | None = None,
    concurrency: int | None = None,
    **config: object,
) -> AsyncIterator[Worker]:
    """A worker on the test's event loop; `config` overrides WorkerConfig fields. Its model
    calls share the quota in the database, as a worker process's do."""
    model = await model_client(settings, stores.queue.pool)
    worker = Worker(
        stores.queue,
        stores.operations,
        runner or report_pipeline(settings, model, passages=PassageSearch(stores.queue.pool)),
        msgspec.structs.replace(worker_config(settings, concurrency=concurrency), **config),
        worker_id=worker_id,
    )
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.hurry()
        await asyncio.wait_for(task, timeout=20)
        await model.close()


TERMINAL = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


async def wait_for_job(
    stores: Stores,
    job_id: UUID,
    *,
    timeout: float = 20.0,
    statuses: tuple[JobStatus, ...] = TERMINAL,
) -> JobRow:
    deadline = time.monotonic() + timeout
    while True:
        job = await stores.reports.get_job(job_id)
        assert job is not None
        if job.status in statuses:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job.status} after {timeout} s")
        await asyncio.sleep(0.02)


async def run_report(
    client: httpx.AsyncClient, stores: Stores, settings: Settings, body: dict[str, Any]
) -> dict[str, Any]:
    """POST a report, run a worker until the job ends, and GET it."""
    response = await client.post("/reports", json=body)
    assert response.status_code == 202, response.text
    job_id = response.json()["jobId"]
    async with running_worker(stores, settings):
        await wait_for_job(stores, UUID(job_id))
    result: dict[str, Any] = (await client.get(f"/reports/{job_id}")).json()
    return result


async def submit(stores: Stores, topic: str = "The Roman Empire", sections: int = 4) -> UUID:
    job_id = await stores.reports.create_job(
        topic=topic,
        model="test-model",
        options=JobOptions(sections=sections),
        idempotency_key=None,
        timeout_seconds=3600,
    )
    assert job_id is not None
    return job_id


async def wait_until_calls(fake: FakeLLMThread, kind: str, count: int) -> None:
    """Until the stand-in model has received `count` calls of `kind` (20 s at most)."""
    deadline = time.monotonic() + 20
    while fake.stats().calls.get(kind, 0) < count:
        assert time.monotonic() < deadline, fake.stats()
        await asyncio.sleep(0.05)
