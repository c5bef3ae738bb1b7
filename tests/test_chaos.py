"""Process-level chaos: real API and worker processes, killed, stopped and cut off.

The stand-in model runs in the test process (a thread) and is reached over HTTP by the
worker processes; its per-section call counts show exactly which work was done twice.
"""

from __future__ import annotations

import asyncio
import signal
import tempfile
import time
from collections import Counter
from pathlib import Path

import asyncpg
import httpx
import pytest

from reportsvc.db import migrate
from reportsvc.embedded import EmbeddedPostgres
from reportsvc.llm.fake import FakeConfig, FakeLLMThread, Faults
from tests.helpers import wait_until_calls
from tests.processes import CHAOS_ENV, cluster, wait_until

pytestmark = pytest.mark.slow


async def post_reports(api_url: str, count: int, prefix: str) -> list[str]:
    async with httpx.AsyncClient(base_url=api_url, timeout=10) as http:
        responses = [
            await http.post("/reports", json={"topic": f"{prefix} {i}"}) for i in range(count)
        ]
    assert {r.status_code for r in responses} == {202}
    return [r.json()["jobId"] for r in responses]


async def statuses(database_url: str) -> Counter[str]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT status, count(*) FROM jobs GROUP BY status")
    finally:
        await conn.close()
    return Counter({r[0]: r[1] for r in rows})


async def test_sigkill_mid_run_loses_nothing_and_redoes_only_in_flight_work(
    database_url: str, fake_llm: FakeLLMThread, tmp_path: Path
) -> None:
    fake_llm.configure(FakeConfig(outline=Faults(latency=0.05), section=Faults(latency=0.5)))
    reports = 12
    with cluster(database_url, fake_llm.base_url, tmp_path) as running:
        running.start_api()
        victim = running.start_worker("victim", concurrency=6)
        survivor = running.start_worker("survivor", concurrency=6)
        await post_reports(running.api_url, reports, "Chaos")
        owner = f"%:{victim.pid}:%"
        await wait_until(
            """SELECT count(*) >= 3 FROM steps
               WHERE kind = 'section' AND status = 'running' AND lease_owner LIKE $1""",
            database_url,
            owner,
        )
        victim.signal(signal.SIGKILL)
        victim.wait(timeout=5)
        conn = await asyncpg.connect(database_url)
        try:
            orphaned = {
                (r["topic"], r["title"])
                for r in await conn.fetch(
                    """SELECT j.topic, s.title FROM steps s JOIN jobs j ON j.id = s.job_id
                       WHERE s.kind = 'section' AND s.status = 'running'
                         AND s.lease_owner LIKE $1""",
                    owner,
                )
            }
            finished_before = {
                (r["topic"], r["title"])
                for r in await conn.fetch(
                    """SELECT j.topic, s.title FROM steps s JOIN jobs j ON j.id = s.job_id
                       WHERE s.kind = 'section' AND s.status = 'done'"""
                )
            }
        finally:
            await conn.close()
        await wait_until(
            "SELECT count(*) = $1 FROM jobs WHERE status = 'completed'",
            database_url,
            reports,
            timeout=60,
        )
        assert survivor.alive()
    assert await statuses(database_url) == Counter({"completed": reports})
    calls = {tuple(key.split(" :: ")): n for key, n in fake_llm.stats().section_calls.items()}
    total_sections = reports * 6
    assert len(calls) == total_sections
    redone = sum(calls.values()) - total_sections
    # Only the victim's in-flight sections ran twice; nothing it had finished ran again.
    assert orphaned
    assert redone <= len(orphaned)
    assert all(calls[key] == 1 for key in finished_before)
    assert all(calls[key] <= 2 for key in calls)
    assert {key for key, n in calls.items() if n == 2} <= orphaned


