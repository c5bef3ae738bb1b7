"""Webhook deliveries end to end: the API takes a webhookUrl, a worker writes the report
and delivers its ending to a real HTTP receiver, which verifies every signature with the
`standardwebhooks` library as a client of the service would."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

import asyncpg
import httpx
import pytest
from aiohttp import ThreadedResolver
from aiohttp.abc import AbstractResolver, ResolveResult
from prometheus_client import REGISTRY
from pydantic import SecretStr

from reportsvc import failures
from reportsvc.domain import JobOptions
from reportsvc.llm.client import OpenAIChatModel, create_openai_client
from reportsvc.llm.fake import FakeConfig, FakeLLMThread, Faults
from reportsvc.runtime import report_pipeline, webhook_config
from reportsvc.settings import Settings
from reportsvc.webhooks.sender import WebhookSender
from reportsvc.worker import Worker
from tests.conftest import api_client
from tests.helpers import Stores, running_worker
from tests.receiver import Reply, new_secret, receiving
from tests.test_cli import reportsvc

SECRET = new_secret()


@pytest.fixture
def hook_settings(settings: Settings) -> Settings:
    """Webhooks on, to receivers on this machine, with quick retries."""
    return settings.model_copy(
        update={
            "webhook_secret": [SecretStr(SECRET)],
            "webhook_allow_private_networks": True,
            "webhook_timeout_seconds": 2.0,
            "webhook_retry_base_seconds": 0.05,
            "webhook_retry_max_seconds": 0.2,
        }
    )


@pytest.fixture
async def hook_client(
    hook_settings: Settings, pool: asyncpg.Pool
) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(hook_settings, pool) as client:
        yield client


class Names(AbstractResolver):
    """Resolves the names it is given, as a DNS server of the test's own would; other
    names as the system does."""

    def __init__(self, names: dict[str, str]) -> None:
        self._names = names
        self._system = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host not in self._names:
            return await self._system.resolve(host, port, family)
        return [
            ResolveResult(
                hostname=host,
                host=self._names[host],
                port=port,
                family=socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
        ]

    async def close(self) -> None:
        await self._system.close()


@asynccontextmanager
async def delivering(
    stores: Stores, settings: Settings, resolver: AbstractResolver | None = None
) -> AsyncIterator[Worker]:
    """A worker that writes reports and delivers webhooks, as `reportsvc worker` does."""
    model = OpenAIChatModel(create_openai_client(settings))
    sender = WebhookSender(
        stores.queue, stores.reports, webhook_config(settings), resolver=resolver
    )
    runner = report_pipeline(settings, model, deliveries=sender)
    try:
        async with running_worker(stores, settings, runner=runner) as worker:
            yield worker
    finally:
        await sender.close()
        await model.close()


async def post(client: httpx.AsyncClient, url: str, **fields: Any) -> UUID:
    response = await client.post(
        "/reports", json={"topic": "Tea", "sections": 2, "webhookUrl": url, **fields}
    )
    assert response.status_code == 202, response.text
    return UUID(response.json()["jobId"])


async def webhook_ends(
    client: httpx.AsyncClient, job_id: UUID, *, timeout: float = 30.0
) -> dict[str, Any]:
    """The job as GET shows it once its latest delivery was delivered or given up."""
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = (await client.get(f"/reports/{job_id}")).json()
        if job.get("webhook", {}).get("status") in ("delivered", "failed"):
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"webhook not finished: {job.get('webhook')}")
        await asyncio.sleep(0.05)


def deliveries_counted(outcome: str) -> float:
    value = REGISTRY.get_sample_value("reportsvc_webhook_deliveries_total", {"outcome": outcome})
    return value or 0.0


async def test_a_completed_report_is_delivered_once_signed_with_its_job_as_data(
    hook_client: httpx.AsyncClient, stores: Stores, hook_settings: Settings
) -> None:
    delivered_before = deliveries_counted("delivered")
    with receiving([SECRET]) as receiver:
        job_id = await post(hook_client, receiver.url())
        pending = (await hook_client.get(f"/reports/{job_id}")).json()
        assert pending["webhook"] == {"url": receiver.url(), "status": "pending", "attempts": 0}
        async with delivering(stores, hook_settings):
            job = await webhook_ends(hook_client, job_id)
        await asyncio.sleep(0.3)  # nothing else arrives
    assert job["status"] == "completed"
    assert job["webhook"] == {
        "url": receiver.url(),
        "status": "delivered",
        "attempts": 1,
        "lastStatusCode": 200,
    }
    [delivery] = receiver.received
    assert delivery.verified_by == (0,)
    assert delivery.path == "/hooks"
    assert delivery.headers["content-type"] == "application/json"
    assert delivery.headers["user-agent"].startswith("reportsvc-webhooks/")
    assert delivery.webhook_id == f"msg_{job_id.hex}_0"
    event = delivery.json()
    assert event["type"] == "report.completed"
    # The event's time is the job's end; its data is the job as GET shows it.
    assert event["timestamp"] == job["finishedAt"]
    assert event["data"] == {k: v for k, v in job.items() if k != "webhook"}
    assert deliveries_counted("delivered") == delivered_before + 1


async def test_500_twice_then_200_is_three_attempts_of_one_event(
    hook_client: httpx.AsyncClient, stores: Stores, hook_settings: Settings
) -> None:
    retrying_before = deliveries_counted("retrying")
    with receiving([SECRET]) as receiver:
        receiver.script(Reply(500), Reply(500))
        job_id = await post(hook_client, receiver.url())
        async with delivering(stores, hook_settings):
            job = await webhook_ends(hook_client, job_id)
    assert job["webhook"]["status"] == "delivered"
    assert job["webhook"]["attempts"] == 3
    assert job["webhook"]["lastStatusCode"] == 200
    assert "lastError" not in job["webhook"]
    assert len(receiver.received) == 3
    assert {r.webhook_id for r in receiver.received} == {f"msg_{job_id.hex}_0"}
    assert len({r.body for r in receiver.received}) == 1
    assert all(r.verified_by == (0,) for r in receiver.received)
    assert deliveries_counted("retrying") == retrying_before + 2


async def test_410_gone_stops_the_delivery_and_not_the_job(
    hook_client: httpx.AsyncClient, stores: Stores, hook_settings: Settings
) -> None:
    with receiving([SECRET]) as receiver:
        receiver.script(Reply(410), Reply(500), Reply(500))
        job_id = await post(hook_client, receiver.url())
        async with delivering(stores, hook_settings):
            job = await webhook_ends(hook_client, job_id)
            await asyncio.sleep(0.5)  # no retry follows
    assert job["status"] == "completed"
    assert job["webhook"]["status"] == "failed"
    assert job["webhook"]["lastStatusCode"] == 410
    assert job["webhook"]["lastError"] == failures.WEBHOOK_GONE
    assert len(receiver.received) == 1


async def test_a_slow_receiver_times_out_and_is_retried(
    hook_client: httpx.AsyncClient, stores: Stores, hook_settings: Settings
) -> None:
    settings = hook_settings.model_copy(update={"webhook_timeout_seconds": 0.5})
    with receiving([SECRET]) as receiver:
        receiver.script(Reply(delay=2.0))
        job_id = await post(hook_client, receiver.url())
        async with delivering(stores, settings):
            job = await webhook_ends(hook_client, job_id)
    assert job["webhook"]["status"] == "delivered"
    assert job["webhook"]["attempts"] == 2
    assert len(receiver.received) == 2
    assert receiver.received[0].webhook_id == receiver.received[1].webhook_id
    assert receiver.received[0].body == receiver.received[1].body


async def test_retry_after_is_honoured(
    hook_client: httpx.AsyncClient, stores: Stores, hook_settings: Settings
) -> None:
    with receiving([SECRET]) as receiver:
        receiver.script(Reply(503, headers={"Retry-After": "1"}))
        job_id = await post(hook_client, receiver.url())
        async with delivering(stores, hook_settings):
            job = await webhook_ends(hook_client, job_id)
    assert job["webhook"]["status"] == "delivered"
    first, second = receiver.received
    # The backoff alone would be 0.05 s; the receiver asked for a second.
    assert second.at - first.at >= 1.0


async def test_failed_and_cancelled_reports_are_delivered_too(
    hook_client: httpx.AsyncClient,
    stores: Stores,
    hook_settings: Settings,
    fake_llm: FakeLLMThread,
    pool: asyncpg.Pool,
) -> None:
    with receiving([SECRET]) as receiver:
        # The model refuses the key: the job fails at once.
        fake_llm.configure(FakeConfig(outline=Faults(error_rate=1.0, error_status=401)))
        failed = await post(hook_client, receiver.url("/failed"))
        async with delivering(stores, hook_settings):
            failed_job = await webhook_ends(hook_client, failed)
            fake_llm.configure(FakeConfig(outline=Faults(hang_rate=1.0, hang_seconds=30)))
            cancelled = await post(hook_client, receiver.url("/cancelled"))
            assert (await hook_client.delete(f"/reports/{cancelled}")).status_code == 200
            cancelled_job = await webhook_ends(hook_client, cancelled)
            fake_llm.release_hangs()
    events = {r.path: r.json() for r in receiver.received}
    assert events["/failed"]["type"] == "report.failed"
    assert events["/failed"]["data"]["status"] == "failed"
    assert events["/failed"]["data"]["error"] == failed_job["error"]
    assert events["/cancelled"]["type"] == "report.cancelled"
    assert events["/cancelled"]["data"]["status"] == "cancelled"
    assert cancelled_job["webhook"]["status"] == "delivered"
    assert all(r.verified_by == (0,) for r in receiver.received)
    # The failed outline step keeps the model service's answer, for operators.
    status_code = await pool.fetchval(
        "SELECT last_status_code FROM steps WHERE job_id = $1 AND kind = 'outline'", failed
    )
    assert status_code == 401


async def test_every_secret_signs_so_receivers_can_rotate(
    pool: asyncpg.Pool, stores: Stores, hook_settings: Settings
) -> None:
    old, new = SECRET, new_secret()
    settings = hook_settings.model_copy(update={"webhook_secret": [SecretStr(new), SecretStr(old)]})
    with receiving([old, new]) as receiver:
        async with api_client(settings, pool) as client:
            job_id = await post(client, receiver.url())
            async with delivering(stores, settings):
                await webhook_ends(client, job_id)
    [delivery] = receiver.received
    assert delivery.verified_by == (0, 1)
    assert len(delivery.headers["webhook-signature"].split(" ")) == 2


async def test_a_delivery_gives_up_after_its_window_and_webhooks_retry_sends_it_again(
    hook_client: httpx.AsyncClient,
    stores: Stores,
    hook_settings: Settings,
    database_url: str,
) -> None:
    settings = hook_settings.model_copy(update={"webhook_retry_for": "1s"})
    with receiving([SECRET]) as receiver:
        receiver.script(*[Reply(500)] * 1000)
        job_id = await post(hook_client, receiver.url())
        async with delivering(stores, settings):
            gave_up = await webhook_ends(hook_client, job_id)
            assert gave_up["webhook"]["status"] == "failed"
            assert "gave up after" in gave_up["webhook"]["lastError"]
            assert gave_up["webhook"]["lastStatusCode"] == 500
            tries = len(receiver.received)
            receiver.unscript()
            code, out = await reportsvc(database_url, "webhooks", "retry", str(job_id))
            assert code == 0, out
            assert "1 delivery(ies) queued again" in out
            again = await webhook_ends(hook_client, job_id)
    assert again["webhook"]["status"] == "delivered"
    assert len(receiver.received) == tries + 1
    assert len({r.webhook_id for r in receiver.received}) == 1
    assert len({r.body for r in receiver.received}) == 1


async def test_webhooks_retry_explains_what_it_cannot_do(
    database_url: str, stores: Stores, hook_client: httpx.AsyncClient
) -> None:
    code, out = await reportsvc(database_url, "webhooks", "retry", str(UUID(int=1)))
    assert code == 1
    assert "no job" in out
    without = await stores.reports.create_job(
        topic="t", model="m", options=JobOptions(sections=1), idempotency_key=None,
        timeout_seconds=60,
    )  # fmt: skip
    code, out = await reportsvc(database_url, "webhooks", "retry", str(without))
    assert code == 1
    assert "has no webhook URL" in out
    pending = await post(hook_client, "https://93.184.216.34/hooks")
    code, out = await reportsvc(database_url, "webhooks", "retry", str(pending))
    assert code == 1
    assert "no delivery that gave up (none yet)" in out


async def test_the_sender_refuses_a_private_address_at_connect_time(
    stores: Stores, hook_settings: Settings, hook_client: httpx.AsyncClient
) -> None:
    """The submit-time check passed (or DNS changed since): the address actually dialled is
    checked again. Here a name the test resolves itself, `localhost` through the system's
    resolver, and an IP address (no resolver at all) all lead to 127.0.0.1."""
    guarded = hook_settings.model_copy(update={"webhook_allow_private_networks": False})
    refused_before = deliveries_counted("failed")
    with receiving([SECRET]) as receiver:
        urls = [
            f"http://rebound.test:{receiver.port}/hooks",
            f"http://localhost:{receiver.port}/hooks",
            f"http://127.0.0.1:{receiver.port}/hooks",
        ]
        # Submitted while private networks were allowed (the API's check passed).
        jobs = [await post(hook_client, url) for url in urls[1:]]
        rebound = await stores.reports.create_job(
            topic="t", model="m", options=JobOptions(sections=1), idempotency_key=None,
            timeout_seconds=60, webhook_url=urls[0],
        )  # fmt: skip
        assert rebound is not None
        resolver = Names({"rebound.test": "127.0.0.1"})
        async with delivering(stores, guarded, resolver=resolver):
            ended = [await webhook_ends(hook_client, job_id) for job_id in [rebound, *jobs]]
        assert receiver.received == []
        for job in ended:
            assert job["status"] == "completed"
            assert job["webhook"]["status"] == "failed"
            assert job["webhook"]["attempts"] == 1
            assert job["webhook"]["lastError"] == failures.WEBHOOK_REFUSED_ADDRESS
        assert deliveries_counted("failed") == refused_before + 3

        # The same name, with private networks allowed: delivered, so the refusal was the rule.
        allowed = await stores.reports.create_job(
            topic="t", model="m", options=JobOptions(sections=1), idempotency_key=None,
            timeout_seconds=60, webhook_url=urls[0],
        )  # fmt: skip
        assert allowed is not None
        async with delivering(stores, hook_settings, resolver=resolver):
            job = await webhook_ends(hook_client, allowed)
    assert job["webhook"]["status"] == "delivered"
    assert len(receiver.received) == 1


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:8080/hooks",
        "http://127.0.0.1/hooks",
        "http://[::1]/hooks",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/hooks",
        "http://192.168.1.20:8080/",
        "http://[::ffff:10.0.0.1]/",
    ],
)
async def test_private_addresses_are_refused_at_submit(
    settings: Settings, pool: asyncpg.Pool, url: str
) -> None:
    guarded = settings.model_copy(update={"webhook_secret": [SecretStr(SECRET)]})
    async with api_client(guarded, pool) as client:
        response = await client.post("/reports", json={"topic": "Tea", "webhookUrl": url})
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_webhook_url"
    assert "public address" in body["error"]
    # Which address the host resolved to is not told.
    assert "127.0.0.1" not in body["error"]
    assert await pool.fetchval("SELECT count(*) FROM jobs") == 0


@pytest.mark.parametrize(
    ("webhook_url", "code", "says"),
    [
        ("ftp://example.com/x", "invalid_webhook_url", "http or https"),
        ("https://user:secret@example.com/", "invalid_webhook_url", "user name or password"),
        ("https://no-such-host.invalid/", "invalid_webhook_url", "cannot be resolved"),
        ("https://example.com/" + "x" * 2100, "invalid_request", "2048"),
        (12, "invalid_request", "Expected `str`"),
    ],
)
async def test_bad_webhook_urls_are_refused_at_submit(
    settings: Settings, pool: asyncpg.Pool, webhook_url: object, code: str, says: str
) -> None:
    guarded = settings.model_copy(update={"webhook_secret": [SecretStr(SECRET)]})
    async with api_client(guarded, pool) as client:
        response = await client.post("/reports", json={"topic": "Tea", "webhookUrl": webhook_url})
    assert response.status_code == 400
    assert response.json()["code"] == code
    assert says.replace("`", "") in response.json()["error"]


async def test_without_a_secret_webhook_urls_are_refused(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/reports", json={"topic": "Tea", "webhookUrl": "https://93.184.216.34/hooks"}
    )
    assert response.status_code == 400
    assert response.json()["code"] == "webhooks_disabled"
    assert "WEBHOOK_SECRET" in response.json()["error"]


async def test_a_public_address_is_accepted_and_shown(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    guarded = settings.model_copy(update={"webhook_secret": [SecretStr(SECRET)]})
    async with api_client(guarded, pool) as client:
        job_id = await post(client, "https://93.184.216.34/hooks")
        job = (await client.get(f"/reports/{job_id}")).json()
    assert job["webhook"] == {
        "url": "https://93.184.216.34/hooks",
        "status": "pending",
        "attempts": 0,
    }
    assert await pool.fetchval("SELECT webhook_url FROM jobs") == "https://93.184.216.34/hooks"


async def test_a_job_without_a_webhook_shows_none(client: httpx.AsyncClient) -> None:
    response = await client.post("/reports", json={"topic": "Tea"})
    job = (await client.get(f"/reports/{response.json()['jobId']}")).json()
    assert "webhook" not in job


async def test_the_webhook_belongs_to_the_jobs_owner(
    hook_settings: Settings, pool: asyncpg.Pool
) -> None:
    locked = hook_settings.model_copy(
        update={"api_tokens": [SecretStr("alpha-secret"), SecretStr("beta-secret")]}
    )
    alpha = {"Authorization": "Bearer alpha-secret"}
    beta = {"Authorization": "Bearer beta-secret"}
    async with api_client(locked, pool) as client:
        response = await client.post(
            "/reports",
            json={"topic": "Tea", "webhookUrl": "https://93.184.216.34/hooks"},
            headers=alpha,
        )
        job_id = response.json()["jobId"]
        mine = await client.get(f"/reports/{job_id}", headers=alpha)
        theirs = await client.get(f"/reports/{job_id}", headers=beta)
    assert mine.json()["webhook"]["url"] == "https://93.184.216.34/hooks"
    assert theirs.status_code == 404
    assert "93.184.216.34" not in theirs.text


async def test_an_idempotency_key_reused_with_another_webhook_url_is_refused(
    hook_client: httpx.AsyncClient,
) -> None:
    key = {"Idempotency-Key": "k-1"}
    body = {"topic": "Tea", "webhookUrl": "https://93.184.216.34/a"}
    first = await hook_client.post("/reports", json=body, headers=key)
    again = await hook_client.post("/reports", json=body, headers=key)
    other = await hook_client.post(
        "/reports", json={**body, "webhookUrl": "https://93.184.216.34/b"}, headers=key
    )
    assert first.json() == again.json()
    assert other.status_code == 409
