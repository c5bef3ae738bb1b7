"""Memory: a worker's resident set size while it writes many sections.

One worker process runs the real pipeline against the stand-in model (over HTTP), for
`sections` sections in reports of 8. RSS is sampled as sections complete; the figure is the
growth from the sample taken after the warm-up (the first 10 %) to the end.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import psutil

from bench.harness import children, start_fake_model, wait_http

SECTIONS_PER_JOB = 8


async def measure(database_url: str, *, sections: int) -> dict[str, Any]:
    jobs = sections // SECTIONS_PER_JOB
    conn = await asyncpg.connect(database_url)
    try:
        with children() as group:
            model = start_fake_model(group, latency=0.02)
            await wait_http(f"{model}/fake/stats")
            worker = group.reportsvc(
                "worker",
                ["worker", "--concurrency", "64"],
                {"DATABASE_URL": database_url, "OPENAI_BASE_URL": f"{model}/v1"},
            )
            process = psutil.Process(worker.process.pid)
            await conn.execute(
                """WITH new AS (
                       INSERT INTO jobs (topic, model, options, deadline_at)
                       SELECT 'memory ' || g, 'fake', jsonb_build_object('sections', $2::int),
                              now() + interval '1 day'
                       FROM generate_series(1, $1) g
                       RETURNING id
                   )
                   INSERT INTO steps (job_id, kind, priority) SELECT id, 'outline', 1 FROM new""",
                jobs,
                SECTIONS_PER_JOB,
            )
            await conn.execute("SELECT pg_notify('reportsvc_work', 'steps')")
            samples: list[tuple[int, float]] = []
            total = jobs * SECTIONS_PER_JOB
            while True:
                done = await conn.fetchval(
                    "SELECT count(*) FROM steps WHERE kind = 'section' AND status = 'done'"
                )
                samples.append((done, process.memory_info().rss / 2**20))
                if done >= total:
                    break
                await asyncio.sleep(0.25)
    finally:
        await conn.close()
    warm = next(rss for done, rss in samples if done >= total * 0.1)
    peak = max(rss for _, rss in samples)
    return {
        "sections": total,
        "rss_mib_after_warmup": round(warm, 1),
        "rss_mib_end": round(samples[-1][1], 1),
        "rss_mib_peak": round(peak, 1),
        "growth_mib": round(samples[-1][1] - warm, 1),
        "samples": [(done, round(rss, 1)) for done, rss in samples[:: max(1, len(samples) // 20)]],
    }