async def test_kill_9_redoes_at_most_concurrency_model_calls(
    database_url: str, fake_llm: FakeLLMThread, tmp_path: Path
) -> None:
    """A worker holds a step from its claim until its result is committed, so when it is
    killed, at most `--concurrency` of its model calls have to be made again.

    To make results pile up the way they do when the database is slow, the test holds the
    job rows locked, so the victim's completions wait; a worker that freed a step's slot
    when the model answered would meanwhile go on claiming, calling and holding results
    that the kill then throws away."""
    # Sections hang at first: the victim fills its slots with section calls.
    fake_llm.configure(FakeConfig(section=Faults(hang_rate=1.0, hang_seconds=60)))
    reports, sections, concurrency = 10, 6, 8
    with cluster(database_url, fake_llm.base_url, tmp_path) as running:
        running.start_api()
        victim = running.start_worker("victim", concurrency=concurrency)
        blocker = await asyncpg.connect(database_url)
        try:
            await post_reports(running.api_url, reports, "Bound")
            await wait_until_calls(fake_llm, "section", concurrency)
            # Hold every job row, then let the model answer quickly from now on.
            locked = blocker.transaction()
            await locked.start()
            await blocker.execute("SELECT id FROM jobs FOR UPDATE")
            fake_llm.configure(FakeConfig(section=Faults(latency=0.05)))
            fake_llm.release_hangs()
            await asyncio.sleep(3 * float(CHAOS_ENV["LEASE_SECONDS"]))
            victim.signal(signal.SIGKILL)
            victim.wait(timeout=5)
            # As if its host were gone: its statements waiting on the lock die with it.
            await blocker.execute(
                """SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                   WHERE application_name = 'reportsvc-worker' AND datname = current_database()"""
            )
            await locked.rollback()
        finally:
            await blocker.close()
        calls_by_victim = fake_llm.stats().calls.get("section", 0)
        running.start_worker("survivor", concurrency=concurrency)
        await wait_until(
            "SELECT count(*) = $1 FROM jobs WHERE status = 'completed'",
            database_url,
            reports,
            timeout=60,
        )
    calls = fake_llm.stats().calls
    useful = reports * (1 + sections)
    made = calls.get("outline", 0) + calls.get("section", 0)
    # The victim's calls were all thrown away, and there were no more than its slots.
    assert calls_by_victim == concurrency, calls_by_victim
    assert made == useful + concurrency, calls


async def test_sigterm_during_a_call_releases_rows_for_immediate_reclaim(
    database_url: str, fake_llm: FakeLLMThread, tmp_path: Path
) -> None:
    fake_llm.configure(FakeConfig(section=Faults(hang_rate=1.0, hang_seconds=30)))
    grace = 1.0
    with cluster(database_url, fake_llm.base_url, tmp_path) as running:
        running.start_api()
        worker = running.start_worker("worker", SHUTDOWN_GRACE_SECONDS=str(grace))
        await post_reports(running.api_url, 1, "Shutdown")
        await wait_until(
            "SELECT count(*) = 6 FROM steps WHERE kind = 'section' AND status = 'running'",
            database_url,
        )
        await wait_until_calls(fake_llm, "section", 6)
        started = time.monotonic()
        worker.signal(signal.SIGTERM)
        code = await asyncio.to_thread(worker.wait, 30)
        took = time.monotonic() - started
        assert code == 0, worker.output()
        # The documented bound: the grace period, then at most 5 s to write releases.
        assert took < grace + 5, took
        conn = await asyncpg.connect(database_url)
        try:
            rows = await conn.fetch(
                """SELECT status, attempts, lease_owner, run_after <= now() AS ready
                   FROM steps WHERE kind = 'section'"""
            )
        finally:
            await conn.close()
    assert len(rows) == 6
    for row in rows:
        # Back in the queue, claimable right now, and the interrupted attempt not counted.
        assert dict(row) == {"status": "queued", "attempts": 0, "lease_owner": None, "ready": True}
    assert "releasing unfinished steps" in worker.output()


async def test_a_released_step_is_taken_by_another_worker_at_once(
    database_url: str, fake_llm: FakeLLMThread, tmp_path: Path
) -> None:
    fake_llm.configure(FakeConfig(section=Faults(latency=3.0)))
    with cluster(
        database_url, fake_llm.base_url, tmp_path, SHUTDOWN_GRACE_SECONDS="0.2"
    ) as running:
        running.start_api()
        first = running.start_worker("first")
        await post_reports(running.api_url, 1, "Handover")
        await wait_until_calls(fake_llm, "section", 6)
        second = running.start_worker("second", POLL_INTERVAL_SECONDS="30")
        await asyncio.sleep(1.0)  # let it connect and start listening
        first.signal(signal.SIGTERM)
        assert await asyncio.to_thread(first.wait, 15) == 0
        # NOTIFY wakes the second worker: it takes the steps long before its 30 s poll
        # interval would have. How fast is for the benchmark to say; the bound here only
        # has to be far from the poll interval.
        await wait_until(
            """SELECT count(*) = 6 FROM steps
               WHERE kind = 'section' AND status = 'running' AND lease_owner LIKE $1""",
            database_url,
            f"%:{second.pid}:%",
            timeout=10,
        )


@pytest.fixture
def throwaway_postgres() -> EmbeddedPostgres:
    """A PostgreSQL of this test's own, which it may stop and start. Its data lives in a
    directory of its own, not under pytest's temporary root: another pytest session
    starting meanwhile resets that root's permissions, and the server's unprivileged user
    would lose its way in."""
    try:
        server = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="reportsvc-pg-")), durable=False)
        server.start()
    except Exception as exc:  # pragma: no cover - depends on the machine
        pytest.skip(f"cannot run a throwaway PostgreSQL here: {exc}")
    return server


