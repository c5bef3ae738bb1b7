"""API: POST /reports throughput against a bare Litestar handler, and GET tail latency.

Both servers run the same way (one uvicorn process, uvloop, httptools, no access log) and
take the same load in the same run; ours writes the job row (and its NOTIFY) before it
answers 202. GET latency is measured open-loop at a fixed, moderate rate on completed
reports of 8 sections, so queueing in the client cannot hide slow answers.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import asyncpg
import httpx

from bench import loadgen
from bench.harness import children, start_api, wait_http
from reportsvc.embedded import free_port

BODY = '{"topic": "The Roman Empire"}'


async def measure(
    database_url: str, *, seconds: float, connections: int, get_rate: float
) -> dict[str, Any]:
    with children() as group:
        bare_port = free_port()
        group.spawn("bare", ["-m", "bench.bare_app", "--port", str(bare_port)])
        bare = f"http://127.0.0.1:{bare_port}"
        api = start_api(group, database_url)
        await wait_http(f"{bare}/schema")
        await wait_http(f"{api}/healthz")
        # Warm both up, then alternate, so neither gets the quieter moment.
        for url in (f"{bare}/reports", f"{api}/reports"):
            await asyncio.to_thread(
                loadgen.closed_loop, url, body=BODY, connections=connections, seconds=1
            )
        runs: dict[str, list[dict[str, Any]]] = {"bare": [], "ours": []}
        for _ in range(2):
            for name, url in (("bare", f"{bare}/reports"), ("ours", f"{api}/reports")):
                runs[name].append(
                    await asyncio.to_thread(
                        loadgen.closed_loop,
                        url,
                        body=BODY,
                        connections=connections,
                        seconds=seconds / 2,
                    )
                )
        job_urls = await _completed_reports(database_url, api)
        get = await asyncio.to_thread(loadgen.fixed_rate, job_urls, rate=get_rate, seconds=seconds)
    ours = sum(r["rps"] for r in runs["ours"]) / len(runs["ours"])
    bare_rps = sum(r["rps"] for r in runs["bare"]) / len(runs["bare"])
    if any(r["non_2xx"] for rs in runs.values() for r in rs) or get["failures"]:
        raise RuntimeError(f"errors during the API benchmark: {runs} {get}")
    return {
        "tool": runs["ours"][0]["tool"],
        "connections": connections,
        "post_rps_ours": ours,
        "post_rps_bare": bare_rps,
        "post_ratio": ours / bare_rps,
        "post_latency_ms_ours": runs["ours"][-1]["latency_ms"],
        "get_rate": get_rate,
        "get_latency_ms": get["latency_ms"],
    }


async def _completed_reports(database_url: str, api: str, count: int = 50) -> list[str]:
    """Mark some of the posted jobs completed with 8 sections of realistic size."""
    conn = await asyncpg.connect(database_url)
    try:
        ids = [
            r[0]
            for r in await conn.fetch("SELECT id FROM jobs ORDER BY created_at LIMIT $1", count)
        ]
        numerals = ["I", "II", "III", "IV", "V", "VI", "VII", "VIII"]
        titles = [f"{n}. Section title number {n}" for n in numerals]
        await conn.execute(
            """UPDATE jobs SET status = 'completed', outline = $2, sections_total = 8,
                              sections_done = 8, finished_at = now()
               WHERE id = ANY($1::uuid[])""",
            ids,
            titles,
        )
        await conn.execute(
            "UPDATE steps SET status = 'done', finished_at = now() WHERE job_id = ANY($1::uuid[])",
            ids,
        )
        await conn.execute(
            """INSERT INTO steps (job_id, kind, position, title, status, content, finished_at)
               SELECT j, 'section', p - 1, ($2::text[])[p], 'done',
                      repeat('Lorem ipsum dolor. ', 80), now()
               FROM unnest($1::uuid[]) j, generate_series(1, 8) p""",
            ids,
            titles,
        )
    finally:
        await conn.close()
    async with httpx.AsyncClient() as http:
        body = (await http.get(f"{api}/reports/{ids[0]}")).json()
        if body["status"] != "completed" or len(body["report"]["sections"]) != 8:
            print(body, file=sys.stderr)
            raise RuntimeError("completed reports were not set up as expected")
    return [f"{api}/reports/{i}" for i in ids]
