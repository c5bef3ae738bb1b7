"""The connection budget the README promises, measured on real processes under load.

One API process needs at most DATABASE_POOL_SIZE + 1 connections (its pool, and the LISTEN
connection of its event streams), one worker WORKER_POOL_SIZE + 1 (its pool and its
LISTEN). Counted from each process's own sockets, while reports are posted, written and
watched.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from reportsvc.llm.fake import FakeConfig, FakeLLMThread, Faults
from reportsvc.settings import load_settings
from tests.processes import cluster, peak_connections, wait_until
from tests.sse import read_events

pytestmark = pytest.mark.slow

POOLS = {"DATABASE_POOL_SIZE": "3", "WORKER_POOL_SIZE": "2"}


async def test_each_process_stays_within_its_documented_connection_budget(
    database_url: str, fake_llm: FakeLLMThread, tmp_path: Path
) -> None:
    budget = load_settings(_env_file=None, database_url=database_url, **POOLS)
    assert (budget.api_connections, budget.worker_connections) == (4, 3)
    fake_llm.configure(
        FakeConfig(outline=Faults(latency=0.05), section=Faults(latency=0.3, jitter=0.3))
    )
    reports = 30
    port = urlsplit(database_url).port or 5432
    with cluster(database_url, fake_llm.base_url, tmp_path, **POOLS) as running:
        api = running.start_api()
        workers = [running.start_worker(f"worker-{i}", concurrency=32) for i in range(2)]

        async def run() -> list[str]:
            async with httpx.AsyncClient(base_url=running.api_url, timeout=30) as http:
                posted = await asyncio.gather(
                    *(http.post("/reports", json={"topic": f"Budget {i}"}) for i in range(reports))
                )
                assert {r.status_code for r in posted} == {202}
                job_id = posted[0].json()["jobId"]
                async with http.stream("GET", f"/reports/{job_id}/events") as stream:
                    names = [name async for name, _ in read_events(stream)]
                await wait_until(
                    "SELECT count(*) = $1 FROM jobs WHERE status = 'completed'",
                    database_url,
                    reports,
                    timeout=90,
                )
                return names

        names, peaks = await peak_connections([api, *workers], port, run())
    assert names[-1] == "completed"
    # Within the budget, and the budget is what is really used: the pool and a LISTEN.
    assert 2 <= peaks["api"] <= budget.api_connections, peaks
    for worker in workers:
        assert 2 <= peaks[worker.name] <= budget.worker_connections, peaks
