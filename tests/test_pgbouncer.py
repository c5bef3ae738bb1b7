"""Behind a real PgBouncer in transaction mode, as an operator would run it.

Debian's PgBouncer 1.18 has no prepared-statement support in transaction mode: a named
statement prepared by one client lands on a server connection that the next transaction
of another client may use. With `DATABASE_POOLER=pgbouncer` the service prepares nothing
by name, keeps no session state, and finds work and progress by polling. Only `jobs.status`
and PostgreSQL's own views are read here; everything else goes through the API.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

from reportsvc.embedded import EmbeddedPostgres
from reportsvc.llm.fake import FakeConfig, FakeLLMThread, Faults
from reportsvc.settings import load_settings
from tests.pgbouncer import pgbouncer
from tests.processes import Cluster, cluster, connections_to, peak_connections, wait_until
from tests.sse import read_events

pytestmark = pytest.mark.slow

BEHIND_PGBOUNCER = {"DATABASE_POOLER": "pgbouncer", "EVENT_POLL_INTERVAL_SECONDS": "0.2"}
SECTIONS = 6  # DEFAULT_SECTIONS in the processes' environment


def problems(output: str) -> list[str]:
    """Lines of a service's log that an operator would have to look at: warnings, errors,
    tracebacks, and anything about prepared statements."""
    found = []
    for line in filter(None, output.splitlines()):
        try:
            record: dict[str, Any] = json.loads(line)
        except ValueError:
            found.append(line)
            continue
        if record.get("level") in ("warning", "error", "critical") or "prepared" in line:
            found.append(line)
    return found


async def post_reports(http: httpx.AsyncClient, count: int, prefix: str) -> list[str]:
    """Posted concurrently, so the API's pool is busy through PgBouncer."""
    responses = await asyncio.gather(
        *(http.post("/reports", json={"topic": f"{prefix} {i}"}) for i in range(count))
    )
    assert [r.status_code for r in responses] == [202] * count, [r.text for r in responses]
    return [r.json()["jobId"] for r in responses]


async def watch(http: httpx.AsyncClient, job_id: str) -> list[tuple[str, dict[str, Any]]]:
    async with http.stream("GET", f"/reports/{job_id}/events") as response:
        assert response.status_code == 200
        return [event async for event in read_events(response)]


async def backends_while_running(direct_url: str, reports: int) -> int:
    """The most server connections PostgreSQL had on this database until `reports` jobs
    completed (our own connection not counted)."""
    conn = await asyncpg.connect(direct_url)
    peak: int = 0
    try:
        async with asyncio.timeout(120):
            while True:
                peak = max(
                    peak,
                    await conn.fetchval(
                        """SELECT count(*) FROM pg_stat_activity
                           WHERE datname = current_database() AND pid <> pg_backend_pid()"""
                    ),
                )
                done = await conn.fetchval("SELECT count(*) FROM jobs WHERE status = 'completed'")
                if done == reports:
                    return int(peak)
                await asyncio.sleep(0.05)
    finally:
        await conn.close()


def assert_quiet(running: Cluster) -> None:
    for service in running.services:
        assert problems(service.output()) == [], f"{service.name}:\n{service.output()[-4000:]}"