async def test_postgres_restart_mid_run(
    throwaway_postgres: EmbeddedPostgres, fake_llm: FakeLLMThread, tmp_path: Path
) -> None:
    server = throwaway_postgres
    try:
        admin = await asyncpg.connect(server.url)
        await admin.execute("CREATE DATABASE reports")
        await admin.close()
        url = server.url_for("reports")
        await asyncio.to_thread(migrate.upgrade, url)
        fake_llm.configure(FakeConfig(outline=Faults(latency=0.1), section=Faults(latency=0.4)))
        reports = 8
        with cluster(url, fake_llm.base_url, tmp_path) as running:
            running.start_api()
            worker = running.start_worker("worker", concurrency=16)
            job_ids = await post_reports(running.api_url, reports, "Restart")
            await wait_until(
                "SELECT count(*) >= 5 FROM steps WHERE kind = 'section' AND status = 'done'", url
            )

            await asyncio.to_thread(server.stop)
            async with httpx.AsyncClient(base_url=running.api_url, timeout=10) as http:
                started = time.monotonic()
                down = await http.get(f"/reports/{job_ids[0]}")
                assert time.monotonic() - started < 6  # an answer, not a hang
                assert down.status_code == 503
                assert down.json()["code"] == "database_unavailable"
                assert "retry-after" in down.headers
                await asyncio.sleep(2)  # the worker keeps trying meanwhile
                await asyncio.to_thread(server.start)

                try:
                    await wait_until(
                        "SELECT count(*) = $1 FROM jobs WHERE status = 'completed'",
                        url,
                        reports,
                        timeout=60,
                    )
                except AssertionError:
                    conn = await asyncpg.connect(url)
                    jobs = await conn.fetch("SELECT status, count(*) FROM jobs GROUP BY 1")
                    secs = await conn.fetch(
                        "SELECT status, lease_owner, lease_expires_at < now() AS expired, count(*)"
                        " FROM steps GROUP BY 1, 2, 3"
                    )
                    await conn.close()
                    raise AssertionError(
                        f"{[dict(r) for r in jobs]}\n{[dict(r) for r in secs]}\n"
                        f"{worker.output()[-6000:]}"
                    ) from None
                assert worker.alive(), worker.output()
                up = await http.get(f"/reports/{job_ids[0]}")
                assert up.status_code == 200
                assert up.json()["status"] == "completed"
        assert "database unavailable" in worker.output()
    finally:
        server.destroy()


async def test_a_review_pause_survives_a_worker_kill_and_a_restart(
    database_url: str, fake_llm: FakeLLMThread, tmp_path: Path
) -> None:
    """A job waiting for its outline's review holds nothing: killing every worker (and
    restarting the API) loses nothing, redoes nothing, and the review still goes through."""
    fake_llm.configure(FakeConfig(section=Faults(latency=0.2)))
    with cluster(database_url, fake_llm.base_url, tmp_path) as running:
        running.start_api()
        worker = running.start_worker("worker", concurrency=4)
        async with httpx.AsyncClient(base_url=running.api_url, timeout=10) as http:
            created = await http.post(
                "/reports", json={"topic": "Paused", "sections": 3, "reviewOutline": True}
            )
            assert created.status_code == 202
            job_id = created.json()["jobId"]
        await wait_until(
            "SELECT status = 'awaiting_review' FROM jobs WHERE id = $1", database_url, job_id
        )
        await asyncio.sleep(1.0)  # heartbeats and maintenance passes while it waits
        worker.signal(signal.SIGKILL)
        worker.wait(timeout=5)
        running.services[0].stop()  # the API restarts too
        running.start_api()
        conn = await asyncpg.connect(database_url)
        try:
            held = await conn.fetch(
                """SELECT kind, status, lease_owner FROM steps
                   WHERE job_id = $1 AND (status IN ('queued', 'running')
                                          OR lease_owner IS NOT NULL)""",
                job_id,
            )
        finally:
            await conn.close()
        assert held == []  # nothing leased, nothing waiting for a worker
        running.start_worker("restarted", concurrency=4)
        await asyncio.sleep(1.0)
        async with httpx.AsyncClient(base_url=running.api_url, timeout=10) as http:
            paused = (await http.get(f"/reports/{job_id}")).json()
            assert paused["status"] == "awaiting_review"
            outline = paused["outline"]
            approved = await http.put(f"/reports/{job_id}/outline", json={"outline": outline})
            assert approved.status_code == 200, approved.text
        await wait_until(
            "SELECT status = 'completed' FROM jobs WHERE id = $1", database_url, job_id
        )
    assert fake_llm.stats().calls == {"outline": 1, "section": 3}
