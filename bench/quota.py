"""The shared model quota and fair turns, with real processes.

`spend`: 4 worker processes (`--concurrency 16` each) and the stand-in model limiting
its callers as a provider does (a token bucket holding one second's worth, 429 with
retry-after-ms beyond it, x-ratelimit-* headers on every answer); 30 reports of 6
sections (210 calls). Measured: the 429s the provider answered against the calls it
served, and the wall time (first job created to last job finished) against what the limit
allows (calls / limit). Three ways: with MODEL_RATE_LIMITS set to the provider's limit,
with nothing configured (the limits learned from the headers), and with a tokens-per-
minute limit.

`turns`: one worker (`--concurrency 8`), 0.5 s per call; owner A queues 60 reports, and
one second later owner B posts one. Measured: B's wall time against its critical path
(2 calls: the outline, then its sections at once).

`gate_cost`: what taking quota costs the queue itself, with no-op steps.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from typing import Any

import asyncpg
import httpx

from bench import throughput
from bench.harness import children, scratch_database, start_api, wait_http
from reportsvc.embedded import free_port

MODEL = "bench-model"


async def spend(
    database_url: str,
    *,
    rpm: float | None,
    tpm: float | None,
    configured: bool,
    reports: int = 30,
    sections: int = 6,
    workers: int = 4,
    latency: float = 0.3,
    section_max_tokens: int = 900,
) -> dict[str, Any]:
    limits = "/".join(part for part in (rpm and f"{rpm:g}rpm", tpm and f"{tpm:g}tpm") if part)
    with children() as group:
        port = free_port()
        args = ["fake-llm", "--port", str(port), "--latency", str(latency)]
        args += ["--rpm", str(rpm)] if rpm else []
        args += ["--tpm", str(tpm)] if tpm else []
        group.reportsvc("fake-llm", args)
        model = f"http://127.0.0.1:{port}"
        await wait_http(f"{model}/fake/stats")
        env = {
            "DATABASE_URL": database_url,
            "OPENAI_BASE_URL": f"{model}/v1",
            "OPENAI_MODEL": MODEL,
            "DEFAULT_SECTIONS": str(sections),
            "SECTION_MAX_TOKENS": str(section_max_tokens),
            "MODEL_RATE_LIMITS": f"{MODEL}={limits}" if configured else "",
        }
        api = start_api(group, database_url, env=env)
        await wait_http(f"{api}/healthz")
        for i in range(workers):
            group.reportsvc(f"worker-{i}", ["worker", "--concurrency", "16"], env)
        await _workers_listening(database_url, workers)
        async with httpx.AsyncClient(timeout=30) as http:
            posted = await asyncio.gather(
                *(http.post(f"{api}/reports", json={"topic": f"Quota {i}"}) for i in range(reports))
            )
            ids = [r.json()["jobId"] for r in posted]
            await _until_finished(database_url, ids)
            stats = (await http.get(f"{model}/fake/stats")).json()
            timeline = (await http.get(f"{model}/fake/timeline")).json()
    wall = await _wall(database_url, ids)
    arrivals = [t for t, _, _ in timeline]
    gaps = sorted(b - a for a, b in itertools.pairwise(arrivals))
    served = stats["statuses"].get("200", 0)
    refused = stats["statuses"].get("429", 0)
    calls = reports * (1 + sections)
    # What the limit allows: the calls at the request limit, the tokens the provider
    # counted at the token limit, whichever takes longer.
    allowed_seconds = max(
        calls / (rpm / 60) if rpm else 0.0, stats["booked_tokens"] / (tpm / 60) if tpm else 0.0
    )
    result: dict[str, Any] = {
        "configured": configured,
        "rpm": rpm,
        "tpm": tpm,
        "calls": calls,
        "served": served,
        "answered_429": refused,
        "ratio_429": refused / served,
        "wall_s": wall,
        "calls_span_s": arrivals[-1] - arrivals[0] if arrivals else 0.0,
        "gap_median_s": gaps[len(gaps) // 2] if gaps else 0.0,
        "gap_max_s": gaps[-1] if gaps else 0.0,
    }
    result["tokens_counted"] = stats["booked_tokens"]
    result["allowed_s"] = allowed_seconds
    result["wall_over_allowed"] = wall / allowed_seconds
    return result


async def turns(database_url: str, *, backlog: int = 60, latency: float = 0.5) -> dict[str, Any]:
    with children() as group:
        port = free_port()
        group.reportsvc("fake-llm", ["fake-llm", "--port", str(port), "--latency", str(latency)])
        model = f"http://127.0.0.1:{port}"
        await wait_http(f"{model}/fake/stats")
        env = {
            "DATABASE_URL": database_url,
            "OPENAI_BASE_URL": f"{model}/v1",
            "API_TOKENS": "owner-a-token,owner-b-token",
            "DEFAULT_SECTIONS": "6",
        }
        api = start_api(group, database_url, env=env)
        await wait_http(f"{api}/healthz")
        group.reportsvc("worker", ["worker", "--concurrency", "8"], env)
        await _workers_listening(database_url, 1)
        a = {"Authorization": "Bearer owner-a-token"}
        b = {"Authorization": "Bearer owner-b-token"}
        async with httpx.AsyncClient(timeout=30) as http:
            backlog_ids = [
                (await http.post(f"{api}/reports", json={"topic": f"A {i}"}, headers=a)).json()[
                    "jobId"
                ]
                for i in range(backlog)
            ]
            await asyncio.sleep(1.0)
            lone = (await http.post(f"{api}/reports", json={"topic": "B"}, headers=b)).json()[
                "jobId"
            ]
            await _until_finished(database_url, [lone])
            b_wall = await _wall(database_url, [lone])
            done_before = await _count_completed(database_url, backlog_ids)
    critical = 2 * latency
    return {
        "backlog": backlog,
        "latency_s": latency,
        "b_wall_s": b_wall,
        "critical_path_s": critical,
        "ratio": b_wall / critical,
        "a_reports_completed_before_b": done_before,
    }


async def _workers_listening(database_url: str, workers: int, timeout: float = 120) -> None:
    """Wait until every worker has started (each holds a LISTEN connection once it runs)."""
    conn = await asyncpg.connect(database_url)
    try:
        deadline = time.monotonic() + timeout
        while (
            await conn.fetchval(
                """SELECT count(*) FROM pg_stat_activity
               WHERE application_name = 'reportsvc-listen' AND datname = current_database()"""
            )
            < workers
        ):
            if time.monotonic() > deadline:
                raise TimeoutError("workers did not start")
            await asyncio.sleep(0.1)
    finally:
        await conn.close()


async def _until_finished(database_url: str, ids: list[str], timeout: float = 600) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        deadline = time.monotonic() + timeout
        while await conn.fetchval(
            "SELECT count(*) FROM jobs WHERE id = ANY($1::uuid[]) AND status IN "
            "('outlining', 'writing')",
            ids,
        ):
            if time.monotonic() > deadline:
                raise TimeoutError("reports did not finish")
            await asyncio.sleep(0.1)
        failed = await conn.fetchval(
            "SELECT count(*) FROM jobs WHERE id = ANY($1::uuid[]) AND status <> 'completed'", ids
        )
        if failed:
            raise RuntimeError(f"{failed} reports did not complete")
    finally:
        await conn.close()


async def _wall(database_url: str, ids: list[str]) -> float:
    conn = await asyncpg.connect(database_url)
    try:
        seconds: float = await conn.fetchval(
            """SELECT extract(epoch FROM max(finished_at) - min(created_at))::float8
               FROM jobs WHERE id = ANY($1::uuid[])""",
            ids,
        )
    finally:
        await conn.close()
    return seconds


async def _count_completed(database_url: str, ids: list[str]) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM jobs WHERE id = ANY($1::uuid[]) AND status = 'completed'", ids
        )
    finally:
        await conn.close()
    return count


async def gate_cost(server_url: str, *, rows: int, rounds: int = 11) -> dict[str, Any]:
    """Queue throughput (no-op steps, one worker, claims of 10) when each step takes its
    model's quota as a model call does, against the same steps taking none: with the model
    known to have no limit, and with a limit configured far above the rate reached.

    A single run's rate moves by a quarter from one run to the next on a shared machine,
    more than what is measured, so each round runs the three one after another (in an
    order turned by one each round, so none always goes first) and the figure is the median
    over the rounds of each round's own ratio. The worker's CPU time per step is kept too:
    it does not move with what else the machine is doing."""
    quotas = ["none", "unlimited", "configured"]
    runs: dict[str, list[dict[str, Any]]] = {quota: [] for quota in quotas}
    for round_ in range(rounds):
        for quota in quotas[round_ % 3 :] + quotas[: round_ % 3]:
            async with scratch_database(server_url) as url:
                filled = await throughput.fill(url, rows)
                result = await throughput.child(
                    "ours", url, "--batch", "10", "--rows", str(filled), "--quota", quota
                )
            runs[quota].append(result)

    def paired(quota: str, key: str) -> float:
        ratios: list[float] = [
            gated[key] / plain[key] for gated, plain in zip(runs[quota], runs["none"], strict=True)
        ]
        return statistics.median(ratios)

    return {
        "rows": rows,
        "per_s": {quota: statistics.median(r["rate"] for r in runs[quota]) for quota in quotas},
        "rounds": {quota: [round(r["rate"]) for r in runs[quota]] for quota in quotas},
        "cpu_us_per_step": {
            quota: statistics.median(r["cpu_seconds"] / r["rows"] * 1e6 for r in runs[quota])
            for quota in quotas
        },
        "unlimited_ratio": paired("unlimited", "rate"),
        "configured_ratio": paired("configured", "rate"),
        "unlimited_cpu_ratio": paired("unlimited", "cpu_seconds"),
        "configured_cpu_ratio": paired("configured", "cpu_seconds"),
    }
