"""Webhook deliveries through real processes that are killed, and a database that restarts:
a delivery is a step, so it survives what every step survives."""

from __future__ import annotations

import asyncio
import shutil
import signal
import tempfile
import time
from pathlib import Path

import asyncpg
import httpx
import pytest

from reportsvc.db import migrate
from reportsvc.embedded import EmbeddedPostgres, free_port
from reportsvc.llm.fake import FakeLLMThread
from tests.processes import cluster, wait_until
from tests.receiver import Receiver, Reply, new_secret, receiving

pytestmark = pytest.mark.slow

SECRET = new_secret()
HOOK_ENV = {
    "WEBHOOK_SECRET": SECRET,
    "WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",
    "WEBHOOK_RETRY_BASE_SECONDS": "0.2",
    "WEBHOOK_RETRY_MAX_SECONDS": "0.5",
    "DEFAULT_SECTIONS": "2",
}


async def post_report(api_url: str, webhook_url: str) -> str:
    async with httpx.AsyncClient(base_url=api_url, timeout=10) as http:
        response = await http.post("/reports", json={"topic": "Tea", "webhookUrl": webhook_url})
    assert response.status_code == 202, response.text
    job_id: str = response.json()["jobId"]
    return job_id


def one_event_verified(receiver: Receiver, job_id: str) -> None:
    assert receiver.received
    assert {r.webhook_id for r in receiver.received} == {f"msg_{job_id.replace('-', '')}_0"}
    assert len({r.body for r in receiver.received}) == 1
    assert all(r.verified_by == (0,) for r in receiver.received)
    assert receiver.received[-1].json()["type"] == "report.completed"


async def test_a_receiver_down_while_the_worker_is_killed_gets_its_delivery_later(
    database_url: str, fake_llm: FakeLLMThread, tmp_path: Path
) -> None:
    port = free_port()  # nothing listens there yet: the receiver is down
    with cluster(database_url, fake_llm.base_url, tmp_path, **HOOK_ENV) as running:
        running.start_api()
        victim = running.start_worker("victim")
        job_id = await post_report(running.api_url, f"http://127.0.0.1:{port}/hooks")
        # The report is written; its delivery fails and is retried, again and again.
        await wait_until(
            "SELECT coalesce(max(attempts), 0) >= 2 FROM steps WHERE kind = 'webhook'",
            database_url,
        )
        victim.signal(signal.SIGKILL)
        victim.wait(timeout=5)
        conn = await asyncpg.connect(database_url)
        try:
            row = await conn.fetchrow("SELECT status, last_error FROM steps WHERE kind = 'webhook'")
        finally:
            await conn.close()
        assert row["status"] in ("queued", "running")
        assert "could not reach the receiver" in row["last_error"]
        with receiving([SECRET], port=port) as receiver:
            running.start_worker("successor")
            await wait_until(
                "SELECT status = 'done' FROM steps WHERE kind = 'webhook'",
                database_url,
                timeout=60,
            )
    one_event_verified(receiver, job_id)


def _throwaway_postgres() -> EmbeddedPostgres:
    """A PostgreSQL of this test's own, in a directory of its own (outside pytest's
    shared temporary tree, which other test runs on the machine clean up)."""
    try:
        directory = Path(tempfile.mkdtemp(prefix="reportsvc-hook-pg-"))
        server = EmbeddedPostgres(directory / "pg", durable=False)
        server.start()
    except Exception as exc:  # pragma: no cover - depends on the machine
        pytest.skip(f"cannot run a throwaway PostgreSQL here: {exc}")
    return server


async def test_postgres_restarting_during_a_delivery_loses_nothing(
    fake_llm: FakeLLMThread, tmp_path: Path
) -> None:
    """The database goes away while the receiver is answering: the worker keeps the
    result and writes it once the database is back."""
    server = _throwaway_postgres()
    try:
        admin = await asyncpg.connect(server.url)
        await admin.execute("CREATE DATABASE reports")
        await admin.close()
        url = server.url_for("reports")
        await asyncio.to_thread(migrate.upgrade, url)
        with (
            receiving([SECRET]) as receiver,
            cluster(url, fake_llm.base_url, tmp_path, **HOOK_ENV) as running,
        ):
            receiver.script(Reply(delay=3.0))
            running.start_api()
            worker = running.start_worker("worker")
            job_id = await post_report(running.api_url, receiver.url())
            deadline = time.monotonic() + 30
            while not receiver.received:
                assert time.monotonic() < deadline, "no delivery arrived"
                await asyncio.sleep(0.02)
            # The receiver is still answering: take the database away meanwhile.
            await asyncio.to_thread(server.stop)
            await asyncio.sleep(4)  # the receiver has answered; nothing can be written
            await asyncio.to_thread(server.start)
            await wait_until(
                "SELECT status = 'done' FROM steps WHERE kind = 'webhook'", url, timeout=60
            )
            assert worker.alive()
        one_event_verified(receiver, job_id)
    finally:
        server.destroy()
        shutil.rmtree(server.data_dir.parent, ignore_errors=True)
