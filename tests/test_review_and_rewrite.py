"""The client's outline, the owner's review of the model's outline, and section rewrites:
new transitions of the one step machine, checked through the API against the database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import asyncpg
import httpx
import pytest
from pydantic import SecretStr

from reportsvc.api import metrics as api_metrics
from reportsvc.domain import JobOptions, JobStatus
from reportsvc.llm.fake import FakeConfig, FakeLLMThread, Faults
from reportsvc.settings import Settings
from tests.conftest import api_client
from tests.helpers import Stores, running_worker, wait_for_job
from tests.receiver import receiving
from tests.sse import read_events
from tests.test_cli import reportsvc
from tests.test_operations import metric, metric_or_zero
from tests.test_webhooks import SECRET, delivering, webhook_ends

ALPHA = {"Authorization": "Bearer alpha-secret"}
BETA = {"Authorization": "Bearer beta-secret"}


async def post(client: httpx.AsyncClient, body: dict[str, Any], **kwargs: Any) -> UUID:
    response = await client.post("/reports", json=body, **kwargs)
    assert response.status_code == 202, response.text
    return UUID(response.json()["jobId"])


async def step_rows(pool: asyncpg.Pool, job_id: UUID) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await pool.fetch(
        """SELECT kind, position, title, status, turn, content, instruction FROM steps
           WHERE job_id = $1 ORDER BY kind, position""",
        job_id,
    )
    return rows


# --- the client's outline ------------------------------------------------------------------


async def test_a_clients_outline_is_written_without_an_outline_call(
    client: httpx.AsyncClient, stores: Stores, settings: Settings, fake_llm: FakeLLMThread
) -> None:
    titles = ["Origins of the city", "The  Republic", "empire and decline"]
    # The outline's length is the number of sections; `sections` is not used.
    job_id = await post(client, {"topic": "Rome", "outline": titles, "sections": 5})
    created = (await client.get(f"/reports/{job_id}")).json()
    # Written from the start: the outline is there, exactly as sent, before any worker ran.
    assert created["status"] == "processing"
    assert created["outline"] == titles
    assert created["options"]["sections"] == 3
    async with running_worker(stores, settings):
        await wait_for_job(stores, job_id)
    report = (await client.get(f"/reports/{job_id}")).json()
    assert report["status"] == "completed"
    assert report["report"]["outline"] == created["outline"]
    assert list(report["report"]["sections"]) == created["outline"]
    calls = fake_llm.stats().calls
    assert calls.get("outline", 0) == 0
    assert calls["section"] == 3
    rows = await step_rows(stores.queue.pool, job_id)
    assert [r["kind"] for r in rows] == ["section"] * 3
    job_turn = await stores.queue.pool.fetchval("SELECT turn FROM jobs WHERE id = $1", job_id)
    assert {r["turn"] for r in rows} == {job_turn}


@pytest.mark.parametrize(
    ("body", "code", "names"),
    [
        ({"outline": ["A", "B", "A"]}, "invalid_outline", "outline[2] repeats outline[0]"),
        ({"outline": ["A", "  "]}, "invalid_outline", "outline[1] must not be empty"),
        ({"outline": ["A", "B\x07"]}, "invalid_outline", "outline[1] must not contain control"),
        ({"outline": ["A\nB"]}, "invalid_outline", "outline[0] must not contain control"),
        ({"outline": ["x" * 121]}, "invalid_outline", "outline[0] is 121 characters long"),
        ({"outline": [f"T{i}" for i in range(13)]}, "invalid_outline", "limit is 12"),
        ({"outline": []}, "invalid_request", "outline"),
        ({"outline": "A"}, "invalid_request", "outline"),
        ({"outline": ["A", 2]}, "invalid_request", "outline[1]"),
    ],
)
async def test_a_clients_outline_is_checked_like_the_models(
    client: httpx.AsyncClient, body: dict[str, Any], code: str, names: str
) -> None:
    response = await client.post("/reports", json={"topic": "Rome", **body})
    assert response.status_code == 400, response.text
    assert response.json()["code"] == code
    assert names in response.json()["error"]


# --- the owner's review -------------------------------------------------------------------


async def test_a_clients_outline_can_wait_for_review_as_a_draft(
    client: httpx.AsyncClient, stores: Stores, settings: Settings, fake_llm: FakeLLMThread
) -> None:
    draft = ["Origins", "Decline"]
    job_id = await post(client, {"topic": "Rome", "outline": draft, "reviewOutline": True})
    paused = (await client.get(f"/reports/{job_id}")).json()
    assert paused["status"] == "awaiting_review"
    assert paused["outline"] == draft
    assert await step_rows(stores.queue.pool, job_id) == []  # nothing to claim
    final = ["Origins", "Middle", "Decline"]
    assert (await client.put(f"/reports/{job_id}/outline", json={"outline": final})).is_success
    async with running_worker(stores, settings):
        await wait_for_job(stores, job_id)
    done = (await client.get(f"/reports/{job_id}")).json()
    assert done["report"]["outline"] == final
    assert fake_llm.stats().calls == {"section": 3}


async def test_review_stops_after_the_outline_holding_nothing_then_put_writes_the_sections(
    client: httpx.AsyncClient, stores: Stores, settings: Settings, fake_llm: FakeLLMThread
) -> None:
    job_id = await post(client, {"topic": "Rome", "sections": 3, "reviewOutline": True})
    early = await client.put(f"/reports/{job_id}/outline", json={"outline": ["A"]})
    assert early.status_code == 409
    assert early.json()["code"] == "not_awaiting_review"
    async with running_worker(stores, settings):
        await wait_for_job(stores, job_id, statuses=(JobStatus.AWAITING_REVIEW,))
        await asyncio.sleep(0.5)  # a worker that wanted to go on would have by now
        paused = (await client.get(f"/reports/{job_id}")).json()
        rows = await step_rows(stores.queue.pool, job_id)
    assert paused["status"] == "awaiting_review"
    assert len(paused["outline"]) == 3
    assert paused["options"]["reviewOutline"] is True
    assert "reviewDueAt" in paused
    assert "finishedAt" not in paused
    # Nothing queued, nothing leased: only the outline step, done.
    assert [(r["kind"], r["status"]) for r in rows] == [("outline", "done")]
    assert fake_llm.stats().calls == {"outline": 1}
    listed = (await client.get("/reports", params={"status": "awaiting_review"})).json()
    assert [j["jobId"] for j in listed["jobs"]] == [str(job_id)]

    edited = [paused["outline"][0], "My own second section"]
    answer = await client.put(f"/reports/{job_id}/outline", json={"outline": edited})
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "processing"
    again = await client.put(f"/reports/{job_id}/outline", json={"outline": edited})
    assert again.status_code == 409
    async with running_worker(stores, settings):
        await wait_for_job(stores, job_id)
    done = (await client.get(f"/reports/{job_id}")).json()
    assert done["status"] == "completed"
    assert done["report"]["outline"] == edited
    assert fake_llm.stats().calls == {"outline": 1, "section": 2}
    job = await stores.queue.pool.fetchrow(
        "SELECT turn, sections_total, sections_done FROM jobs WHERE id = $1", job_id
    )
    assert (job["sections_total"], job["sections_done"]) == (2, 2)
    sections = [r for r in await step_rows(stores.queue.pool, job_id) if r["kind"] == "section"]
    assert {r["turn"] for r in sections} == {job["turn"]}


async def test_concurrent_reviews_exactly_one_wins(
    client: httpx.AsyncClient, stores: Stores, settings: Settings
) -> None:
    job_id = await post(client, {"topic": "Rome", "sections": 2, "reviewOutline": True})
    async with running_worker(stores, settings):
        await wait_for_job(stores, job_id, statuses=(JobStatus.AWAITING_REVIEW,))
    outlines = [[f"Version {i} part {n}" for n in range(1 + i % 3)] for i in range(8)]
    answers = await asyncio.gather(
        *(client.put(f"/reports/{job_id}/outline", json={"outline": o}) for o in outlines)
    )
    assert sorted(a.status_code for a in answers) == [200] + [409] * 7
    winner = outlines[[a.status_code for a in answers].index(200)]
    job = await stores.reports.get_job(job_id)
    assert job is not None
    assert job.outline == winner
    sections = [r for r in await step_rows(stores.queue.pool, job_id) if r["kind"] == "section"]
    assert [r["title"] for r in sections] == winner


async def test_a_review_not_given_in_time_fails_the_job_but_the_job_deadline_does_not(
    client: httpx.AsyncClient, stores: Stores, settings: Settings
) -> None:
    late = await post(client, {"topic": "Late", "sections": 2, "reviewOutline": True})
    slow = await post(client, {"topic": "Slow", "sections": 2, "reviewOutline": True})
    async with running_worker(stores, settings):
        for job_id in (late, slow):
            await wait_for_job(stores, job_id, statuses=(JobStatus.AWAITING_REVIEW,))
    pool = stores.queue.pool
    # The late one waited a day; the slow one is long past JOB_TIMEOUT_SECONDS, but only
    # minutes into its review.
    await pool.execute(
        "UPDATE jobs SET review_since = now() - interval '25 hours' WHERE id = $1", late
    )
    await pool.execute(
        """UPDATE jobs SET deadline_at = now() - interval '1 hour',
                          review_since = now() - interval '5 minutes' WHERE id = $1""",
        slow,
    )
    async with running_worker(stores, settings):
        failed = await wait_for_job(stores, late, timeout=10)
        await asyncio.sleep(1.0)  # a few maintenance passes
    assert failed.status is JobStatus.FAILED
    shown = (await client.get(f"/reports/{late}")).json()
    assert shown["status"] == "failed"
    assert "not reviewed within 24 hours (OUTLINE_REVIEW_TIMEOUT)" in shown["error"]
    still = await stores.reports.get_job(slow)
    assert still is not None
    assert still.status is JobStatus.AWAITING_REVIEW
    refused = await client.put(f"/reports/{late}/outline", json={"outline": ["A"]})
    assert refused.status_code == 409
    assert "status failed" in refused.json()["error"]


async def test_a_job_in_review_can_be_cancelled_and_an_expired_one_retried(
    client: httpx.AsyncClient, stores: Stores, settings: Settings
) -> None:
    cancelled = await post(client, {"topic": "A", "outline": ["One"], "reviewOutline": True})
    expired = await post(client, {"topic": "B", "outline": ["One"], "reviewOutline": True})
    answer = await client.delete(f"/reports/{cancelled}")
    assert answer.status_code == 200
    assert (await client.get(f"/reports/{cancelled}")).json()["status"] == "cancelled"
    await stores.queue.pool.execute(
        "UPDATE jobs SET review_since = now() - interval '2 days' WHERE id = $1", expired
    )
    assert await stores.queue.expire_reviews(24 * 3600) == [expired]
    # `reportsvc retry`: back to waiting for the review, from now.
    retried = await stores.operations.retry_job(expired, settings.job_timeout_seconds)
    assert retried is not None
    assert retried.status is JobStatus.AWAITING_REVIEW
    again = (await client.get(f"/reports/{expired}")).json()
    assert again["status"] == "awaiting_review"
    assert "error" not in again
    assert await stores.queue.expire_reviews(24 * 3600) == []


async def test_the_retry_command_puts_an_expired_review_back(
    client: httpx.AsyncClient, stores: Stores, database_url: str
) -> None:
    job_id = await post(client, {"topic": "A", "outline": ["One"], "reviewOutline": True})
    await stores.queue.pool.execute(
        "UPDATE jobs SET review_since = now() - interval '2 days' WHERE id = $1", job_id
    )
    assert await stores.queue.expire_reviews(24 * 3600) == [job_id]
    code, out = await reportsvc(database_url, "retry", str(job_id))
    assert code == 0, out
    assert "waits for its outline's review again" in out
    assert (await client.get(f"/reports/{job_id}")).json()["status"] == "awaiting_review"


async def test_metrics_count_reviews_and_rewrites(
    client: httpx.AsyncClient,
    stores: Stores,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(api_metrics, "METRICS_REFRESH_SECONDS", 0.0)
    before = (await client.get("/metrics")).text
    approved = metric_or_zero(before, "reportsvc_outline_reviews_total", outcome="approved")
    rewrites = metric_or_zero(before, "reportsvc_section_rewrites_total")
    job_id = await post(client, {"topic": "A", "outline": ["One", "Two"], "reviewOutline": True})
    await post(client, {"topic": "B", "outline": ["One"], "reviewOutline": True})
    waiting = (await client.get("/metrics")).text
    assert metric(waiting, "reportsvc_jobs", status="awaiting_review") == 2
    await client.put(f"/reports/{job_id}/outline", json={"outline": ["One", "Two"]})
    async with running_worker(stores, settings):
        await wait_for_job(stores, job_id)
    assert (await client.post(f"/reports/{job_id}/sections/1/rewrite")).status_code == 202
    after = (await client.get("/metrics")).text
    assert metric(after, "reportsvc_jobs", status="awaiting_review") == 1
    assert metric(after, "reportsvc_outline_reviews_total", outcome="approved") == approved + 1
    assert metric(after, "reportsvc_section_rewrites_total") == rewrites + 1


async def test_the_pause_and_its_end_are_webhook_events(
    client: httpx.AsyncClient, stores: Stores, settings: Settings
) -> None:
    job_id = await stores.reports.create_job(
        topic="Rome",
        model="test-model",
        options=JobOptions(sections=2, review_outline=True),
        idempotency_key=None,
        timeout_seconds=3600,
        webhook_url="http://192.0.2.1/hook",
    )
    assert job_id is not None
    async with running_worker(stores, settings):
        await wait_for_job(stores, job_id, statuses=(JobStatus.AWAITING_REVIEW,))
    await stores.reports.approve_outline(job_id, None, ["One", "Two"], 3600)
    async with running_worker(stores, settings):
        await wait_for_job(stores, job_id)
    events = await stores.queue.pool.fetch(
        "SELECT title FROM steps WHERE job_id = $1 AND kind = 'webhook' ORDER BY position",
        job_id,
    )
    assert [e["title"] for e in events] == ["report.awaiting_review", "report.completed"]


@pytest.fixture
def hook_settings(settings: Settings) -> Settings:
    """Webhooks on, to a receiver on this machine (as in test_webhooks)."""
    return settings.model_copy(
        update={"webhook_secret": [SecretStr(SECRET)], "webhook_allow_private_networks": True}
    )


@pytest.fixture
async def hook_client(
    hook_settings: Settings, pool: asyncpg.Pool
) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(hook_settings, pool) as client:
        yield client


async def test_a_receiver_gets_the_pause_signed_with_the_proposed_outline(
    hook_client: httpx.AsyncClient, stores: Stores, hook_settings: Settings
) -> None:
    with receiving([SECRET]) as receiver:
        response = await hook_client.post(
            "/reports",
            json={
                "topic": "Tea",
                "sections": 2,
                "reviewOutline": True,
                "webhookUrl": receiver.url(),
            },
        )
        job_id = UUID(response.json()["jobId"])
        async with delivering(stores, hook_settings):
            paused = await webhook_ends(hook_client, job_id)
    assert paused["status"] == "awaiting_review"
    assert paused["webhook"]["status"] == "delivered"
    [delivery] = receiver.received
    assert delivery.verified_by == (0,)
    event = delivery.json()
    assert event["type"] == "report.awaiting_review"
    assert event["data"]["status"] == "awaiting_review"
    assert event["data"]["outline"] == paused["outline"]
    assert event["data"]["reviewDueAt"] == paused["reviewDueAt"]


async def test_the_event_stream_reports_the_pause_and_goes_on(
    client: httpx.AsyncClient, stores: Stores, settings: Settings
) -> None:
    job_id = await post(client, {"topic": "Rome", "sections": 2, "reviewOutline": True})

    async def review() -> None:
        paused = await wait_for_job(stores, job_id, statuses=(JobStatus.AWAITING_REVIEW,))
        assert paused.outline is not None
        await stores.reports.approve_outline(job_id, None, paused.outline, 3600)

    async with running_worker(stores, settings):
        reviewing = asyncio.create_task(review())
        async with client.stream("GET", f"/reports/{job_id}/events") as response:
            seen = [event async for event in read_events(response)]
        await reviewing
    names = [name for name, _ in seen]
    assert names.count("awaiting_review") == 1
    assert names[-1] == "completed"
    position = names.index("awaiting_review")
    assert names[:position] == ["progress"]  # the outline
    assert names[position + 1 :] == ["progress", "progress", "completed"]  # two sections
    review_data = seen[position][1]
    assert review_data["status"] == "awaiting_review"
    assert review_data["outline"] == seen[0][1]["outline"]


# --- rewrites ------------------------------------------------------------------------------


@pytest.fixture
def summary_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"summary_pass": True})


@pytest.fixture
async def summary_client(
    summary_settings: Settings, pool: asyncpg.Pool
) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(summary_settings, pool) as client:
        yield client


async def test_a_rewrite_keeps_the_old_text_adds_up_usage_and_rewrites_the_summary(
    summary_client: httpx.AsyncClient,
    stores: Stores,
    summary_settings: Settings,
    fake_llm: FakeLLMThread,
) -> None:
    client = summary_client
    job_id = await post(client, {"topic": "Rome", "sections": 3})
    async with running_worker(stores, summary_settings):
        await wait_for_job(stores, job_id)
    before = (await client.get(f"/reports/{job_id}")).json()
    assert before["status"] == "completed"
    assert "summary" in before["report"]
    first_finish = before["finishedAt"]
    titles = before["report"]["outline"]
    calls = fake_llm.stats().calls
    assert calls == {"outline": 1, "section": 3, "summary": 1}

    answer = await client.post(
        f"/reports/{job_id}/sections/1/rewrite", json={"instruction": "shorter, with more dates"}
    )
    assert answer.status_code == 202, answer.text
    assert answer.json() == {
        "jobId": str(job_id),
        "index": 1,
        "title": titles[1],
        "status": "processing",
    }
    during = (await client.get(f"/reports/{job_id}")).json()
    assert during["status"] == "processing"
    assert during["progress"] < 1
    # The other sections stay; the one being rewritten is not shown until it is written.
    assert set(during["partialSections"]) == {titles[0], titles[2]}
    busy = await client.post(f"/reports/{job_id}/sections/0/rewrite")
    assert busy.status_code == 409
    assert busy.json()["code"] == "report_not_completed"

    async with running_worker(stores, summary_settings):
        await wait_for_job(stores, job_id)
    after = (await client.get(f"/reports/{job_id}", params={"history": "true"})).json()
    assert after["status"] == "completed"
    assert after["finishedAt"] > first_finish
    sections = after["report"]["sections"]
    assert sections[titles[0]] == before["report"]["sections"][titles[0]]
    assert sections[titles[2]] == before["report"]["sections"][titles[2]]
    assert sections[titles[1]] != before["report"]["sections"][titles[1]]
    assert "Rewritten (shorter, with more dates)." in sections[titles[1]]
    assert fake_llm.stats().calls == {"outline": 1, "section": 4, "summary": 2}
    history = after["history"]
    assert [(h["index"], h["title"]) for h in history] == [(1, titles[1]), (3, "Summary")]
    assert history[0]["text"] == before["report"]["sections"][titles[1]]
    assert history[1]["text"] == before["report"]["summary"]
    assert all(h["instruction"] == "shorter, with more dates" for h in history)
    # Usage adds up: every version's tokens, the replaced ones included.
    replaced = sum(h["usage"]["totalTokens"] for h in history)
    assert replaced > 0
    assert after["usage"]["totalTokens"] > before["usage"]["totalTokens"] + replaced / 2
    rewritten = await stores.queue.pool.fetchrow(
        """SELECT prompt_tokens + completion_tokens AS tokens FROM steps
           WHERE job_id = $1 AND kind = 'section' AND position = 1""",
        job_id,
    )
    assert rewritten["tokens"] > history[0]["usage"]["totalTokens"]
    # Without ?history the answer is as before.
    assert "history" not in (await client.get(f"/reports/{job_id}")).json()
    # The steps went back to the job's (new) turn.
    job_turn = await stores.queue.pool.fetchval("SELECT turn FROM jobs WHERE id = $1", job_id)
    rows = await step_rows(stores.queue.pool, job_id)
    redone = [r for r in rows if (r["kind"], r["position"]) in {("section", 1), ("summary", 3)}]
    assert {r["turn"] for r in redone} == {job_turn}
    assert redone[0]["instruction"] == "shorter, with more dates"


async def test_each_version_in_the_history_keeps_its_own_tokens(
    client: httpx.AsyncClient, stores: Stores, settings: Settings
) -> None:
    job_id = await post(client, {"topic": "Rome", "sections": 2})
    async with running_worker(stores, settings):
        await wait_for_job(stores, job_id)
        for instruction in ("shorter", None):
            body = {"instruction": instruction} if instruction else None
            answer = await client.post(f"/reports/{job_id}/sections/0/rewrite", json=body)
            assert answer.status_code == 202
            await wait_for_job(stores, job_id, statuses=(JobStatus.WRITING,), timeout=2)
            await wait_for_job(stores, job_id)
    shown = (await client.get(f"/reports/{job_id}", params={"history": "true"})).json()
    versions = shown["history"]
    assert [(v["index"], v.get("instruction")) for v in versions] == [(0, "shorter"), (0, None)]
    assert "Rewritten (shorter)." in versions[1]["text"]
    current = shown["report"]["sections"][shown["report"]["outline"][0]]
    assert "Rewritten (no instruction)." in current
    step_tokens = await stores.queue.pool.fetchval(
        """SELECT prompt_tokens + completion_tokens FROM steps
           WHERE job_id = $1 AND kind = 'section' AND position = 0""",
        job_id,
    )
    # Three versions written: two replaced, in the history, each with its own share.
    shares = [v["usage"]["totalTokens"] for v in versions]
    assert all(share > 0 for share in shares)
    assert sum(shares) < step_tokens


async def test_a_rewrite_that_fails_for_good_leaves_the_report_as_it_was(
    summary_client: httpx.AsyncClient,
    stores: Stores,
    summary_settings: Settings,
    fake_llm: FakeLLMThread,
) -> None:
    client = summary_client
    job_id = await post(client, {"topic": "Rome", "sections": 2})
    async with running_worker(stores, summary_settings):
        await wait_for_job(stores, job_id)
    before = (await client.get(f"/reports/{job_id}")).json()
    fake_llm.configure(FakeConfig(section=Faults(error_rate=1.0, error_status=400)))
    answer = await client.post(f"/reports/{job_id}/sections/0/rewrite", json={"instruction": "x"})
    assert answer.status_code == 202
    async with running_worker(stores, summary_settings):
        await wait_for_job(stores, job_id, statuses=(JobStatus.WRITING,), timeout=2)
        await wait_for_job(stores, job_id)
    after = (await client.get(f"/reports/{job_id}", params={"history": "true"})).json()
    assert after["status"] == "completed"
    assert after["report"] == before["report"]
    assert after["rewriteError"].startswith("The rewrite did not happen: Section 1 of 2")
    assert "history" not in after or after["history"] == []
    # A later rewrite goes through, and the error is gone.
    fake_llm.configure(FakeConfig())
    assert (await client.post(f"/reports/{job_id}/sections/0/rewrite")).status_code == 202
    async with running_worker(stores, summary_settings):
        await wait_for_job(stores, job_id, statuses=(JobStatus.WRITING,), timeout=2)
        await wait_for_job(stores, job_id)
    fixed = (await client.get(f"/reports/{job_id}", params={"history": "true"})).json()
    assert "rewriteError" not in fixed
    assert [h["index"] for h in fixed["history"]] == [0, 2]


async def test_a_rewrite_ends_with_a_new_completion_event(
    client: httpx.AsyncClient, stores: Stores, settings: Settings
) -> None:
    job_id = await stores.reports.create_job(
        topic="Rome",
        model="test-model",
        options=JobOptions(sections=2),
        idempotency_key=None,
        timeout_seconds=3600,
        webhook_url="http://192.0.2.1/hook",
    )
    assert job_id is not None
    async with running_worker(stores, settings):
        await wait_for_job(stores, job_id)
        answer = await client.post(f"/reports/{job_id}/sections/0/rewrite")
        assert answer.status_code == 202
        await wait_for_job(stores, job_id, statuses=(JobStatus.WRITING,), timeout=2)
        await wait_for_job(stores, job_id)
    events = await stores.queue.pool.fetch(
        "SELECT title, position FROM steps WHERE job_id = $1 AND kind = 'webhook' ORDER BY 2",
        job_id,
    )
    assert [e["title"] for e in events] == ["report.completed", "report.completed"]


async def test_rewrites_refused_with_a_clear_answer(
    client: httpx.AsyncClient, stores: Stores, settings: Settings
) -> None:
    job_id = await post(client, {"topic": "Rome", "sections": 2})
    writing = await client.post(f"/reports/{job_id}/sections/0/rewrite")
    assert writing.status_code == 409
    assert "processing" in writing.json()["error"]
    async with running_worker(stores, settings):
        await wait_for_job(stores, job_id)
    out_of_range = await client.post(f"/reports/{job_id}/sections/2/rewrite")
    assert out_of_range.status_code == 404
    assert out_of_range.json()["code"] == "section_not_found"
    assert "numbered 0 to 1" in out_of_range.json()["error"]
    negative = await client.post(f"/reports/{job_id}/sections/-1/rewrite")
    assert negative.status_code in (400, 404)
    too_long = await client.post(
        f"/reports/{job_id}/sections/0/rewrite", json={"instruction": "x" * 501}
    )
    assert too_long.status_code == 400
    assert too_long.json()["code"] == "invalid_instruction"
    unknown = await client.post(f"/reports/{job_id}/sections/0/rewrite", json={"tone": "dry"})
    assert unknown.status_code == 400
    assert "tone" in unknown.json()["error"]
    blank = await client.post(f"/reports/{job_id}/sections/0/rewrite", json={"instruction": " "})
    assert blank.status_code == 400
    missing = await client.post(f"/reports/{UUID(int=1)}/sections/0/rewrite")
    assert missing.status_code == 404
    assert missing.json()["code"] == "job_not_found"
    cancelled = await post(client, {"topic": "Gone", "sections": 2})
    assert (await client.delete(f"/reports/{cancelled}")).status_code == 200
    refused = await client.post(f"/reports/{cancelled}/sections/0/rewrite")
    assert refused.status_code == 409
    assert "cancelled" in refused.json()["error"]
    # Nothing refused changed the report.
    job = await stores.reports.get_job(job_id)
    assert job is not None
    assert job.status is JobStatus.COMPLETED
    assert await stores.queue.pool.fetchval("SELECT count(*) FROM section_history") == 0


async def test_two_rewrites_at_once_exactly_one_is_queued(
    client: httpx.AsyncClient, stores: Stores, settings: Settings
) -> None:
    job_id = await post(client, {"topic": "Rome", "sections": 3})
    async with running_worker(stores, settings):
        await wait_for_job(stores, job_id)
    answers = await asyncio.gather(
        *(client.post(f"/reports/{job_id}/sections/{i % 3}/rewrite") for i in range(6))
    )
    assert sorted(a.status_code for a in answers) == [202] + [409] * 5
    job = await stores.queue.pool.fetchrow(
        "SELECT status, sections_done, sections_total FROM jobs WHERE id = $1", job_id
    )
    assert (job["status"], job["sections_done"], job["sections_total"]) == ("writing", 2, 3)
    assert await stores.queue.pool.fetchval("SELECT count(*) FROM section_history") == 1


# --- ownership -----------------------------------------------------------------------------


@pytest.fixture
async def locked(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[httpx.AsyncClient]:
    tokens = [SecretStr("alpha-secret"), SecretStr("beta-secret")]
    async with api_client(settings.model_copy(update={"api_tokens": tokens}), pool) as client:
        yield client


async def test_reviews_rewrites_and_history_belong_to_the_jobs_owner(
    locked: httpx.AsyncClient, stores: Stores, settings: Settings
) -> None:
    reviewed = await post(
        locked, {"topic": "A", "sections": 2, "reviewOutline": True}, headers=ALPHA
    )
    written = await post(locked, {"topic": "B", "sections": 2}, headers=ALPHA)
    async with running_worker(stores, settings):
        await wait_for_job(stores, reviewed, statuses=(JobStatus.AWAITING_REVIEW,))
        await wait_for_job(stores, written)
    body = {"outline": ["One", "Two"]}
    assert (await locked.put(f"/reports/{reviewed}/outline", json=body)).status_code == 401
    stranger = await locked.put(f"/reports/{reviewed}/outline", json=body, headers=BETA)
    assert stranger.status_code == 404
    assert stranger.json()["code"] == "job_not_found"
    rewrite = await locked.post(f"/reports/{written}/sections/0/rewrite", headers=BETA)
    assert rewrite.status_code == 404
    history = await locked.get(f"/reports/{written}?history=true", headers=BETA)
    assert history.status_code == 404
    # Nothing changed for the owner, who can still do both.
    assert (await stores.reports.get_job(reviewed)).status is JobStatus.AWAITING_REVIEW  # type: ignore[union-attr]
    assert await stores.queue.pool.fetchval("SELECT count(*) FROM section_history") == 0
    own = await locked.put(f"/reports/{reviewed}/outline", json=body, headers=ALPHA)
    assert own.status_code == 200
    own_rewrite = await locked.post(f"/reports/{written}/sections/0/rewrite", headers=ALPHA)
    assert own_rewrite.status_code == 202
