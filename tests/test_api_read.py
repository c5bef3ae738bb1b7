"""Reading jobs: partial results, Markdown, listing with pagination."""

from __future__ import annotations

from uuid import UUID

import httpx
import pytest

from reportsvc.domain import JobStatus
from reportsvc.llm.fake import FakeConfig, FakeLLMThread, Faults
from reportsvc.settings import Settings
from tests.helpers import Stores, running_worker, wait_for_job

Client = httpx.AsyncClient


async def post(client: Client, topic: str) -> str:
    response = await client.post("/reports", json={"topic": topic})
    assert response.status_code == 202
    job_id: str = response.json()["jobId"]
    return job_id


async def test_processing_shows_the_outline_and_sections_finished_so_far(
    client: Client, stores: Stores, settings: Settings, fake_llm: FakeLLMThread
) -> None:
    # Sections hang until released.
    fake_llm.configure(FakeConfig(section=Faults(hang_rate=1.0, hang_seconds=30)))
    job_id = await post(client, "Coral reefs")
    async with running_worker(stores, settings, concurrency=2):
        await wait_for_job(stores, UUID(job_id), statuses=(JobStatus.WRITING,))
        body = (await client.get(f"/reports/{job_id}")).json()
        assert body["status"] == "processing"
        assert len(body["outline"]) == settings.default_sections
        assert body["partialSections"] == {}
        fake_llm.configure(FakeConfig())
        fake_llm.release_hangs()
        job = await wait_for_job(stores, UUID(job_id))
    assert job.status == "completed"


async def test_partial_sections_are_returned_while_others_run(
    client: Client, stores: Stores
) -> None:
    job_id = await post(client, "Tides")
    async with stores.reports.pool.acquire() as conn:
        # Make the outline exist and two of three sections done, by hand.
        await conn.execute(
            """UPDATE jobs SET status = 'writing', outline = ARRAY['I. A', 'II. B', 'III. C'],
                              sections_total = 3, sections_done = 2 WHERE id = $1""",
            UUID(job_id),
        )
        await conn.execute(
            """INSERT INTO steps (job_id, kind, position, title, status, content)
               VALUES ($1, 'section', 0, 'I. A', 'done', 'alpha'),
                      ($1, 'section', 1, 'II. B', 'done', 'beta'),
                      ($1, 'section', 2, 'III. C', 'queued', NULL)""",
            UUID(job_id),
        )
    body = (await client.get(f"/reports/{job_id}")).json()
    assert body["status"] == "processing"
    assert body["progress"] == pytest.approx(3 / 4)
    assert body["outline"] == ["I. A", "II. B", "III. C"]
    assert body["partialSections"] == {"I. A": "alpha", "II. B": "beta"}


async def test_markdown_by_accept_header_and_by_query(
    client: Client, stores: Stores, settings: Settings, fake_llm: FakeLLMThread
) -> None:
    job_id = await post(client, "The Roman Empire")
    async with running_worker(stores, settings):
        await wait_for_job(stores, UUID(job_id))
    by_header = await client.get(f"/reports/{job_id}", headers={"Accept": "text/markdown"})
    by_query = await client.get(f"/reports/{job_id}?format=markdown")
    for response in (by_header, by_query):
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/markdown; charset=utf-8"
        text = response.text
        assert text.startswith("# The Roman Empire\n\n## I. ")
        assert text.count("\n## ") == settings.default_sections
    as_json = await client.get(
        f"/reports/{job_id}?format=json", headers={"Accept": "text/markdown"}
    )
    assert as_json.json()["status"] == "completed"
    # The Accept header is read by its q-values, not searched for a substring.
    for accept, expected in [
        ("text/markdownx;q=0", "application/json"),
        ("text/markdown;q=0", "application/json"),
        ("text/markdown;q=0.5, application/json", "application/json"),
        ("application/json;q=0.1, text/markdown", "text/markdown"),
        ("text/*", "text/markdown"),
        ("*/*", "application/json"),
    ]:
        response = await client.get(f"/reports/{job_id}", headers={"Accept": accept})
        assert response.headers["content-type"].startswith(expected), accept


async def test_markdown_of_an_unfinished_report_is_409(client: Client) -> None:
    job_id = await post(client, "Unfinished")
    response = await client.get(f"/reports/{job_id}?format=markdown")
    assert response.status_code == 409
    assert response.json()["code"] == "report_not_ready"
    # In the client's words: its public status, not an internal state.
    assert response.json()["error"] == "the report is not completed (status processing)"


async def test_a_bad_format_is_named_as_the_client_spelled_it(client: Client) -> None:
    job_id = await post(client, "Formats")
    response = await client.get(f"/reports/{job_id}?format=xml")
    assert response.status_code == 400
    assert response.json()["error"].startswith("format: ")


async def test_head_of_healthz_answers_like_get(client: Client) -> None:
    response = await client.head("/healthz")
    assert response.status_code == 200
    assert response.content == b""


async def test_list_is_newest_first_and_pages_with_a_cursor(client: Client) -> None:
    ids = [await post(client, f"Topic {i}") for i in range(5)]
    first = (await client.get("/reports?limit=2")).json()
    assert [j["jobId"] for j in first["jobs"]] == ids[::-1][:2]
    assert first["jobs"][0]["topic"] == "Topic 4"
    assert first["jobs"][0]["status"] == "processing"
    assert first["jobs"][0]["progress"] == 0.0
    second = (await client.get(f"/reports?limit=2&cursor={first['nextCursor']}")).json()
    assert [j["jobId"] for j in second["jobs"]] == ids[::-1][2:4]
    third = (await client.get(f"/reports?limit=2&cursor={second['nextCursor']}")).json()
    assert [j["jobId"] for j in third["jobs"]] == ids[:1]
    assert third["nextCursor"] is None


async def test_list_filters_by_public_status(client: Client) -> None:
    keep = await post(client, "Keep")
    gone = await post(client, "Gone")
    assert (await client.delete(f"/reports/{gone}")).status_code == 200
    cancelled = (await client.get("/reports?status=cancelled")).json()["jobs"]
    processing = (await client.get("/reports?status=processing")).json()["jobs"]
    assert [j["jobId"] for j in cancelled] == [gone]
    assert [j["jobId"] for j in processing] == [keep]


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=101", "limit=x", "status=running", "cursor=not-a-cursor"]
)
async def test_bad_list_parameters_are_400(client: Client, query: str) -> None:
    response = await client.get(f"/reports?{query}")
    assert response.status_code == 400
    assert response.json()["status"] == 400
