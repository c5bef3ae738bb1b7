"""What running behind PgBouncer costs: named prepared statements off, and the pooler's hop.

    python -m bench.pooler                 # DATABASE_URL's server, or an embedded one
    python -m bench.pooler --claims 3000 --json

With `DATABASE_POOLER=pgbouncer` asyncpg sends every statement unnamed: it asks the server
to parse and describe it (one round trip, for the types), then parses it again with its
parameters and runs it (a second round trip). With named prepared statements the parse is
done once per connection and each call is one round trip. The planner runs on every call
either way: the claim's plan depends on its LIMIT, so PostgreSQL keeps choosing custom
plans (DEVLOG, "The claim").

Three ways to the same server, each on a fresh, filled queue, alternating, medians kept:
- direct, prepared: what DATABASE_POOLER=none does today;
- direct, unprepared: DATABASE_POOLER=pgbouncer's driver behaviour, without the pooler;
- PgBouncer, unprepared: what an operator behind PgBouncer gets (PgBouncer 1.18 in
  transaction mode on the same machine), when the `pgbouncer` program is installed.

For each, wall time per call and the client's CPU per call, for:
- `claim`: a batch of 10 sections claimed as a worker does (`StepQueue.claim`), committed,
  so each call includes the commit's WAL flush;
- `claim, rolled back`: the same statement inside BEGIN ... ROLLBACK (two more round trips,
  the same on every path, but no flush): the statement's own cost;
- `get_job`: the API's read of one job (`ReportStore.get_job`, GET /reports/{id}).
And the claim's planning time on the server as EXPLAIN ANALYZE reports it, as a named
prepared statement (EXECUTE) and unnamed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg

from bench.harness import scratch_database
from bench.throughput import fill
from reportsvc.db.engine import create_pool
from reportsvc.embedded import EmbeddedPostgres, PgBouncer, pgbouncer_binary
from reportsvc.queue.notifications import Publisher
from reportsvc.queue.reports import ReportStore
from reportsvc.queue.sql import literal, load_queries
from reportsvc.queue.steps import StepQueue
from reportsvc.settings import normalize_database_url

BATCH = 10
CLAIM = literal(load_queries("steps.sql")["claim_steps"], claim_limit=BATCH, owner_bound=0)
STATEMENTS = ("claim", "claim, rolled back", "get_job")


def _stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median": statistics.median(ordered),
        "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
    }


async def _timed(calls: int, call: Callable[[], Awaitable[object]]) -> dict[str, float]:
    wall: list[float] = []
    cpu = time.process_time()
    for _ in range(calls):
        started = time.perf_counter()
        await call()
        wall.append((time.perf_counter() - started) * 1000)
    stats = _stats(wall)
    stats["cpu_us"] = (time.process_time() - cpu) / calls * 1e6
    return stats


async def measure_path(url: str, *, prepared: bool, claims: int) -> dict[str, Any]:
    """Claims and job reads through `url`, one connection, prepared or not."""
    pool = await create_pool(url, min_size=1, max_size=1, prepared_statements=prepared)
    publisher = Publisher(pool)
    queue, reports = StepQueue(pool, publisher), ReportStore(pool, publisher)
    try:
        job_id: UUID = await pool.fetchval("SELECT id FROM jobs LIMIT 1")
        for _ in range(20):  # warm the connection, its caches and the server's
            await reports.get_job(job_id)
        claim = await _timed(claims, lambda: queue.claim("bench", BATCH, 600.0))

        async def claim_rolled_back() -> None:
            async with pool.acquire() as conn:
                tx = conn.transaction()
                await tx.start()
                try:
                    await conn.fetch(CLAIM, "bench", 600.0, BATCH)
                finally:
                    await tx.rollback()

        rolled_back = await _timed(claims, claim_rolled_back)
        read = await _timed(claims, lambda: reports.get_job(job_id))
    finally:
        await publisher.close()
        await pool.close()
    return {"claim": claim, "claim, rolled back": rolled_back, "get_job": read}


async def planning_ms(url: str, rounds: int = 200) -> dict[str, float]:
    """The claim's planning time on the server (EXPLAIN ANALYZE, rolled back), as a named
    prepared statement (EXECUTE, past the plan cache's first five custom plans) and unnamed."""
    query = CLAIM
    conn = await asyncpg.connect(url)
    prepared: list[float] = []
    unnamed: list[float] = []
    try:
        await conn.execute(f"PREPARE claim(text, float8, int) AS {query}")
        for i in range(rounds):
            tx = conn.transaction()
            await tx.start()
            try:
                plan = await conn.fetchval(
                    f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE claim('bench', 600, {BATCH})"
                )
                if i >= 6:
                    prepared.append(json.loads(plan)[0]["Planning Time"])
                plan = await conn.fetchval(
                    f"EXPLAIN (ANALYZE, FORMAT JSON) {query}", "bench", 600.0, BATCH
                )
                unnamed.append(json.loads(plan)[0]["Planning Time"])
            finally:
                await tx.rollback()
    finally:
        await conn.close()
    return {"prepared": statistics.median(prepared), "unnamed": statistics.median(unnamed)}


@asynccontextmanager
async def _bouncer(server_url: str) -> AsyncIterator[PgBouncer | None]:
    if pgbouncer_binary() is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="reportsvc-bench-pgbouncer-") as directory:
        bouncer = PgBouncer(server_url, Path(directory) / "pgbouncer", pool_size=2)
        await asyncio.to_thread(bouncer.start)
        try:
            yield bouncer
        finally:
            bouncer.stop()


