"""GET /reports/{id}/events: Server-Sent Events driven by PostgreSQL notifications."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import httpx
import pytest

from reportsvc.api.app import create_app
from reportsvc.api.events import EventHub, job_events
from reportsvc.llm.fake import FakeConfig, FakeLLMThread, Faults
from reportsvc.queue.notifications import JOB_VERSIONS
from reportsvc.settings import Settings
from tests.conftest import api_client
from tests.helpers import Stores, running_worker, submit, wait_for_job
from tests.processes import cluster
from tests.sse import read_events


async def collect(client: httpx.AsyncClient, url: str) -> list[tuple[str, dict[str, Any]]]:
    async with client.stream("GET", url) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return [event async for event in read_events(response)]


async def test_a_finished_job_replays_its_steps_then_closes(
    client: httpx.AsyncClient, stores: Stores, settings: Settings, fake_llm: FakeLLMThread
) -> None:
    job_id = (await client.post("/reports", json={"topic": "Tides"})).json()["jobId"]
    async with running_worker(stores, settings):
        await wait_for_job(stores, UUID(job_id))
    events = await collect(client, f"/reports/{job_id}/events")
    names = [name for name, _ in events]
    assert names == ["progress"] * (1 + settings.default_sections) + ["completed"]
    outline = events[0][1]
    assert outline["step"] == "outline"
    assert len(outline["outline"]) == settings.default_sections
    assert [e["section"] for _, e in events[1:-1]] == outline["outline"]
    final = events[-1][1]
    assert final["status"] == "completed"
    assert set(final["report"]["sections"]) == set(outline["outline"])


async def test_a_cancelled_job_ends_with_a_cancelled_event(client: httpx.AsyncClient) -> None:
    job_id = (await client.post("/reports", json={"topic": "Tides"})).json()["jobId"]
    await client.delete(f"/reports/{job_id}")
    events = await collect(client, f"/reports/{job_id}/events")
    assert [name for name, _ in events] == ["cancelled"]
    assert events[0][1]["status"] == "cancelled"


async def test_events_of_an_unknown_job_are_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/reports/5b8cfda7-4eaa-40bd-9c0e-93bb9d87ac30/events")
    assert response.status_code == 404
    assert response.json()["code"] == "job_not_found"


@pytest.mark.slow
async def test_events_stream_live_across_api_processes(
    database_url: str, fake_llm: FakeLLMThread, tmp_path: Path
) -> None:
    """Posted to one API process, watched on another: events arrive as steps finish."""
    fake_llm.configure(
        FakeConfig(outline=Faults(latency=0.3), section=Faults(latency=0.2, jitter=0.4))
    )
    with cluster(database_url, fake_llm.base_url, tmp_path, DEFAULT_SECTIONS="4") as running:
        running.start_api()
        posting = running.api_url
        running.start_api()
        watching = running.api_url
        running.start_worker("worker", concurrency=1)
        async with httpx.AsyncClient(timeout=30) as http:
            job_id = (await http.post(f"{posting}/reports", json={"topic": "Live"})).json()["jobId"]
            arrivals: list[tuple[float, str, dict[str, Any]]] = []
            async with http.stream("GET", f"{watching}/reports/{job_id}/events") as response:
                async for name, data in read_events(response):
                    arrivals.append((time.monotonic(), name, data))
    names = [name for _, name, _ in arrivals]
    assert names == ["progress"] * 5 + ["completed"]
    progresses = [data["progress"] for _, name, data in arrivals if name == "progress"]
    assert progresses == sorted(progresses)
    assert progresses[0] == pytest.approx(1 / 5)
    assert progresses[-1] == 1.0 or progresses[-1] == pytest.approx(5 / 5)
    # Live, not buffered: the outline's event came well before the last section's.
    assert arrivals[-2][0] - arrivals[0][0] > 0.3


class CountingPool:
    """The test's pool, recording the job ids of every version poll made through it."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self.polls: list[set[UUID]] = []

    async def fetch(self, query: str, ids: Collection[UUID]) -> list[Any]:
        assert query == JOB_VERSIONS
        self.polls.append(set(ids))
        return list(await self._pool.fetch(query, ids))


async def always() -> bool:
    return True


async def test_without_listen_one_query_per_poll_wakes_every_stream(
    stores: Stores, pool: asyncpg.Pool, settings: Settings, fake_llm: FakeLLMThread
) -> None:
    """No LISTEN anywhere: the streams of three jobs get every step, woken by polls that
    each read all three jobs in one query. The streams' own fallback check is an hour
    away, so nothing else can have woken them."""
    fake_llm.configure(FakeConfig(outline=Faults(latency=0.2), section=Faults(latency=0.5)))
    counting = CountingPool(pool)
    hub = EventHub(listen_url=None, poll_interval=0.1)
    hub.use_pool(counting)
    job_ids = [await submit(stores, f"Polled {i}", sections=3) for i in range(3)]

    async def watch(job_id: UUID) -> list[tuple[str | None, dict[str, Any]]]:
        job = await stores.reports.get_job(job_id)
        assert job is not None
        return [
            (message.event, json.loads(str(message.data)))
            async for message in job_events(
                stores.reports, hub, job, {}, allowed=always, check_seconds=3600
            )
        ]

    try:
        async with running_worker(stores, settings.model_copy(update={"listen_notify": False})):
            streams = await asyncio.wait_for(asyncio.gather(*map(watch, job_ids)), 60)
        polls = len(counting.polls)
        await asyncio.sleep(0.5)  # five poll intervals with nobody watching
        assert len(counting.polls) == polls
    finally:
        await hub.close()
    for events in streams:
        assert [name for name, _ in events] == ["progress"] * 4 + ["completed"]
        assert any(0 < data["progress"] < 1 for name, data in events if name == "progress")
    assert set(job_ids) in counting.polls
    assert all(ids <= set(job_ids) for ids in counting.polls)


async def test_the_api_polls_for_its_streams_behind_pgbouncer(
    stores: Stores, pool: asyncpg.Pool, fake_llm: FakeLLMThread, settings: Settings
) -> None:
    """Behind PgBouncer (no LISTEN), a stream opened before the job runs sees it move: a
    stream woken only by its 15 s fallback check would see the finished job alone, every
    event at progress 1.0."""
    fake_llm.configure(FakeConfig(outline=Faults(latency=0.3), section=Faults(latency=1.0)))
    behind_pooler = settings.model_copy(
        update={"database_pooler": "pgbouncer", "event_poll_interval_seconds": 0.1}
    )
    assert not create_app(behind_pooler, pool=pool).state.services.events.listens
    async with api_client(behind_pooler, pool) as client:
        job_id = (await client.post("/reports", json={"topic": "Polled"})).json()["jobId"]
        stream = asyncio.create_task(collect(client, f"/reports/{job_id}/events"))
        async with running_worker(stores, behind_pooler):
            events = await asyncio.wait_for(stream, 60)
    assert [name for name, _ in events] == ["progress"] * 7 + ["completed"]
    assert any(0 < data["progress"] < 1 for name, data in events if name == "progress")


def test_a_listen_url_beside_pgbouncer_keeps_streams_on_listen(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    beside = settings.model_copy(
        update={"database_pooler": "pgbouncer", "database_listen_url": settings.database_url}
    )
    assert create_app(beside, pool=pool).state.services.events.listens