async def test_a_batch_of_reports_completes_behind_pgbouncer_with_nothing_logged(
    database_url: str, fake_llm: FakeLLMThread, tmp_path: Path
) -> None:
    fake_llm.configure(
        FakeConfig(outline=Faults(latency=0.1), section=Faults(latency=1.0, jitter=0.5))
    )
    reports = 20
    budget = load_settings(_env_file=None, **BEHIND_PGBOUNCER)
    postgres_port = urlsplit(database_url).port or 5432
    with (
        pgbouncer(database_url, tmp_path / "pgbouncer") as bouncer,
        cluster(
            bouncer.url_for(database_url),
            fake_llm.base_url,
            tmp_path,
            **BEHIND_PGBOUNCER,
            # Three processes share PgBouncer's four server connections on a busy 2-core
            # machine: a 2 s lease could lapse while a heartbeat waits its turn, and its
            # warning is not what this test is about.
            LEASE_SECONDS="10",
        ) as running,
    ):
        services = [
            running.start_api(),
            running.start_worker("worker-1"),
            running.start_worker("worker-2"),
        ]
        async with httpx.AsyncClient(base_url=running.api_url, timeout=30) as http:
            watched = (await post_reports(http, 1, "Watched"))[0]
            stream = asyncio.create_task(watch(http, watched))
            job_ids = [watched, *await post_reports(http, reports - 1, "Pooled")]
            peak, clients = await peak_connections(
                services, bouncer.port, backends_while_running(database_url, reports)
            )
            events = await asyncio.wait_for(stream, 60)
            final = [(await http.get(f"/reports/{job_id}")).json() for job_id in job_ids]
            ready = await http.get("/readyz")
            around = {s.name: connections_to(s.pid, postgres_port) for s in services}
    assert [job["status"] for job in final] == ["completed"] * reports
    assert all(len(job["report"]["sections"]) == SECTIONS for job in final)
    assert ready.status_code == 200
    # The stream saw every step, and was woken by polling while the job ran: without a
    # wake-up it would have seen only the finished job, every event at progress 1.0.
    assert [name for name, _ in events] == ["progress"] * (1 + SECTIONS) + ["completed"]
    assert any(0 < data["progress"] < 1 for name, data in events if name == "progress")
    assert_quiet(running)
    # PostgreSQL saw PgBouncer's server connections, never more than its pool; each
    # process held no more than its own pool to PgBouncer, and nothing went around it.
    assert 0 < peak <= bouncer.pool_size, peak
    assert 0 < clients["api"] <= budget.api_connections, clients
    assert 0 < clients["worker-1"] <= budget.worker_connections, clients
    assert 0 < clients["worker-2"] <= budget.worker_connections, clients
    assert around == dict.fromkeys(around, 0)
    assert "prepared statement" not in bouncer.log()


def migrate(url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": url, **BEHIND_PGBOUNCER, "LOG_FORMAT": "json"}
    return subprocess.run(
        [sys.executable, "-m", "reportsvc", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_a_postgres_restart_behind_pgbouncer_is_survived(
    fake_llm: FakeLLMThread, tmp_path: Path
) -> None:
    try:
        server = EmbeddedPostgres(tmp_path / "pg", durable=False)
        server.start()
    except Exception as exc:  # pragma: no cover - depends on the machine
        pytest.skip(f"cannot run a throwaway PostgreSQL here: {exc}")
    try:
        admin = await asyncpg.connect(server.url)
        await admin.execute("CREATE DATABASE reports")
        await admin.close()
        direct = server.url_for("reports")
        fake_llm.configure(FakeConfig(outline=Faults(latency=0.1), section=Faults(latency=0.5)))
        reports = 8
        with pgbouncer(server.url, tmp_path / "pgbouncer") as bouncer:
            pooled = bouncer.url_for(direct)
            # Migrations run through PgBouncer too (twice: the second finds nothing to do).
            for _ in range(2):
                migrated = migrate(pooled)
                assert migrated.returncode == 0, migrated.stderr + migrated.stdout
            with cluster(pooled, fake_llm.base_url, tmp_path, **BEHIND_PGBOUNCER) as running:
                running.start_api()
                worker = running.start_worker("worker", concurrency=16)
                async with httpx.AsyncClient(base_url=running.api_url, timeout=30) as http:
                    job_ids = await post_reports(http, reports, "Restart")
                    await wait_until(
                        "SELECT count(*) >= 2 FROM jobs WHERE status = 'writing'", direct
                    )
                    await asyncio.to_thread(server.stop)
                    down = await http.get(f"/reports/{job_ids[0]}")
                    assert down.status_code == 503, down.text
                    assert down.json()["code"] == "database_unavailable"
                    assert "retry-after" in down.headers
                    await asyncio.sleep(2)  # the worker keeps trying meanwhile
                    await asyncio.to_thread(server.start)
                    await wait_until(
                        "SELECT count(*) = $1 FROM jobs WHERE status = 'completed'",
                        direct,
                        reports,
                        timeout=90,
                    )
                    assert worker.alive(), worker.output()
                    up = await http.get(f"/reports/{job_ids[0]}")
                    assert up.status_code == 200
                    assert up.json()["status"] == "completed"
                    ready = await http.get("/readyz")
                    assert ready.status_code == 200
    finally:
        server.destroy()
    # What the outage logged is about the outage, never about prepared statements.
    for service in running.services:
        assert "prepared statement" not in service.output()