async def measure(server_url: str, *, claims: int, rounds: int) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {}
    plans: list[dict[str, float]] = []
    async with _bouncer(server_url) as bouncer:
        for _ in range(rounds):
            ways: list[tuple[str, Callable[[str], str], bool]] = [
                ("direct, prepared", str, True),
                ("direct, unprepared", str, False),
            ]
            if bouncer is not None:
                ways.append(("PgBouncer, unprepared", bouncer.url_for, False))
            for name, route, prepared in ways:
                async with scratch_database(server_url) as url:
                    # Enough that neither kind of claim runs the queue dry.
                    await fill(url, claims * BATCH * 2 + 1000)
                    result = await measure_path(route(url), prepared=prepared, claims=claims)
                    runs.setdefault(name, []).append(result)
                    if name == "direct, prepared":
                        plans.append(await planning_ms(url))
    summary: dict[str, Any] = {
        name: {
            statement: {
                key: statistics.median(r[statement][key] for r in results)
                for key in ("median", "p99", "cpu_us")
            }
            for statement in STATEMENTS
        }
        for name, results in runs.items()
    }
    summary["claim planning ms"] = {
        key: statistics.median(p[key] for p in plans) for key in ("prepared", "unnamed")
    }
    summary["claims per run"] = claims
    summary["rounds"] = rounds
    return summary


def _print(summary: dict[str, Any]) -> None:
    print(f"{summary['claims']:,} claims of {BATCH} sections and as many job reads per run")
    print(f"{'path':<24} {'statement':<20} {'median ms':>10} {'p99 ms':>8} {'CPU µs':>8}")
    for name, statements in summary.items():
        if not isinstance(statements, dict) or "claim" not in statements:
            continue
        for statement, stats in statements.items():
            print(
                f"{name:<24} {statement:<20} {stats['median']:>10.3f} {stats['p99']:>8.3f} "
                f"{stats['cpu_us']:>8.0f}"
            )
    plan = summary["claim planning ms"]
    print(
        f"claim planning on the server: prepared {plan['prepared']:.3f} ms, "
        f"unnamed {plan['unnamed']:.3f} ms"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claims", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    embedded = None
    if url := os.environ.get("DATABASE_URL"):
        server_url = normalize_database_url(url)
    else:
        embedded = EmbeddedPostgres(
            Path(tempfile.mkdtemp(prefix="reportsvc-bench-")), durable=False
        )
        server_url = embedded.start()
    try:
        summary = await measure(server_url, claims=args.claims, rounds=args.rounds)
    finally:
        if embedded is not None:
            embedded.destroy()
    summary["claims"] = args.claims
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print(summary)


if __name__ == "__main__":
    asyncio.run(main())
