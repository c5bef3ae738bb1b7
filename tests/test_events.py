"""GET /reports/{id}/events: Server-Sent Events driven by PostgreSQL notifications."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest

from reportsvc.llm.fake import FakeConfig, FakeLLMThread, Faults
from reportsvc.settings import Settings
from tests.helpers import Stores, running_worker, wait_for_job
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
