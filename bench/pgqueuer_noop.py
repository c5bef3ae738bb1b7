"""How many no-op jobs per second PgQueuer drains with one consumer, for a given batch size.

    python bench/pgqueuer_noop.py postgresql://postgres@127.0.0.1:5432/DBNAME \\
        --batch-size 10 --jobs 20000

The database must be empty and exist only for this measurement: the schema is installed
into it. The number is the baseline our own queue's throughput is compared against in the
same run, so it measures PgQueuer the way PgQueuer measures itself, on its fast path.

It mirrors the "drain" strategy of PgQueuer's own benchmark (``tools/benchmark.py`` in
its repository, ``--strategy drain``):

- setup, not timed: install the schema (what ``pgq install`` does, with its default,
  fully logged ``durable`` tables), then enqueue every job up front with the batch form
  of ``Queries.enqueue`` (one statement per chunk of 10,000, empty payloads, priority 0);
- one consumer: a ``PgQueuer`` over a single asyncpg connection (``AsyncpgDriver``, the
  benchmark's default ``apg`` driver), with entrypoints registered without a concurrency
  limit and ``run()`` called with ``max_concurrent_tasks`` left unset, so the dequeue
  statement is the plain pick-and-claim without the capacity or worker-budget gates;
  every other ``run()`` setting is left at its default, as the benchmark does;
- timed: from just before ``PgQueuer.run(batch_size=..., mode=drain)`` until it returns.
  Drain mode returns once nothing is queued and every dispatched job has finished, and
  the run only ends after the last buffered status batch is written, which is the
  statement that deletes a job from the queue table and logs it: when the clock stops,
  every job has been dequeued, handled and acknowledged. Startup (schema check, LISTEN)
  and the final flush are inside the timed span, as in PgQueuer's benchmark.

The differences from that benchmark: one consumer instead of its default five (we compare
single consumer processes), one async entrypoint instead of a random mix of an async and
a sync one (1.x accepts only ``async def`` entrypoints), a counter instead of a tqdm
progress bar in the handler, and ``ANALYZE`` on the freshly filled tables before the
clock starts, so autovacuum's first analyze cannot land at a random point of the
measured span. The event loop is the caller's; run as a script it uses uvloop like the
benchmark does, unless ``--loop asyncio`` is given.

After the run, the queue table must be empty and the log must hold one ``successful``
row per job, or the measurement is rejected.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib.metadata
import json
import sys
import time
from collections.abc import Coroutine
from typing import Literal

import asyncpg
from pgqueuer import PgQueuer
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import Job
from pgqueuer.queries import Queries
from pgqueuer.types import QueueExecutionMode

ENTRYPOINT = "noop"
ENQUEUE_CHUNK = 10_000


@dataclasses.dataclass(frozen=True)
class PgQueuerResult:
    jobs: int
    seconds: float
    rate: float  # jobs per second
    batch_size: int
    version: str


def pgqueuer_version() -> str:
    return importlib.metadata.version("pgqueuer")


async def _install_and_enqueue(database_url: str, jobs: int) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        queries = Queries(AsyncpgDriver(connection))
        await queries.install()
        remaining = jobs
        while remaining > 0:
            n = min(ENQUEUE_CHUNK, remaining)
            await queries.enqueue([ENTRYPOINT] * n, [b""] * n, [0] * n)
            remaining -= n
        settings = queries.qbe.settings
        await connection.execute(f"ANALYZE {settings.queue_table}, {settings.queue_table_log}")
    finally:
        await connection.close()


async def _check_drained(queries: Queries, jobs: int) -> None:
    settings = queries.qbe.settings
    rows = await queries.driver.fetch(
        f"SELECT (SELECT count(*) FROM {settings.queue_table}) AS left_in_queue, "
        f"(SELECT count(*) FROM {settings.queue_table_log} "
        "WHERE status = 'successful') AS successful"
    )
    left, successful = rows[0]["left_in_queue"], rows[0]["successful"]
    if left != 0 or successful != jobs:
        raise RuntimeError(
            f"PgQueuer did not drain the queue: {left} jobs left in it, "
            f"{successful} of {jobs} logged as successful"
        )


async def pgqueuer_noop_rate(
    database_url: str, *, batch_size: int, jobs: int = 20_000
) -> PgQueuerResult:
    """Drain `jobs` no-op jobs with one PgQueuer consumer dequeuing `batch_size` at a time."""
    if batch_size < 1 or jobs < 1:
        raise ValueError("batch_size and jobs must be positive")
    await _install_and_enqueue(database_url, jobs)

    connection = await asyncpg.connect(database_url)
    try:
        queries = Queries(AsyncpgDriver(connection))
        pgq = PgQueuer(queries.driver, queries=queries)
        handled = 0

        @pgq.entrypoint(ENTRYPOINT)
        async def noop(job: Job) -> None:  # noqa: ARG001 - the job is deliberately ignored
            nonlocal handled
            handled += 1

        start = time.perf_counter()
        await pgq.run(batch_size=batch_size, mode=QueueExecutionMode.drain)
        seconds = time.perf_counter() - start

        if handled != jobs:
            raise RuntimeError(f"the handler ran {handled} times for {jobs} jobs")
        await _check_drained(queries, jobs)
    finally:
        await connection.close()

    return PgQueuerResult(
        jobs=jobs,
        seconds=seconds,
        rate=jobs / seconds,
        batch_size=batch_size,
        version=pgqueuer_version(),
    )


def _run(
    main: Coroutine[object, object, PgQueuerResult], loop: Literal["uvloop", "asyncio"]
) -> PgQueuerResult:
    if loop == "uvloop":
        import uvloop  # noqa: PLC0415 - only the script path needs it

        return uvloop.run(main)
    return asyncio.run(main)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0] if __doc__ else "")
    parser.add_argument("database_url", help="an empty database, created for this run")
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument(
        "--loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="event loop (PgQueuer's benchmark runs on uvloop)",
    )
    args = parser.parse_args()
    result = _run(
        pgqueuer_noop_rate(args.database_url, batch_size=args.batch_size, jobs=args.jobs),
        args.loop,
    )
    json.dump({**dataclasses.asdict(result), "loop": args.loop}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
