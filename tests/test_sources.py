"""Sources: documents in the request or uploaded, passages in the section prompts,
citations cleaned, references in the report, and sources owned like jobs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import asyncpg
import httpx
import jsonschema_rs
import pytest
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from pydantic import SecretStr

from reportsvc.api.errors import ApiError
from reportsvc.api.sources import clean_document
from reportsvc.api.validation import DOCUMENT_PATTERN
from reportsvc.llm.fake import FakeConfig, FakeLLMThread
from reportsvc.pipeline.sources import NO_PASSAGE_NOTE, grounded_summary
from reportsvc.queue.sources import PassageSearch
from reportsvc.settings import Settings
from reportsvc.sources.citations import cited_numbers, clean_citations
from reportsvc.sources.passages import MAX_PASSAGE_CHARS, search_config, split_passages
from tests.conftest import api_client
from tests.helpers import Stores, make_settings, running_worker, wait_for_job
from tests.sse import read_events

ALPHA = {"Authorization": "Bearer alpha-secret"}
BETA = {"Authorization": "Bearer beta-secret"}
TOPIC = "The old harbour town"
LIGHTHOUSE = {
    "title": "Lighthouse keepers",
    "text": (
        "# The lamp\n\nThe lighthouse keeper lit the lamp at dusk and trimmed the wick at "
        "midnight; in 1871 the lamp burned whale oil.\n\nKeepers lived in the tower with "
        "their families and logged every passing ship."
    ),
}
HARBOUR = {
    "title": "Harbour trade",
    "text": "Grain and timber ships unloaded at the harbour quay; porters were paid by the sack.",
}
TITLES = ["Lighthouse keepers and their lamp", "Grain trade at the harbour", "Volcanic geology"]


@pytest.fixture
async def locked(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[httpx.AsyncClient]:
    tokens = [SecretStr("alpha-secret"), SecretStr("beta-secret")]
    async with api_client(settings.model_copy(update={"api_tokens": tokens}), pool) as client:
        yield client


def test_documents_are_split_into_bounded_passages_of_whole_paragraphs() -> None:
    short = "First paragraph.\n\nSecond paragraph.\r\n\r\n\n  \nThird."
    assert split_passages(short) == ["First paragraph.\n\nSecond paragraph.\n\nThird."]
    long = "\n\n".join(f"Paragraph {i} " + "word " * 60 for i in range(20))
    passages = split_passages(long)
    assert len(passages) > 5
    assert all(len(p) <= MAX_PASSAGE_CHARS for p in passages)
    # Nothing is lost or reordered.
    assert " ".join(" ".join(passages).split()) == " ".join(long.split())
    giant = "x" * 3000 + " " + "A sentence. " * 300
    assert all(len(p) <= MAX_PASSAGE_CHARS for p in split_passages(giant))
    assert split_passages(" \n\n\t") == []


def test_citations_of_numbers_not_given_are_removed_and_counted() -> None:
    text = "Ships came [2]. Lamps burned oil [2, 9][4]. See [the map](https://x) and [7](y)."
    cleaned = clean_citations(text, {2, 4})
    assert (
        cleaned.text
        == "Ships came [2]. Lamps burned oil [2][4]. See [the map](https://x) and [7](y)."
    )
    assert cleaned.removed == 1
    gone = clean_citations("Invented [12]. Also [13, 14].", {1})
    assert gone == ("Invented. Also.", 3)
    assert cited_numbers(cleaned.text) == {2, 4}


def test_a_summary_may_cite_only_what_its_sections_cite() -> None:
    written = {"One": "Ships [2].", "Two": "Lamps [4][5]."}
    cleaned = grounded_summary("Ships came [2] and lamps burned [5, 7]; see also [9].", written)
    assert cleaned == ("Ships came [2] and lamps burned [5]; see also.", 2)


def test_the_report_language_picks_the_text_search_configuration() -> None:
    assert search_config(None) == "english"
    assert search_config("German") == search_config("deutsch") == "german"
    assert search_config("Français") == "french"
    assert search_config("Klingon") == "simple"


async def test_sections_carry_their_relevant_passages_and_their_citations_are_cleaned(
    client: httpx.AsyncClient, stores: Stores, settings: Settings, fake_llm: FakeLLMThread
) -> None:
    fake_llm.configure(FakeConfig(outline_titles=TITLES, cite_unknown=True))
    response = await client.post(
        "/reports", json={"topic": TOPIC, "sections": 3, "sources": [LIGHTHOUSE, HARBOUR]}
    )
    assert response.status_code == 202, response.text
    job_id = UUID(response.json()["jobId"])
    async with running_worker(stores, settings):
        await wait_for_job(stores, job_id)
    stats = fake_llm.stats()
    outline_prompt = stats.last_requests["outline"]["messages"][-1]["content"]
    assert '"Lighthouse keepers" (1 passages)' in outline_prompt
    assert '"Harbour trade" (1 passages)' in outline_prompt
    # Titles come numbered ("I. ..."); the prompts, by the title as asked for.
    prompts = {
        key.split(" :: ")[1].split(". ", 1)[1]: text for key, text in stats.section_prompts.items()
    }
    # Passage 1 is the lighthouse document, passage 2 the harbour's.
    assert set(prompts) == set(TITLES), stats.section_prompts
    assert '[1] from "Lighthouse keepers"' in prompts[TITLES[0]]
    assert "[2] from" not in prompts[TITLES[0]]
    assert '[2] from "Harbour trade"' in prompts[TITLES[1]]
    assert "Source passages" not in prompts[TITLES[2]]

    job = (await client.get(f"/reports/{job_id}")).json()
    assert job["status"] == "completed", job
    assert job["options"]["sources"] == 2
    report = job["report"]
    sections = {title.split(". ", 1)[1]: text for title, text in report["sections"].items()}
    assert "[1]" in sections[TITLES[0]]
    assert "[2]" in sections[TITLES[1]]
    # The stand-in model cited one number it was not given in each section it gave
    # passages to ([2] and [3]); both were removed, and counted.
    assert "[2]" not in sections[TITLES[0]]
    assert "[3]" not in sections[TITLES[1]]
    assert report["citationsRemoved"] == 2
    assert sections[TITLES[2]].startswith(NO_PASSAGE_NOTE)
    assert report["sectionsWithoutSources"] == [report["outline"][2]]
    assert [(r["number"], r["title"]) for r in report["references"]] == [
        (1, "Lighthouse keepers"),
        (2, "Harbour trade"),
    ]
    assert report["references"][1]["passage"] == HARBOUR["text"]
    async with client.stream("GET", f"/reports/{job_id}/events") as stream:
        events = [event async for event in read_events(stream)]
    cited = {data["section"]: data["citations"] for name, data in events if name == "progress"
             and data["step"] == "section"}  # fmt: skip
    assert cited == {report["outline"][0]: [1], report["outline"][1]: [2], report["outline"][2]: []}
    assert events[-1][1]["report"]["references"] == report["references"]
    markdown = (await client.get(f"/reports/{job_id}?format=markdown")).text
    assert "## References" in markdown
    assert "- [2] *Harbour trade*: Grain and timber ships" in markdown
    steps = await stores.queue.pool.fetch(
        "SELECT title, passages_given, citations_removed FROM steps "
        "WHERE job_id = $1 AND kind = 'section' ORDER BY position",
        job_id,
    )
    assert [tuple(r)[1:] for r in steps] == [(1, 1), (1, 1), (0, 0)]


async def test_a_report_without_sources_is_unchanged(
    client: httpx.AsyncClient, stores: Stores, settings: Settings, fake_llm: FakeLLMThread
) -> None:
    response = await client.post("/reports", json={"topic": TOPIC, "sections": 2, "sources": []})
    job_id = UUID(response.json()["jobId"])
    async with running_worker(stores, settings):
        await wait_for_job(stores, job_id)
    job = (await client.get(f"/reports/{job_id}")).json()
    assert job["status"] == "completed"
    assert set(job["report"]) == {"topic", "outline", "sections"}
    assert "sources" not in job["options"]
    for prompt in fake_llm.stats().section_prompts.values():
        assert "Source passages" not in prompt
    assert await stores.queue.pool.fetchval("SELECT count(*) FROM job_passages") == 0


async def test_retrieval_ranks_by_the_section_title_within_the_job_only(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    other = await client.post("/reports", json={"topic": "Elsewhere", "sources": [LIGHTHOUSE]})
    mine = await client.post("/reports", json={"topic": TOPIC, "sources": [HARBOUR, LIGHTHOUSE]})
    job_id = UUID(mine.json()["jobId"])
    assert other.status_code == 202
    search = PassageSearch(pool)
    found = await search.search(
        job_id, language=None, title="The lighthouse lamps", topic=TOPIC, limit=4
    )
    # Stemmed: "lamps" finds "lamp"; only this job's copy of the document.
    assert [(p.number, p.title) for p in found] == [(2, "Lighthouse keepers")]
    assert (
        await search.search(job_id, language=None, title="Volcanic geology", topic=TOPIC, limit=4)
        == []
    )
    overview = await search.overview(job_id)
    assert [(o.title, o.passages) for o in overview] == [
        ("Harbour trade", 1),
        ("Lighthouse keepers", 1),
    ]
    assert overview[1].opening.startswith("# The lamp")


@pytest.mark.parametrize(
    ("sources", "status", "code", "names"),
    [
        ([HARBOUR] * 4, 400, "too_many_sources", "SOURCES_MAX_DOCUMENTS"),
        ([{"title": "Big", "text": "word " * 2_500}], 413, "sources_too_large", "sources[0].text"),
        ([{"title": "A", "text": "word " * 1_200}] * 2, 413, "sources_too_large", "together"),
        ([{"title": "  ", "text": "x"}], 400, "invalid_source", "sources[0].title"),
        ([HARBOUR, {"title": "T", "text": "\n\t "}], 400, "invalid_source", "sources[1].text"),
        ([{"title": "T", "text": "a\x00b"}], 400, "invalid_source", "sources[0].text"),
        ([{"title": "T"}], 400, "invalid_request", "sources[0]"),
        ([{"title": "T", "text": 3}], 400, "invalid_request", "sources[0].text"),
        ([{"title": "T", "text": "x", "url": "y"}], 400, "invalid_request", "url"),
        ("not a list", 400, "invalid_request", "sources"),
        (["5b8cfda7-4eaa-40bd-9c0e-93bb9d87ac30"], 404, "source_not_found", "sources[0]"),
        ([HARBOUR, "not-an-id"], 400, "invalid_source", "sources[1]"),
    ],
)
async def test_bad_sources_are_refused_naming_the_field(
    settings: Settings,
    pool: asyncpg.Pool,
    sources: Any,
    status: int,
    code: str,
    names: str,
) -> None:
    tight = settings.model_copy(
        update={"sources_max_documents": 3, "sources_max_characters": 10_000}
    )
    async with api_client(tight, pool) as client:
        response = await client.post("/reports", json={"topic": TOPIC, "sources": sources})
    assert response.status_code == status, response.text
    assert response.json()["code"] == code
    assert names in response.json()["error"]
    assert await pool.fetchval("SELECT count(*) FROM jobs") == 0


async def test_uploaded_sources_belong_to_their_token(locked: httpx.AsyncClient) -> None:
    created = await locked.post("/sources", json=LIGHTHOUSE, headers=ALPHA)
    assert created.status_code == 201, created.text
    source_id = created.json()["sourceId"]
    assert created.json()["characters"] == len(LIGHTHOUSE["text"])
    assert created.headers["location"] == f"/sources/{source_id}"

    mine = await locked.get(f"/sources/{source_id}", headers=ALPHA)
    assert mine.json()["text"] == LIGHTHOUSE["text"]
    listed = (await locked.get("/sources", headers=ALPHA)).json()
    assert [s["sourceId"] for s in listed["sources"]] == [source_id]

    # Another token: not found, not listed, not deletable, not usable in a report.
    assert (await locked.get(f"/sources/{source_id}", headers=BETA)).status_code == 404
    assert (await locked.get("/sources", headers=BETA)).json()["sources"] == []
    assert (await locked.delete(f"/sources/{source_id}", headers=BETA)).status_code == 404
    refused = await locked.post(
        "/reports", json={"topic": TOPIC, "sources": [source_id]}, headers=BETA
    )
    assert refused.status_code == 404
    assert refused.json()["code"] == "source_not_found"
    assert (await locked.get("/sources")).status_code == 401

    used = await locked.post(
        "/reports", json={"topic": TOPIC, "sources": [source_id]}, headers=ALPHA
    )
    assert used.status_code == 202, used.text
    deleted = await locked.delete(f"/sources/{source_id}", headers=ALPHA)
    assert deleted.json() == {"sourceId": source_id, "status": "deleted"}
    assert (await locked.get(f"/sources/{source_id}", headers=ALPHA)).status_code == 404


async def test_a_job_keeps_its_copy_of_a_source_deleted_after_it_was_created(
    client: httpx.AsyncClient, stores: Stores, settings: Settings, fake_llm: FakeLLMThread
) -> None:
    fake_llm.configure(FakeConfig(outline_titles=TITLES[:1]))
    source_id = (await client.post("/sources", json=LIGHTHOUSE)).json()["sourceId"]
    response = await client.post(
        "/reports", json={"topic": TOPIC, "sections": 1, "sources": [source_id]}
    )
    job_id = UUID(response.json()["jobId"])
    assert (await client.delete(f"/sources/{source_id}")).status_code == 200
    async with running_worker(stores, settings):
        await wait_for_job(stores, job_id)
    report = (await client.get(f"/reports/{job_id}")).json()["report"]
    assert report["references"] == [
        {"number": 1, "title": "Lighthouse keepers", "passage": LIGHTHOUSE["text"]}
    ]
    assert report["citationsRemoved"] == 0
    source = await stores.queue.pool.fetchval("SELECT source_id FROM job_passages")
    assert str(source) == source_id


async def test_uploads_are_bounded_per_token(settings: Settings, pool: asyncpg.Pool) -> None:
    tokens = [SecretStr("alpha-secret"), SecretStr("beta-secret")]
    bounded = settings.model_copy(update={"api_tokens": tokens, "sources_max_stored": 2})
    async with api_client(bounded, pool) as client:
        codes = [
            (await client.post("/sources", json=HARBOUR, headers=ALPHA)).status_code
            for _ in range(3)
        ]
        assert codes == [201, 201, 409]
        refused = await client.post("/sources", json=HARBOUR, headers=ALPHA)
        assert refused.json()["code"] == "sources_full"
        # Another token has its own room; deleting one makes room again.
        assert (await client.post("/sources", json=HARBOUR, headers=BETA)).status_code == 201
        first = (await client.get("/sources", headers=ALPHA)).json()["sources"][0]["sourceId"]
        await client.delete(f"/sources/{first}", headers=ALPHA)
        assert (await client.post("/sources", json=HARBOUR, headers=ALPHA)).status_code == 201


async def test_uploading_a_bad_source_names_the_field(client: httpx.AsyncClient) -> None:
    blank = await client.post("/sources", json={"title": "T", "text": "  "})
    assert (blank.status_code, blank.json()["code"]) == (400, "invalid_source")
    assert "source.text" in blank.json()["error"]
    typed = await client.post("/sources", json={"title": 1, "text": "x"})
    assert (typed.status_code, typed.json()["code"]) == (400, "invalid_request")
    assert "title" in typed.json()["error"]
    assert (await client.get("/sources/not-a-uuid")).status_code == 404


async def test_an_idempotency_key_tells_different_sources_apart(client: httpx.AsyncClient) -> None:
    key = {"Idempotency-Key": "sources-1"}
    first = await client.post("/reports", json={"topic": TOPIC, "sources": [HARBOUR]}, headers=key)
    again = await client.post("/reports", json={"topic": TOPIC, "sources": [HARBOUR]}, headers=key)
    assert again.json() == first.json()
    other = await client.post(
        "/reports", json={"topic": TOPIC, "sources": [LIGHTHOUSE]}, headers=key
    )
    assert other.status_code == 409


async def test_passages_are_searched_in_the_report_language(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    harbour = {"title": "Stadtchronik", "text": "Der Hafen der Stadt wurde 1887 erweitert."}
    german = await client.post(
        "/reports", json={"topic": "Eine Stadt", "language": "German", "sources": [harbour]}
    )
    english = await client.post("/reports", json={"topic": "Eine Stadt", "sources": [harbour]})
    search = PassageSearch(pool)
    # German stemming finds "Hafen" for "Häfen"; English (the default) does not.
    found = await search.search(
        UUID(german.json()["jobId"]), language="German", title="Die Häfen", topic="", limit=4
    )
    assert [p.number for p in found] == [1]
    missed = await search.search(
        UUID(english.json()["jobId"]), language=None, title="Die Häfen", topic="", limit=4
    )
    assert missed == []


@given(st.text(max_size=20) | st.sampled_from(["\x00", "a\x00", "\x1c", "\u3000x", " \t\n", "x"]))
@hyp_settings(max_examples=300, deadline=None)
def test_the_documented_source_text_is_exactly_what_the_handler_accepts(raw: str) -> None:
    settings = make_settings(database_url="postgresql://db/reports")
    validator = jsonschema_rs.Draft202012Validator({"type": "string", "pattern": DOCUMENT_PATTERN})

    def accepted(title: str, text: str) -> bool:
        try:
            clean_document(title, text, "sources[0]", settings)
        except ApiError:
            return False
        return True

    assert bool(validator.is_valid(raw)) == accepted(raw, "text"), repr(raw)
    assert bool(validator.is_valid(raw)) == accepted("title", raw), repr(raw)


async def test_a_report_with_sources_and_a_summary_completes(
    settings: Settings, pool: asyncpg.Pool, stores: Stores, fake_llm: FakeLLMThread
) -> None:
    fake_llm.configure(FakeConfig(outline_titles=TITLES[:2], cite_unknown=True))
    summarised = settings.model_copy(update={"summary_pass": True})
    async with api_client(summarised, pool) as client:
        response = await client.post(
            "/reports", json={"topic": TOPIC, "sections": 2, "sources": [LIGHTHOUSE, HARBOUR]}
        )
        job_id = UUID(response.json()["jobId"])
        async with running_worker(stores, summarised):
            await wait_for_job(stores, job_id)
        report = (await client.get(f"/reports/{job_id}")).json()["report"]
    assert report["summary"]
    assert [r["number"] for r in report["references"]] == [1, 2]
    assert report["citationsRemoved"] == 2


async def test_a_clients_outline_and_a_rewrite_are_grounded_in_the_same_passages(
    client: httpx.AsyncClient, stores: Stores, settings: Settings, fake_llm: FakeLLMThread
) -> None:
    """The two halves together: a client's outline is searched like the model's, and a
    section written again is given the same numbered passages, its invented citations
    removed again."""
    fake_llm.configure(FakeConfig(cite_unknown=True))
    response = await client.post(
        "/reports", json={"topic": TOPIC, "outline": TITLES, "sources": [LIGHTHOUSE, HARBOUR]}
    )
    assert response.status_code == 202, response.text
    job_id = UUID(response.json()["jobId"])
    async with running_worker(stores, settings):
        await wait_for_job(stores, job_id)
    assert fake_llm.stats().calls.get("outline", 0) == 0
    first = (await client.get(f"/reports/{job_id}")).json()
    assert first["status"] == "completed", first
    assert first["report"]["outline"] == TITLES
    assert "[2]" in first["report"]["sections"][TITLES[1]]

    answer = await client.post(
        f"/reports/{job_id}/sections/1/rewrite", json={"instruction": "more about porters"}
    )
    assert answer.status_code == 202, answer.text
    async with running_worker(stores, settings):
        await wait_for_job(stores, job_id)
    prompt = fake_llm.stats().section_prompts[f"{TOPIC} :: {TITLES[1]}"]
    assert "Current text of this section:" in prompt
    assert '[2] from "Harbour trade"' in prompt
    assert "[1] from" not in prompt
    after = (await client.get(f"/reports/{job_id}", params={"history": "true"})).json()
    assert after["status"] == "completed", after
    rewritten = after["report"]["sections"][TITLES[1]]
    assert "Rewritten (more about porters)." in rewritten
    assert "[2]" in rewritten
    assert "[3]" not in rewritten  # the stand-in's invented citation, removed again
    assert after["report"]["sections"][TITLES[0]] == first["report"]["sections"][TITLES[0]]
    assert [r["number"] for r in after["report"]["references"]] == [1, 2]
    assert [h["index"] for h in after["history"]] == [1]
