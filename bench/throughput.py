"""Queue throughput: section rows claimed and completed per second by one worker process.

The worker runs with an in-process no-op step runner (no HTTP, no model), so what is
measured is the queue: claim statements, task dispatch, batched completion statements,
and the job-completion counter. Beside it, in the same run and on the same database server,
PgQueuer drains no-op jobs with one consumer (`bench/pgqueuer_noop.py`). Each side runs in
a fresh child process, alternating, and the median of the rounds is kept.

    python -m bench.throughput ours URL --batch 10 --sections 20000   # one child run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from typing import Any

import asyncpg
import uvloop

from bench.harness import scratch_database
from reportsvc.db.engine import create_pool
from reportsvc.domain import Step, StepKind, StepResult
from reportsvc.logs import configure_logging
from reportsvc.process import freeze_startup_objects
from reportsvc.queue.quotas import QuotaStore
from reportsvc.quota import RateLimits
from reportsvc.runtime import build_worker
from reportsvc.worker import WorkerConfig

SECTIONS_PER_JOB = 8


class NoopRunner:
    """Steps that succeed at once: the queue is all that is left to measure."""

    async def run(self, step: Step) -> StepResult:
        if step.kind is StepKind.OUTLINE:
            return StepResult(titles=[f"{i}" for i in range(step.options.sections)])
        return StepResult(content="ok")


class GatedNoopRunner(NoopRunner):
    """No-op steps that take their model's quota first and settle it after, as a model
    call does: the cost of the shared quota on the queue."""

    def __init__(self, gate: QuotaStore) -> None:
        self.gate = gate

    async def run(self, step: Step) -> StepResult:
        grant = await self.gate.acquire(step.model, 1000)
        if grant.wait:
            await asyncio.sleep(grant.wait)
        result = await super().run(step)
        await self.gate.settle(step.model, grant, 1000, RateLimits())
        return result


async def fill(url: str, sections: int) -> int:
    """Jobs whose outline is written, with `sections` queued section rows in all."""
    jobs = sections // SECTIONS_PER_JOB
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            """INSERT INTO jobs (topic, status, model, options, outline, sections_total,
                                 deadline_at)
               SELECT 'noop ' || g, 'writing', 'noop', jsonb_build_object('sections', $2::int),
                      ARRAY(SELECT i::text FROM generate_series(1, $2) i), $2,
                      now() + interval '1 day'
               FROM generate_series(1, $1) g""",
            jobs,
            SECTIONS_PER_JOB,
        )
        await conn.execute(
            """INSERT INTO steps (job_id, kind, position, title, status, priority)
               SELECT j.id, 'outline', 0, NULL, 'done', 1 FROM jobs j
               ORDER BY j.created_at, j.id"""
        )
        await conn.execute(
            """INSERT INTO steps (job_id, kind, position, title)
               SELECT j.id, 'section', i - 1, i::text FROM jobs j, generate_series(1, $1) i
               ORDER BY j.created_at, j.id, i""",
            SECTIONS_PER_JOB,
        )
        await conn.execute("VACUUM ANALYZE jobs")
        await conn.execute("VACUUM ANALYZE steps")
    finally:
        await conn.close()
    return jobs * SECTIONS_PER_JOB


async def run_ours(url: str, batch: int, rows: int, quota: str = "none") -> dict[str, Any]:
    """In a child process: drain `rows` queued sections with one worker. `quota`: `none`
    (no-op steps), `unlimited` (each takes quota; the model is known to have no limit) or
    `configured` (each takes quota under a limit far above the rate reached)."""
    pool = await create_pool(url, min_size=3, max_size=6)
    runner = NoopRunner()
    if quota != "none":
        gate = QuotaStore(pool)
        limits = {"noop": (1e9, 1e12)} if quota == "configured" else {"noop": (None, None)}
        await gate.configure(limits)
        # One call first, settled: a model's first call learns its limits while the others
        # wait about a second, once in the model's life (what it learned is kept in the
        # database). That would be half of this run; the queue's cost is what is measured.
        grant = await gate.acquire("noop", 1000)
        await gate.settle("noop", grant, 1000, RateLimits())
        await gate.close()
        runner = GatedNoopRunner(gate)
    config = WorkerConfig(
        database_url=url,
        concurrency=batch * 4,
        claim_batch_size=batch,
        listen_notify=False,
        poll_interval_seconds=0.05,
    )
    worker = build_worker(pool, runner, config)
    # As `reportsvc worker` does before it runs: start-up objects (this child imports the
    # worker's whole runtime) are moved out of the collector's way, so full collections
    # during the run scan only what the queue allocates.
    freeze_startup_objects()
    jobs = rows // SECTIONS_PER_JOB
    started = time.perf_counter()
    cpu = time.process_time()
    running = asyncio.create_task(worker.run())
    async with pool.acquire() as conn:
        while await conn.fetchval("SELECT count(*) FROM jobs WHERE status = 'completed'") < jobs:
            await asyncio.sleep(0.005)
    seconds = time.perf_counter() - started
    cpu_used = time.process_time() - cpu
    worker.hurry()
    await running
    await pool.close()
    return {"rows": rows, "seconds": seconds, "rate": rows / seconds, "cpu_seconds": cpu_used}


async def child(*args: str) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.throughput",
        *args,
        stdout=asyncio.subprocess.PIPE,
        env={"LOG_LEVEL": "WARNING", **os.environ},
    )
    out, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"benchmark child {args[0]} failed")
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


async def measure(server_url: str, *, batch: int, rows: int, rounds: int = 2) -> dict[str, Any]:
    ours: list[dict[str, Any]] = []
    theirs: list[dict[str, Any]] = []
    for _ in range(rounds):
        async with scratch_database(server_url, migrated=False) as url:
            theirs.append(await child("pgqueuer", url, "--batch", str(batch), "--rows", str(rows)))
        async with scratch_database(server_url) as url:
            filled = await fill(url, rows)
            ours.append(await child("ours", url, "--batch", str(batch), "--rows", str(filled)))
    our_rate = statistics.median(r["rate"] for r in ours)
    their_rate = statistics.median(r["rate"] for r in theirs)
    return {
        "batch": batch,
        "rows": rows,
        "ours_per_s": our_rate,
        "pgqueuer_per_s": their_rate,
        "ratio": our_rate / their_rate,
        "pgqueuer_version": theirs[0]["version"],
        "rounds": {
            "ours": [round(r["rate"]) for r in ours],
            "pgqueuer": [round(r["rate"]) for r in theirs],
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("side", choices=["ours", "pgqueuer"])
    parser.add_argument("url")
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--quota", choices=["none", "unlimited", "configured"], default="none")
    args = parser.parse_args()
    configure_logging(os.environ.get("LOG_LEVEL", "WARNING"))
    if args.side == "ours":
        result = uvloop.run(run_ours(args.url, args.batch, args.rows, args.quota))
    else:
        from bench.pgqueuer_noop import pgqueuer_noop_rate  # noqa: PLC0415

        measured = uvloop.run(pgqueuer_noop_rate(args.url, batch_size=args.batch, jobs=args.rows))
        result = {
            "rows": measured.jobs,
            "seconds": measured.seconds,
            "rate": measured.rate,
            "version": measured.version,
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
