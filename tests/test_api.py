"""The HTTP contract: POST /reports, GET /reports/{jobId}, and every bad input."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from reportsvc.llm.fake import FakeLLMThread
from reportsvc.settings import Settings
from tests.helpers import Stores, running_worker, wait_for_job

Client = httpx.AsyncClient


def assert_error(response: Any, status: int, *words: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert isinstance(body["code"], str)
    assert body["code"]
    for word in words:
        assert word in body["error"], body
    return body


async def test_post_returns_202_with_a_uuid_job_id(client: Client, stores: Stores) -> None:
    response = await client.post("/reports", json={"topic": "The Roman Empire"})
    assert response.status_code == 202
    body = response.json()
    assert list(body) == ["jobId"]
    job_id = uuid.UUID(body["jobId"])
    assert job_id.version == 4
    assert response.headers["location"] == f"/reports/{job_id}"
    job = await stores.reports.get_job(job_id)
    assert job is not None
    assert job.topic == "The Roman Empire"
    assert job.status == "outlining"


async def test_post_makes_no_model_call(client: Client, fake_llm: FakeLLMThread) -> None:
    response = await client.post("/reports", json={"topic": "Tides"})
    assert response.status_code == 202
    assert fake_llm.stats().calls == {}


async def test_get_while_queued_is_processing_with_zero_progress(client: Client) -> None:
    job_id = (await client.post("/reports", json={"topic": "Volcanoes"})).json()["jobId"]
    response = await client.get(f"/reports/{job_id}")
    assert response.status_code == 200
    body = response.json()
    assert body["jobId"] == job_id
    assert body["status"] == "processing"
    assert body["progress"] == 0.0
    assert "report" not in body
    assert "error" not in body


async def test_completed_report_has_the_documented_shape(
    client: Client, stores: Stores, settings: Settings, fake_llm: FakeLLMThread
) -> None:
    job_id = (await client.post("/reports", json={"topic": "The Roman Empire"})).json()["jobId"]
    async with running_worker(stores, settings):
        await wait_for_job(stores, uuid.UUID(job_id))
    body = (await client.get(f"/reports/{job_id}")).json()
    assert body["status"] == "completed"
    assert body["progress"] == 1.0
    report = body["report"]
    assert report["topic"] == "The Roman Empire"
    outline = report["outline"]
    assert len(outline) == settings.default_sections
    assert outline[0].startswith("I. ")
    assert outline[1].startswith("II. ")
    assert len(set(outline)) == len(outline)
    assert list(report["sections"]) == outline
    assert all(text.strip() for text in report["sections"].values())
    assert "error" not in body


async def test_topic_whitespace_is_normalised(client: Client, stores: Stores) -> None:
    response = await client.post("/reports", json={"topic": "  The\tRoman\n Empire  "})
    job = await stores.reports.get_job(uuid.UUID(response.json()["jobId"]))
    assert job is not None
    assert job.topic == "The Roman Empire"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({}, ("topic",)),
        ({"topic": ""}, ("topic",)),
        ({"topic": "   \n\t "}, ("blank",)),
        ({"topic": 42}, ("topic", "str")),
        ({"topic": None}, ("topic",)),
        ({"topic": ["The Roman Empire"]}, ("topic",)),
        ({"topic": {"name": "Rome"}}, ("topic",)),
        ({"topic": True}, ("topic",)),
        ({"topic": "Rome", "colour": "red"}, ("colour",)),
        ({"topic": "Rome\x00"}, ("control",)),
    ],
)
async def test_bad_topics_get_a_clear_400(
    client: Client, body: Any, words: tuple[str, ...]
) -> None:
    assert_error(await client.post("/reports", json=body), 400, *words)


async def test_topic_at_the_limit_is_accepted_and_one_more_is_not(
    client: Client, settings: Settings
) -> None:
    limit = settings.max_topic_length
    assert (await client.post("/reports", json={"topic": "x" * limit})).status_code == 202
    body = assert_error(await client.post("/reports", json={"topic": "x" * (limit + 1)}), 400)
    assert str(limit) in body["error"]
    assert "MAX_TOPIC_LENGTH" in body["error"]


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b'{"topic": "Rome"', b"", b"[]", b'"The Roman Empire"', b"null", b"\xff\xfe"],
)
async def test_malformed_or_non_object_bodies_get_400(client: Client, raw: bytes) -> None:
    response = await client.post(
        "/reports", content=raw, headers={"content-type": "application/json"}
    )
    assert_error(response, 400)


async def test_oversized_body_gets_413(client: Client) -> None:
    # MAX_BODY_BYTES is 1 MiB: bodies carry source documents.
    response = await client.post("/reports", json={"topic": "x" * 1_100_000})
    assert_error(response, 413)


async def test_unknown_job_id_is_404(client: Client) -> None:
    assert_error(await client.get(f"/reports/{uuid.uuid4()}"), 404, "no job")


@pytest.mark.parametrize("raw", ["not-a-uuid", "123", "00000000-0000-0000-0000-00000000000g"])
async def test_malformed_job_id_is_404(client: Client, raw: str) -> None:
    assert_error(await client.get(f"/reports/{raw}"), 404)


async def test_unknown_route_and_wrong_method_are_json_errors(client: Client) -> None:
    assert_error(await client.get("/nope"), 404)
    assert_error(await client.put("/reports"), 405)


async def test_healthz(client: Client) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


# --- idempotency ------------------------------------------------------------------------


async def test_same_idempotency_key_returns_the_same_job(client: Client, stores: Stores) -> None:
    headers = {"Idempotency-Key": "order-42"}
    first = await client.post("/reports", json={"topic": "Rome"}, headers=headers)
    second = await client.post("/reports", json={"topic": "Rome"}, headers=headers)
    assert first.status_code == second.status_code == 202
    assert first.json() == second.json()
    async with stores.reports.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM jobs") == 1


async def test_idempotency_key_reused_for_another_topic_is_409(client: Client) -> None:
    headers = {"Idempotency-Key": "order-43"}
    assert (
        await client.post("/reports", json={"topic": "Rome"}, headers=headers)
    ).status_code == 202
    response = await client.post("/reports", json={"topic": "Carthage"}, headers=headers)
    assert_error(response, 409, "Idempotency-Key")


async def test_concurrent_posts_with_one_key_create_one_job(client: Client, stores: Stores) -> None:
    headers = {"Idempotency-Key": "burst"}
    responses = await asyncio.gather(
        *(client.post("/reports", json={"topic": "Rome"}, headers=headers) for _ in range(20))
    )
    assert {r.status_code for r in responses} == {202}
    assert len({r.json()["jobId"] for r in responses}) == 1
    async with stores.reports.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM jobs") == 1


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\tkey"])
async def test_bad_idempotency_keys_get_400(client: Client, key: str) -> None:
    response = await client.post(
        "/reports", json={"topic": "Rome"}, headers={"Idempotency-Key": key}
    )
    assert_error(response, 400, "Idempotency-Key")
