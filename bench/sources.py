"""Sources: does each section get the passage that holds its fact, are its citations
real, and how long does a section's search take with 10,000 passages stored?

`evaluate`: for each town of the corpus (`bench/corpus.py`), a report is created with the
town's five documents and, as distractors, the five of the next town (same aspects often,
another town): ten documents, about forty passages. The stand-in model is told to outline
the report with the town's section titles, and to cite, in every section, the passages
it was given and one number it was not. A worker writes the reports through the real
pipeline over HTTP. Measured:

- recall@k: the fraction of sections whose prompt carried the passage holding the fact
  planted for that section (the model's prompt, as the stand-in model received it);
- citation validity: the fraction of citations in the finished report that name a passage
  that section's prompt carried (before cleaning: as the model wrote them);
- citations removed, as the report counts them.

`retrieval_time`: 10,000 passages stored (the corpus, again and again: jobs of one
evaluated report's size, and one job as large as the default SOURCES_MAX_CHARACTERS
allows), then the search of one section, timed from the worker's side (round trip
included), for titles of every aspect; and the same with one job holding all 10,000, far
beyond what the default limits let a report have (for comparison).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any
from uuid import UUID

from bench.corpus import Document, Topic, corpus
from reportsvc.db.engine import create_pool
from reportsvc.domain import JobOptions, JobStatus
from reportsvc.llm.fake import FakeConfig, FakeLLMThread
from reportsvc.queue.notifications import Publisher
from reportsvc.queue.reports import JobSources, NewPassage, ReportStore
from reportsvc.queue.sources import PassageSearch
from reportsvc.queue.sql import load_queries
from reportsvc.runtime import build_worker, model_client, report_pipeline, worker_config
from reportsvc.settings import Settings
from reportsvc.sources.citations import cited_numbers
from reportsvc.sources.passages import search_config, split_passages

MODEL = "bench-model"
SEARCH = load_queries("sources.sql")["search_passages"]


def _passages(topics: list[Topic]) -> list[NewPassage]:
    return [
        NewPassage(i, None, document.title, piece)
        for i, document in enumerate(d for t in topics for d in t.documents)
        for piece in split_passages(document.text)
    ]


async def _create(store: ReportStore, topic: str, passages: list[NewPassage], n: int) -> UUID:
    job_id = await store.create_job(
        topic=topic,
        model=MODEL,
        options=JobOptions(sections=n, sources=len({p.document for p in passages})),
        idempotency_key=None,
        timeout_seconds=3600,
        sources=JobSources(passages, search_config(None)),
    )
    assert job_id is not None
    return job_id


async def evaluate(database_url: str, *, k: int = 4) -> dict[str, Any]:
    topics = corpus()
    fake = FakeLLMThread().start()
    pool = await create_pool(database_url, min_size=1, max_size=8)
    publisher = Publisher(pool)
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        openai_base_url=fake.base_url,
        openai_model=MODEL,
        passages_per_section=k,
    )
    model = await model_client(settings, pool)
    store = ReportStore(pool, publisher)
    sections = carried = cited = valid = removed = 0
    try:
        for i, topic in enumerate(topics):
            distractor = topics[(i + 1) % len(topics)]
            titles = topic.section_titles()
            fake.configure(FakeConfig(outline_titles=list(titles.values()), cite_unknown=True))
            fake.reset()
            passages = _passages([topic, distractor])
            job_id = await _create(store, topic.report_topic, passages, len(titles))
            worker = build_worker(
                pool,
                report_pipeline(settings, model, passages=PassageSearch(pool)),
                worker_config(settings, concurrency=8),
                publisher=publisher,
            )
            task = asyncio.create_task(worker.run())
            job = await _finished(store, job_id)
            worker.stop()
            await task
            assert job.status is JobStatus.COMPLETED, job.error
            prompts = {
                key.split(" :: ", 1)[1]: text for key, text in fake.stats().section_prompts.items()
            }
            by_number = dict(enumerate(passages, start=1))
            for document in topic.documents:
                numbered = next(t for t in job.outline or [] if t.endswith(titles[document.aspect]))
                prompt = prompts[numbered]
                given = {n for n in by_number if f"[{n}] from " in prompt}
                fact_at = {n for n, p in by_number.items() if document.fact in p.text}
                sections += 1
                carried += bool(given & fact_at)
                text = job.done_sections[numbered]
                numbers = cited_numbers(text)
                cited += len(numbers)
                valid += len(numbers & given)
            removed += job.citations_removed
    finally:
        await model.close()
        await publisher.close()
        await pool.close()
        fake.stop()
    return {
        "reports": len(topics),
        "sections": sections,
        "k": k,
        "recall_at_k": carried / sections,
        "citations": cited,
        "citation_validity": valid / cited if cited else 1.0,
        "citations_removed": removed,
        # The stand-in model cites each number once per section.
        "citation_validity_before_cleaning": cited / (cited + removed) if cited else 0.0,
    }


async def _finished(store: ReportStore, job_id: UUID, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        job = await store.get_job(job_id)
        assert job is not None
        if job.status in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED):
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job.status}"
        await asyncio.sleep(0.05)


async def retrieval_time(
    database_url: str, *, stored: int = 10_000, searches: int = 400
) -> dict[str, Any]:
    """Search times (ms) with `stored` passages in the table, in a job the size of an
    evaluated report and in the largest job SOURCES_MAX_CHARACTERS allows by default; then
    with all of them in one job (about 30 times what the default allows)."""
    topics = corpus()
    titles = [(t.report_topic, title) for t in topics for title in t.section_titles().values()]
    pool = await create_pool(database_url, min_size=1, max_size=4)
    publisher = Publisher(pool)
    store = ReportStore(pool, publisher)
    search = PassageSearch(pool)
    try:
        one_report = _passages(topics[:2])  # ten documents, as evaluated above
        # The largest job the default limits allow: SOURCES_MAX_CHARACTERS of documents.
        limit = Settings.model_fields["sources_max_characters"].default
        largest_passages = _passages(_largest(topics, limit))
        largest = await _create(store, topics[0].report_topic, largest_passages, 5)
        jobs = [
            await _create(store, topics[0].report_topic, one_report, 5)
            for _ in range((stored - len(largest_passages)) // len(one_report))
        ]
        if rest := (stored - len(largest_passages)) % len(one_report):
            jobs.append(await _create(store, topics[0].report_topic, one_report[:rest], 5))
        await pool.execute("ANALYZE job_passages")
        spread_total = await pool.fetchval("SELECT count(*) FROM job_passages")
        spread = await _time(search, jobs[len(jobs) // 2], titles, searches)
        at_limit = await _time(search, largest, titles, searches)
        plan = [
            r[0]
            for r in await pool.fetch(
                f"EXPLAIN {SEARCH}", jobs[0], "english", titles[0][1], titles[0][0], 4
            )
        ]
        await pool.execute("DELETE FROM jobs")
        everything = _passages(topics)
        big = (everything * (stored // len(everything) + 1))[:stored]
        giant = await _create(store, topics[0].report_topic, big, 5)
        await pool.execute("ANALYZE job_passages")
        single = await _time(search, giant, titles, searches)
    finally:
        await publisher.close()
        await pool.close()
    return {
        "stored": spread_total,
        "per_report": {"jobs": len(jobs), "passages": len(one_report), **spread},
        "largest_allowed": {"passages": len(largest_passages), **at_limit},
        "one_job": {"passages": stored, **single},
        "plan": plan,
    }


def _largest(topics: list[Topic], characters: int) -> list[Topic]:
    """The corpus's documents, again and again, up to `characters` in all."""
    documents: list[Document] = []
    total = 0
    while True:
        for document in (d for t in topics for d in t.documents):
            if total + len(document.text) > characters:
                return [Topic(topics[0].town, documents)]
            documents.append(document)
            total += len(document.text)


async def _time(
    search: PassageSearch, job_id: UUID, titles: list[tuple[str, str]], searches: int
) -> dict[str, float]:
    times = []
    for i in range(searches):
        topic, title = titles[i % len(titles)]
        started = time.perf_counter()
        await search.search(job_id, language=None, title=title, topic=topic, limit=4)
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {
        "median_ms": statistics.median(times),
        "p95_ms": times[int(len(times) * 0.95) - 1],
    }
