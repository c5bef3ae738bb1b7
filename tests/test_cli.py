"""Operator commands, run as the real `reportsvc` command line."""

from __future__ import annotations

import asyncio
import os
import sys
from uuid import UUID

import asyncpg
import pytest

from reportsvc.domain import JobOptions
from reportsvc.llm.fake import FakeConfig, FakeLLMThread, Faults
from reportsvc.settings import Settings
from tests.helpers import Stores, running_worker, submit, wait_for_job


async def reportsvc(database_url: str, *args: str) -> tuple[int, str]:
    env = {**os.environ, "DATABASE_URL": database_url, "LOG_FORMAT": "json"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "reportsvc", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode()


async def finished_job(pool: asyncpg.Pool, status: str, age: str) -> UUID:
    job_id: UUID = await pool.fetchval(
        """INSERT INTO jobs (topic, model, status, outline, sections_total, sections_done,
                             deadline_at, finished_at)
           VALUES ('old', 'm', $1, ARRAY['I. A'], 1, CASE WHEN $1 = 'completed' THEN 1 ELSE 0 END,
                   now(), now() - $2::text::interval)
           RETURNING id""",
        status,
        age,
    )
    await pool.execute(
        """INSERT INTO steps (job_id, kind, position, title, status)
           VALUES ($1, 'outline', 0, NULL, 'done'),
                  ($1, 'section', 0, 'I. A',
                   CASE WHEN $2 = 'completed' THEN 'done' ELSE 'failed' END)""",
        job_id,
        status,
    )
    return job_id


async def test_prune_deletes_only_old_finished_jobs(
    database_url: str, stores: Stores, pool: asyncpg.Pool
) -> None:
    old_done = await finished_job(pool, "completed", "8 days")
    old_failed = await finished_job(pool, "failed", "30 days")
    recent = await finished_job(pool, "completed", "1 day")
    running = await submit(stores)
    code, out = await reportsvc(database_url, "prune", "--older-than", "7d")
    assert code == 0, out
    assert "deleted 2 finished job(s)" in out
    left = {r[0] for r in await pool.fetch("SELECT id FROM jobs")}
    assert left == {recent, running}
    assert not {old_done, old_failed} & left
    orphans = await pool.fetchval(
        """SELECT count(*) FROM steps s
           WHERE NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = s.job_id)"""
    )
    assert orphans == 0


async def test_prune_refuses_a_bad_duration(database_url: str) -> None:
    code, out = await reportsvc(database_url, "prune", "--older-than", "a week")
    assert code == 2
    assert "is not a duration" in out
    code, out = await reportsvc(database_url, "prune", "--older-than", "99999999999d")
    assert code == 2
    assert "longer than a century" in out
    assert "Traceback" not in out


@pytest.mark.parametrize("name", ["", " padded ", "x" * 65, "bell\x07", "new\nline"])
async def test_token_names_are_short_printable_words(database_url: str, name: str) -> None:
    code, out = await reportsvc(database_url, "token", "add", name)
    assert code == 2, out
    assert "printable characters" in out


async def test_retry_requeues_a_failed_jobs_failed_sections(
    database_url: str, stores: Stores, settings: Settings, fake_llm: FakeLLMThread
) -> None:
    fake_llm.configure(FakeConfig(section=Faults(error_rate=1.0, error_status=503)))
    job_id = await submit(stores, sections=3)
    async with running_worker(stores, settings):
        job = await wait_for_job(stores, job_id)
    assert job.status == "failed"
    fake_llm.configure(FakeConfig())
    code, out = await reportsvc(database_url, "retry", str(job_id))
    assert code == 0, out
    assert "re-queued" in out
    async with running_worker(stores, settings):
        job = await wait_for_job(stores, job_id)
    assert job.status == "completed"
    assert job.error is None
    assert len(job.done_sections) == 3


async def test_retry_of_a_failed_outline_starts_over(
    database_url: str, stores: Stores, settings: Settings, fake_llm: FakeLLMThread
) -> None:
    fake_llm.configure(FakeConfig(outline=Faults(error_rate=1.0, error_status=401)))
    job_id = await submit(stores)
    async with running_worker(stores, settings):
        assert (await wait_for_job(stores, job_id)).status == "failed"
    fake_llm.configure(FakeConfig())
    code, out = await reportsvc(database_url, "retry", str(job_id))
    assert code == 0, out
    assert "from its outline step" in out
    async with running_worker(stores, settings):
        assert (await wait_for_job(stores, job_id)).status == "completed"


async def test_retry_and_cancel_refuse_what_they_cannot_do(
    database_url: str, stores: Stores, pool: asyncpg.Pool
) -> None:
    done = await finished_job(pool, "completed", "1 hour")
    code, out = await reportsvc(database_url, "retry", str(done))
    assert code == 1
    assert "only failed or cancelled" in out
    code, out = await reportsvc(database_url, "cancel", str(done))
    assert code == 1
    assert "already completed" in out
    code, out = await reportsvc(database_url, "retry", "not-a-uuid")
    assert code == 2
    code, out = await reportsvc(database_url, "cancel", "5b8cfda7-4eaa-40bd-9c0e-93bb9d87ac30")
    assert code == 1
    assert "no job" in out


async def test_cancel_from_the_command_line(database_url: str, stores: Stores) -> None:
    job_id = await stores.reports.create_job(
        topic="t", model="m", options=JobOptions(sections=2), idempotency_key=None,
        timeout_seconds=60,
    )  # fmt: skip
    code, out = await reportsvc(database_url, "cancel", str(job_id))
    assert code == 0, out
    assert job_id is not None
    job = await stores.reports.get_job(job_id)
    assert job is not None
    assert job.status == "cancelled"


async def test_workers_prune_periodically(
    stores: Stores, settings: Settings, pool: asyncpg.Pool, fake_llm: FakeLLMThread
) -> None:
    old = await finished_job(pool, "completed", "3 days")
    settings = settings.model_copy(update={"prune_after": "2d"})
    async with running_worker(stores, settings, prune_every_seconds=0.1):
        for _ in range(100):
            if not await pool.fetchval("SELECT count(*) FROM jobs WHERE id = $1", old):
                break
            await asyncio.sleep(0.05)
    assert await pool.fetchval("SELECT count(*) FROM jobs WHERE id = $1", old) == 0
