"""What /metrics costs the database, as finished jobs pile up.

The API refreshes its queue gauges from the database at most every few seconds, shared by
every scraper; what is measured here is one refresh (jobs under way by status, and the
queue's state per kind of step), with few finished jobs and again with `finished` of them.
Beside it, the full count by status that /metrics used to run on every scrape.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import asyncpg

from bench.harness import scratch_database
from reportsvc.db.engine import create_pool
from reportsvc.queue.notifications import Publisher
from reportsvc.queue.operations import OperationsStore

FULL_COUNT = "SELECT status, count(*) FROM jobs GROUP BY status"


async def measure(server_url: str, *, finished: int, samples: int = 100) -> dict[str, Any]:
    """Two databases side by side, one with 1,000 finished jobs and one with `finished`,
    sampled alternately so that the machine's noise falls on both alike."""
    async with scratch_database(server_url) as few_url, scratch_database(server_url) as many_url:
        few = await _side(few_url, 1000)
        many = await _side(many_url, finished)
        try:
            times: dict[str, list[float]] = {}
            for _ in range(samples):
                for name, (pool, store) in (("few", few), ("many", many)):
                    for key, value in (await _sample(pool, store)).items():
                        times.setdefault(f"{key}_{name}", []).append(value)
        finally:
            for pool, store in (few, many):
                await store.publisher.close()
                await pool.close()
    median = {key: statistics.median(values) for key, values in times.items()}
    return {
        "finished_jobs": finished,
        "refresh_ms_few": median["refresh_few"],
        "refresh_ms_many": median["refresh_many"],
        "ratio": median["refresh_many"] / median["refresh_few"],
        "full_count_ms_few": median["full_count_few"],
        "full_count_ms_many": median["full_count_many"],
    }


async def _side(url: str, finished: int) -> tuple[asyncpg.Pool, OperationsStore]:
    pool = await create_pool(url, min_size=1, max_size=2)
    await _jobs(pool, 200, finished=False)  # some work under way, as in production
    await _jobs(pool, finished, finished=True)
    return pool, OperationsStore(pool, Publisher(pool))


async def _sample(pool: asyncpg.Pool, store: OperationsStore) -> dict[str, float]:
    started = time.perf_counter()
    await store.job_counts()
    await store.queue_stats()
    refresh = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    await pool.fetch(FULL_COUNT)
    return {"refresh": refresh, "full_count": (time.perf_counter() - started) * 1000}


async def _jobs(pool: asyncpg.Pool, count: int, *, finished: bool) -> None:
    await pool.execute(
        """WITH new AS (
               INSERT INTO jobs (topic, model, status, outline, sections_total, sections_done,
                                 deadline_at, finished_at)
               SELECT 'metrics', 'm', $2, ARRAY['I. A'], 1, CASE WHEN $3 THEN 1 ELSE 0 END,
                      now() + interval '1 day', CASE WHEN $3 THEN now() END
               FROM generate_series(1, $1)
               RETURNING id
           )
           INSERT INTO steps (job_id, kind, position, title, status)
           SELECT id, 'section', 0, 'I. A', CASE WHEN $3 THEN 'done' ELSE 'queued' END
           FROM new""",
        count,
        "completed" if finished else "writing",
        finished,
    )
    await pool.execute("VACUUM ANALYZE jobs")
    await pool.execute("VACUUM ANALYZE steps")
