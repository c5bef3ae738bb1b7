"""Orchestration overhead: a report's wall time against its critical path.

With a model that answers every call after exactly L seconds, a report of N sections cannot
finish faster than 2L: the outline, then all sections at once. The wall time of each report
is taken from the database (`finished_at - created_at`: from the insert to the commit that
completed it), so client-side noise does not count.
"""

from __future__ import annotations

import asyncio
import statistics
from typing import Any

import asyncpg
import httpx

from bench.harness import children, cpu_seconds, start_api, start_fake_model, summary, wait_http


async def measure(
    database_url: str, *, reports: int, latency: float, sections: int, workers: int = 1
) -> dict[str, Any]:
    with children() as group:
        model = start_fake_model(group, latency=latency)
        env = {
            "DATABASE_URL": database_url,
            "OPENAI_BASE_URL": f"{model}/v1",
            "DEFAULT_SECTIONS": str(sections),
            "CLAIM_BATCH_SIZE": "100",
        }
        api = start_api(group, database_url, env=env)
        concurrency = reports * (sections + 1) // workers + 16
        for i in range(workers):
            group.reportsvc(f"worker-{i}", ["worker", "--concurrency", str(concurrency)], env)
        await wait_http(f"{model}/fake/stats")
        await wait_http(f"{api}/healthz")
        async with httpx.AsyncClient(timeout=30) as http:
            # Warm-up report, not measured: first connections, first SDK call.
            await _run(http, api, ["warm-up"], database_url)
            before = cpu_seconds(group)
            job_ids = await _run(http, api, [f"overhead {i}" for i in range(reports)], database_url)
            cpu = {
                name: round(after - before[name], 3) for name, after in cpu_seconds(group).items()
            }
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            """SELECT extract(epoch FROM finished_at - created_at) AS wall, status,
                      sections_total
               FROM jobs WHERE id = ANY($1::uuid[])""",
            job_ids,
        )
        phases = await conn.fetch(PHASES, job_ids)
    finally:
        await conn.close()
    if {r["status"] for r in rows} != {"completed"} or {r["sections_total"] for r in rows} != {
        sections
    }:
        raise RuntimeError(f"unexpected outcome: {[dict(r) for r in rows][:3]}")
    walls = [float(r["wall"]) for r in rows]
    critical = 2 * latency
    return {
        "reports": reports,
        "sections": sections,
        "workers": workers,
        "latency_s": latency,
        "critical_path_s": critical,
        "wall_s": summary(walls),
        "ratio_median": summary(walls)["median"] / critical,
        "ratio_max": max(walls) / critical,
        "cpu_seconds": cpu,
        "phases_ms": {
            name: {"median": round(statistics.median(v), 1), "max": round(max(v), 1)}
            for name in PHASE_NAMES
            for v in [[float(p[name]) * 1000 for p in phases]]
        },
    }


# Where a report's time goes, from the rows' own timestamps (all set by the database).
PHASE_NAMES = ("pickup", "outline", "section_claim", "sections", "completion")
PHASES = """
SELECT extract(epoch FROM o.started_at - j.created_at) AS pickup,
       extract(epoch FROM min(s.created_at) - o.started_at) AS outline,
       extract(epoch FROM max(s.started_at) - min(s.created_at)) AS section_claim,
       extract(epoch FROM max(s.finished_at) - max(s.started_at)) AS sections,
       extract(epoch FROM j.finished_at - max(s.finished_at)) AS completion
FROM jobs j
JOIN steps o ON o.job_id = j.id AND o.kind = 'outline'
JOIN steps s ON s.job_id = j.id AND s.kind = 'section'
WHERE j.id = ANY($1::uuid[])
GROUP BY j.id, o.started_at
"""


async def _run(
    http: httpx.AsyncClient, api: str, topics: list[str], database_url: str
) -> list[str]:
    responses = await asyncio.gather(
        *(http.post(f"{api}/reports", json={"topic": topic}) for topic in topics)
    )
    job_ids = [r.json()["jobId"] for r in responses]
    conn = await asyncpg.connect(database_url)
    try:
        while await conn.fetchval(
            "SELECT count(*) FROM jobs WHERE id = ANY($1::uuid[]) AND status = 'completed'",
            job_ids,
        ) < len(job_ids):
            await asyncio.sleep(0.05)
    finally:
        await conn.close()
    return job_ids
