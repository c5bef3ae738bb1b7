"""Scale: a large backlog drained by several worker processes, and claim cost as the
tables fill with finished rows.

`drain`: `reports` queued reports of 8 sections, 4 worker processes, the stand-in model
with no latency. Afterwards every job must be completed, every section done exactly once
(one attempt, one model call), and nothing left queued or running.

`claim_cost`: the claim statement's latency with no finished rows, and again with
100,000 finished steps in the table, plus the plan PostgreSQL uses for it.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import asyncpg
import httpx

from bench.harness import children, start_fake_model, wait_http
from reportsvc.db.engine import init_connection
from reportsvc.queue.sql import literal, load_queries

CLAIM = literal(load_queries("steps.sql")["claim_steps"], claim_limit=10, owner_bound=0)
# The same claim with its parameters written in (worker 'bench', 30 s lease, 10 steps), for
# EXPLAIN.
CLAIM_TEXT = CLAIM.replace("$1", "'bench'").replace("$2", "30").replace("$3", "10")

SECTIONS_PER_JOB = 8


async def drain(database_url: str, *, reports: int, workers: int = 4) -> dict[str, Any]:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            """WITH new AS (
                   INSERT INTO jobs (topic, model, options, deadline_at)
                   SELECT 'scale ' || g, 'fake', jsonb_build_object('sections', $2::int),
                          now() + interval '1 day'
                   FROM generate_series(1, $1) g
                   RETURNING id
               )
               INSERT INTO steps (job_id, kind, priority) SELECT id, 'outline', 1 FROM new""",
            reports,
            SECTIONS_PER_JOB,
        )
        with children() as group:
            model = start_fake_model(group)
            await wait_http(f"{model}/fake/stats")
            env = {"DATABASE_URL": database_url, "OPENAI_BASE_URL": f"{model}/v1"}
            started = time.perf_counter()
            for i in range(workers):
                group.reportsvc(f"worker-{i}", ["worker", "--concurrency", "32"], env)
            while await conn.fetchval(
                "SELECT count(*) FROM jobs WHERE status IN ('outlining', 'writing')"
            ):
                await asyncio.sleep(0.2)
            seconds = time.perf_counter() - started
            async with httpx.AsyncClient() as http:
                stats = (await http.get(f"{model}/fake/stats")).json()
        jobs = dict(await conn.fetch("SELECT status, count(*) FROM jobs GROUP BY status"))
        sections = dict(
            await conn.fetch(
                "SELECT status, count(*) FROM steps WHERE kind = 'section' GROUP BY status"
            )
        )
        retried = await conn.fetchval("SELECT count(*) FROM steps WHERE attempts <> 1")
        writers = await conn.fetchval(
            "SELECT count(DISTINCT claimed_by) FROM steps WHERE kind = 'section'"
        )
    finally:
        await conn.close()
    calls = list(stats["section_calls"].values())
    steps = reports * (SECTIONS_PER_JOB + 1)
    return {
        "reports": reports,
        "workers": workers,
        "seconds": seconds,
        "steps_per_s": steps / seconds,
        "jobs": jobs,
        "sections": sections,
        "sections_retried": retried,
        "workers_that_wrote_sections": writers,
        "model_calls_per_section": {"min": min(calls), "max": max(calls)},
        "ok": (
            jobs == {"completed": reports}
            and sections == {"done": reports * SECTIONS_PER_JOB}
            and retried == 0
            and min(calls) == max(calls) == 1
        ),
    }


async def claim_cost(database_url: str, *, finished: int, samples: int = 200) -> dict[str, Any]:
    """Claim latency (10 rows per claim) with and without `finished` done sections present,
    under the same conditions: freshly vacuumed tables, enough queued rows for both."""
    conn = await asyncpg.connect(database_url)
    await init_connection(conn)
    try:
        await _add_jobs(conn, jobs=samples * 3, status="queued")
        await _vacuum(conn)
        empty = await _claim_latencies(conn, samples)
        empty_server = await _server_times(conn)
        await _add_jobs(conn, jobs=finished // SECTIONS_PER_JOB, status="done")
        await _vacuum(conn)
        full = await _claim_latencies(conn, samples)
        full_server = await _server_times(conn)
        plan = await conn.fetch(
            "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF, SUMMARY OFF) " + CLAIM_TEXT
        )
        counts = dict(await conn.fetch("SELECT status, count(*) FROM steps GROUP BY status"))
    finally:
        await conn.close()
    return {
        "finished_rows": counts.get("done", 0),
        "claim_ms_median_without_finished_rows": statistics.median(empty),
        "claim_ms_median_with_finished_rows": statistics.median(full),
        "ratio": statistics.median(full) / statistics.median(empty),
        "server_ms_without": empty_server,
        "server_ms_with": full_server,
        "plan": [r[0] for r in plan],
    }


async def _vacuum(conn: asyncpg.Connection) -> None:
    await conn.execute("VACUUM ANALYZE steps")
    await conn.execute("VACUUM ANALYZE jobs")


async def _server_times(conn: asyncpg.Connection, samples: int = 30) -> dict[str, float]:
    """Planning and execution time of the claim as PostgreSQL reports them."""
    planning, execution = [], []
    statement = "EXPLAIN (ANALYZE, SUMMARY) " + CLAIM_TEXT
    for _ in range(samples):
        for (line,) in await conn.fetch(statement):
            if line.startswith("Planning Time"):
                planning.append(float(line.split()[2]))
            elif line.startswith("Execution Time"):
                execution.append(float(line.split()[2]))
    return {"planning": statistics.median(planning), "execution": statistics.median(execution)}


async def _claim_latencies(conn: asyncpg.Connection, samples: int) -> list[float]:
    latencies = []
    for _ in range(samples):
        started = time.perf_counter()
        rows = await conn.fetch(CLAIM, "bench", 30.0, 10)  # 10 steps, no bound per owner
        latencies.append((time.perf_counter() - started) * 1000)
        if len(rows) != 10:
            raise RuntimeError("ran out of queued sections while measuring claims")
    return latencies


async def _add_jobs(conn: asyncpg.Connection, *, jobs: int, status: str) -> None:
    """Jobs in `writing` with queued sections, or completed jobs with done sections."""
    done = status == "done"
    await conn.execute(
        """WITH new AS (
               INSERT INTO jobs (topic, model, status, outline, sections_total, sections_done,
                                 deadline_at, finished_at)
               SELECT 'scale', 'fake', $2, ARRAY(SELECT i::text FROM generate_series(1, $3) i),
                      $3, CASE WHEN $4 THEN $3 ELSE 0 END, now() + interval '1 day',
                      CASE WHEN $4 THEN now() END
               FROM generate_series(1, $1)
               RETURNING id
           )
           INSERT INTO steps (job_id, kind, position, title, status, attempts, content,
                              finished_at)
           SELECT new.id, 'section', i - 1, i::text, $5, CASE WHEN $4 THEN 1 ELSE 0 END,
                  CASE WHEN $4 THEN repeat('text ', 200) END, CASE WHEN $4 THEN now() END
           FROM new, generate_series(1, $3) i""",
        jobs,
        "completed" if done else "writing",
        SECTIONS_PER_JOB,
        done,
        "done" if done else "queued",
    )
