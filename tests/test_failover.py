"""Failover: a primary with a streaming standby; the primary stops mid-run, the standby is
promoted, and every report still completes.

The service is given both hosts in one URL with `target_session_attrs=read-write`, as the
README says: asyncpg tries them in turn and keeps only a server that accepts writes, so
new connections find the new primary once it is promoted. While no primary is up the API
answers 503, never 500. Only `jobs.status` and PostgreSQL's own functions are read here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from reportsvc.db import migrate
from reportsvc.embedded import EmbeddedPostgres
from reportsvc.llm.fake import FakeConfig, FakeLLMThread, Faults
from tests.processes import cluster, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def primary(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    try:
        server = EmbeddedPostgres(tmp_path / "primary", durable=False)
        server.start()
    except Exception as exc:  # pragma: no cover - depends on the machine
        pytest.skip(f"cannot run a throwaway PostgreSQL here: {exc}")
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
async def standby(primary: EmbeddedPostgres, tmp_path: Path) -> AsyncIterator[EmbeddedPostgres]:
    admin = await asyncpg.connect(primary.url)
    try:
        await admin.execute("CREATE DATABASE reports")
    finally:
        await admin.close()
    await asyncio.to_thread(migrate.upgrade, primary.url_for("reports"))
    server = await asyncio.to_thread(primary.standby, tmp_path / "standby")
    try:
        yield server
    finally:
        # Promoted, it is a server of its own: stopped here, or it outlives the test run.
        await asyncio.to_thread(server.destroy)


def read_write_url(*servers: EmbeddedPostgres) -> str:
    hosts = ",".join(f"{server.host}:{server.port}" for server in servers)
    return f"postgresql://postgres@{hosts}/reports?target_session_attrs=read-write"


async def replay_caught_up(primary: EmbeddedPostgres, standby: EmbeddedPostgres) -> None:
    """Wait until the standby has replayed everything the primary has written so far."""
    conn = await asyncpg.connect(primary.url_for("reports"))
    try:
        written = await conn.fetchval("SELECT pg_current_wal_lsn()")
    finally:
        await conn.close()
    await wait_until(
        "SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn", standby.url_for("reports"), written
    )


async def assert_unavailable(http: httpx.AsyncClient, job_id: str) -> None:
    """No primary: every endpoint that needs the database answers 503 with Retry-After."""
    answers = [
        await http.get(f"/reports/{job_id}"),
        await http.post("/reports", json={"topic": "During the failover"}),
        await http.get("/readyz"),
    ]
    for answer in answers:
        assert answer.status_code == 503, answer.text
        assert answer.json()["code"] == "database_unavailable"
        assert "retry-after" in answer.headers


async def test_every_report_completes_across_a_failover(
    primary: EmbeddedPostgres, standby: EmbeddedPostgres, fake_llm: FakeLLMThread, tmp_path: Path
) -> None:
    await asyncio.to_thread(standby.start)
    fake_llm.configure(FakeConfig(outline=Faults(latency=0.1), section=Faults(latency=0.5)))
    reports = 40
    url = read_write_url(primary, standby)
    with cluster(url, fake_llm.base_url, tmp_path) as running:
        running.start_api()
        api_url = running.api_url
        # Pointed at the standby alone, an API never finds a server that takes writes.
        running.start_api("api-on-standby", DATABASE_URL=read_write_url(standby))
        standby_api_url = running.api_url
        workers = [running.start_worker(f"worker-{i}", concurrency=16) for i in range(2)]
        async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
            posted = [
                await http.post("/reports", json={"topic": f"Failover {i}"}) for i in range(reports)
            ]
            assert {r.status_code for r in posted} == {202}
            job_ids = [r.json()["jobId"] for r in posted]
            async with httpx.AsyncClient(base_url=standby_api_url, timeout=30) as on_standby:
                await assert_unavailable(on_standby, job_ids[0])
            await wait_until(
                "SELECT count(*) >= 3 FROM jobs WHERE status = 'writing'",
                primary.url_for("reports"),
            )
            # Every accepted job has reached the standby (replication is asynchronous: what
            # the primary wrote in its last moments may be lost, and is redone).
            await replay_caught_up(primary, standby)

            await asyncio.to_thread(primary.stop, "immediate")
            await assert_unavailable(http, job_ids[0])
            await asyncio.sleep(1)  # workers keep retrying meanwhile
            await asyncio.to_thread(standby.promote)

            await wait_until(
                "SELECT count(*) = $1 FROM jobs WHERE status = 'completed'",
                standby.url_for("reports"),
                reports,
                timeout=120,
            )
            final = [(await http.get(f"/reports/{job_id}")).json()["status"] for job_id in job_ids]
            ready = await http.get("/readyz")
        assert all(worker.alive() for worker in workers)
    assert final == ["completed"] * reports
    assert ready.status_code == 200
    for service in running.services:
        assert "internal_error" not in service.output()
        assert '"level": "error"' not in service.output(), service.output()[-4000:]
