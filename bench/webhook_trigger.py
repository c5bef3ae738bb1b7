"""What the webhook trigger (`jobs_webhook_event`) costs, timed inside PostgreSQL.

The queue's hot write to `jobs` is the counter update of `complete_steps`: one statement
per written batch, updating the batch's jobs (about 13 for a batch of 100 sections). With
the trigger, PostgreSQL checks its WHEN clause on every such row; only an update that ends
a job with a webhook URL runs the function (one INSERT into `steps` and a NOTIFY). Timed
here in one backend, each round running both sides back to back, so the figures depend on
a worker process and the machine's other load less than `python -m bench` does:

1. counter updates that end no job (what nearly every completion is), trigger on vs off;
2. updates that end a job, without a webhook URL vs with one (the cost of a delivery).

The paired ratio (on / off in the same round) is the figure to read on a noisy machine.

    python -m bench.webhook_trigger URL [--updates 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics

import asyncpg

from bench.harness import scratch_database

JOBS = 2000

FUNCTION = """
CREATE FUNCTION bench_job_updates(n int, ending boolean) RETURNS float8
LANGUAGE plpgsql AS $$
DECLARE
    started timestamptz := clock_timestamp();
    ids uuid[] := ARRAY(SELECT id FROM jobs ORDER BY id);
    per int := 13;
BEGIN
    FOR i IN 0..(n / per - 1) LOOP
        -- The shape of complete_steps' counter update, for one batch's jobs.
        UPDATE jobs j
        SET sections_done = j.sections_done + 1,
            status = CASE WHEN j.status = 'writing'
                               AND (ending OR j.sections_done + 1 = j.sections_total)
                          THEN 'completed' ELSE j.status END,
            finished_at = CASE WHEN j.status = 'writing'
                                    AND (ending OR j.sections_done + 1 = j.sections_total)
                               THEN now() ELSE j.finished_at END
        WHERE j.id = ANY(ids[1 + (i * per) % cardinality(ids):(i * per) % cardinality(ids) + per]);
    END LOOP;
    RETURN extract(epoch FROM clock_timestamp() - started);
END
$$
"""


async def _reset(conn: asyncpg.Connection, webhook_url: str | None) -> None:
    await conn.execute("DELETE FROM jobs")
    await conn.execute(
        """INSERT INTO jobs (topic, status, model, options, outline, sections_total,
                             deadline_at, webhook_url)
           SELECT 'bench ' || g, 'writing', 'm', '{"sections": 1}', ARRAY['I'], 1000000,
                  now() + interval '1 day', $2
           FROM generate_series(1, $1) g""",
        JOBS,
        webhook_url,
    )
    await conn.execute("VACUUM ANALYZE jobs")
    await conn.execute("VACUUM ANALYZE steps")


async def _timed(
    conn: asyncpg.Connection, updates: int, *, ending: bool, webhook_url: str | None = None
) -> float:
    await _reset(conn, webhook_url)
    seconds: float = await conn.fetchval("SELECT bench_job_updates($1, $2)", updates, ending)
    return seconds


async def measure(server_url: str, *, updates: int, rounds: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {
        "counter, trigger on": [],
        "counter, trigger off": [],
        "ending, no URL": [],
        "ending, with URL": [],
    }
    async with scratch_database(server_url) as url:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(FUNCTION)
            for number in range(rounds):
                order = [True, False] if number % 2 == 0 else [False, True]
                for enabled in order:
                    action = "ENABLE" if enabled else "DISABLE"
                    await conn.execute(f"ALTER TABLE jobs {action} TRIGGER jobs_webhook_event")
                    name = f"counter, trigger {'on' if enabled else 'off'}"
                    results[name].append(await _timed(conn, updates, ending=False))
                await conn.execute("ALTER TABLE jobs ENABLE TRIGGER jobs_webhook_event")
                # Each update ends a different job (JOBS of them), as a completion does.
                results["ending, no URL"].append(await _timed(conn, JOBS, ending=True))
                results["ending, with URL"].append(
                    await _timed(conn, JOBS, ending=True, webhook_url="https://x.example/")
                )
        finally:
            await conn.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--updates", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    results = asyncio.run(measure(args.url, updates=args.updates, rounds=args.rounds))
    for name, runs in results.items():
        count = JOBS if name.startswith("ending") else args.updates
        per_update = statistics.median(runs) / count * 1e6
        rounds = ", ".join(f"{r:.3f}" for r in runs)
        print(f"{name:24} {per_update:7.2f} µs per row (median; rounds, s: {rounds})")
    pairs = [
        ("counter, trigger on", "counter, trigger off"),
        ("ending, with URL", "ending, no URL"),
    ]
    for a, b in pairs:
        ratios = [x / y for x, y in zip(results[a], results[b], strict=True)]
        print(f"{a} / {b}: {statistics.median(ratios):.3f} (median of paired rounds)")


if __name__ == "__main__":
    main()
