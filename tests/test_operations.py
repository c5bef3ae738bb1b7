"""Health, readiness and metrics."""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from pydantic import SecretStr

from reportsvc.api import metrics as api_metrics
from reportsvc.api.app import create_app
from reportsvc.db.migrate import head_revision
from reportsvc.embedded import free_port
from reportsvc.llm.fake import FakeLLMThread
from reportsvc.settings import Settings
from tests.conftest import api_client, with_database
from tests.helpers import Stores, make_settings, running_worker, submit, wait_for_job
from tests.processes import cluster


def metric(text: str, name: str, **labels: str) -> float:
    # prometheus_client writes labels in alphabetical order.
    selector = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = (
        rf"^{re.escape(name)}{{{re.escape(selector)}}} (\S+)$" if labels else rf"^{name} (\S+)$"
    )
    match = re.search(pattern, text, re.MULTILINE)
    assert match, f"{name}{{{selector}}} not in metrics"
    return float(match.group(1))


async def test_healthz_and_readyz(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "database": "ok", "schemaRevision": head_revision()}


@pytest.fixture
async def unmigrated_database(postgres_url: str) -> AsyncIterator[str]:
    name = f"reportsvc_empty_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(postgres_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_database(postgres_url, name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def _get(settings: Settings, path: str) -> httpx.Response:
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with app.lifespan(), httpx.AsyncClient(transport=transport, base_url="http://a") as http:
        return await http.get(path)


async def test_readyz_is_503_while_the_schema_is_missing(unmigrated_database: str) -> None:
    response = await _get(make_settings(database_url=unmigrated_database), "/readyz")
    assert response.status_code == 503
    assert response.json()["code"] == "schema_out_of_date"
    assert "reportsvc migrate" in response.json()["error"]


async def test_readyz_is_503_while_the_database_is_unreachable() -> None:
    closed = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
    settings = make_settings(database_url=closed, database_connect_timeout=2)
    response = await _get(settings, "/readyz")
    assert response.status_code == 503
    assert response.json()["code"] == "database_unavailable"


async def test_metrics_show_jobs_queue_and_model_calls(
    client: httpx.AsyncClient,
    stores: Stores,
    settings: Settings,
    fake_llm: FakeLLMThread,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(api_metrics, "METRICS_REFRESH_SECONDS", 0.0)
    before = (await client.get("/metrics")).text
    finished_before = metric_or_zero(before, "reportsvc_jobs_finished_total", status="completed")
    # Model-call metrics are per process, and earlier tests ran workers in this one.
    calls_before = 0.0
    if 'reportsvc_model_call_seconds_count{purpose="section"}' in before:
        calls_before = metric(before, "reportsvc_model_call_seconds_count", purpose="section")
    for _ in range(3):
        await client.post("/reports", json={"topic": "Metrics"})
    text = (await client.get("/metrics")).text
    assert metric(text, "reportsvc_jobs", status="outlining") == 3
    assert metric(text, "reportsvc_queue_ready", step="outline") == 3
    assert metric(text, "reportsvc_queue_ready", step="section") == 0
    assert metric(text, "reportsvc_queue_oldest_ready_seconds", step="outline") >= 0
    async with running_worker(stores, settings):
        job_id = await submit(stores, sections=2)
        await wait_for_job(stores, job_id)
        for job in await stores.reports.list_jobs(statuses=None, limit=10, before=None):
            await wait_for_job(stores, job.id)
    text = (await client.get("/metrics")).text
    assert metric(text, "reportsvc_jobs", status="outlining") == 0
    # Finished jobs are counted by the process that finished them (here, this one's worker).
    finished = metric(text, "reportsvc_jobs_finished_total", status="completed")
    assert finished - finished_before == 4
    assert metric(text, "reportsvc_queue_ready", step="outline") == 0
    calls = metric(text, "reportsvc_model_call_seconds_count", purpose="section")
    assert calls - calls_before == 3 * settings.default_sections + 2
    assert metric(text, "reportsvc_model_tokens_total", model="test-model", type="completion") > 0


def metric_or_zero(text: str, name: str, **labels: str) -> float:
    try:
        return metric(text, name, **labels)
    except (AssertionError, StopIteration, ValueError):
        return 0.0


async def test_metrics_are_a_shared_snapshot_and_can_be_locked(
    settings: Settings, pool: asyncpg.Pool, stores: Stores
) -> None:
    """Scrapes within METRICS_REFRESH_SECONDS share one read of the database: however many
    clients scrape, the database answers once per interval. And METRICS_TOKEN locks it."""
    locked = settings.model_copy(update={"metrics_token": SecretStr("scrape-secret")})
    async with api_client(locked, pool) as client:
        assert (await client.get("/metrics")).status_code == 401
        wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        scraper = {"Authorization": "Bearer scrape-secret"}
        first = await client.get("/metrics", headers=scraper)
        assert first.status_code == 200
        assert first.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        await submit(stores)
        second = (await client.get("/metrics", headers=scraper)).text
        # The job is in the database, not yet in the snapshot.
        assert metric(second, "reportsvc_jobs", status="outlining") == metric(
            first.text, "reportsvc_jobs", status="outlining"
        )


@pytest.mark.slow
async def test_a_worker_serves_its_metrics(
    database_url: str, fake_llm: FakeLLMThread, tmp_path: Path
) -> None:
    port = free_port()
    with cluster(database_url, fake_llm.base_url, tmp_path) as running:
        running.start_api()
        running.start_worker("worker", WORKER_METRICS_PORT=str(port))
        async with httpx.AsyncClient(timeout=10) as http:
            job_id = (await http.post(f"{running.api_url}/reports", json={"topic": "M"})).json()
            for _ in range(200):
                status = (await http.get(f"{running.api_url}/reports/{job_id['jobId']}")).json()
                if status["status"] == "completed":
                    break
                await asyncio.sleep(0.05)
            text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    assert metric(text, "reportsvc_steps_finished_total", step="section", outcome="done") == 6
    assert metric(text, "reportsvc_steps_in_flight") == 0
    assert metric(text, "reportsvc_model_call_seconds_count", purpose="outline") == 1
