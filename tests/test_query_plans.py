"""The hot statements keep using their partial indexes when finished rows pile up."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from reportsvc.queue.sql import load_queries
from reportsvc.queue.steps import _claim_sql as claim_sql

QUERIES = {
    **load_queries("steps.sql"),
    **load_queries("reports.sql"),
    **load_queries("operations.sql"),
}


def _plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    nodes = [plan]
    for child in plan.get("Plans", []):
        nodes += _plan_nodes(child)
    return nodes


async def explain(conn: asyncpg.Connection, query: str, *args: object) -> list[dict[str, Any]]:
    """The executed plan of a statement (by name, or its text), its changes rolled back."""
    transaction = conn.transaction()
    await transaction.start()
    try:
        statement = QUERIES.get(query, query)
        rows = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", *args)
    finally:
        await transaction.rollback()
    return _plan_nodes(json.loads(rows)[0]["Plan"])


async def _writing_jobs(conn: asyncpg.Connection, count: int) -> None:
    """`count` jobs being written, each with two queued section steps."""
    await conn.execute(
        """WITH live AS (
               INSERT INTO jobs (topic, model, status, outline, sections_total, deadline_at)
               SELECT 't', 'm', 'writing', ARRAY['a', 'b'], 2, now() + interval '1 day'
               FROM generate_series(1, $1)
               RETURNING id
           )
           INSERT INTO steps (job_id, kind, position, title)
           SELECT id, 'section', p - 1, (ARRAY['a', 'b'])[p]
           FROM live, generate_series(1, 2) p""",
        count,
    )


async def test_claims_use_the_partial_indexes_with_many_finished_rows(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await conn.execute(
            """WITH finished AS (
                   INSERT INTO jobs (topic, model, status, outline, sections_total, sections_done,
                                     deadline_at, finished_at)
                   SELECT 't', 'm', 'completed', ARRAY['a', 'b', 'c', 'd'], 4, 4,
                          now() + interval '1 day', now()
                   FROM generate_series(1, 5000)
                   RETURNING id
               )
               INSERT INTO steps (job_id, kind, position, title, status, attempts, content)
               SELECT id, 'section', p - 1, (ARRAY['a', 'b', 'c', 'd'])[p], 'done', 1, 'text'
               FROM finished, generate_series(1, 4) p"""
        )
        await _writing_jobs(conn, 20)
        await conn.execute(
            """WITH new AS (
                   INSERT INTO jobs (topic, model, deadline_at)
                   SELECT 't', 'm', now() + interval '1 day' FROM generate_series(1, 20)
                   RETURNING id
               )
               INSERT INTO steps (job_id, kind, priority) SELECT id, 'outline', 1 FROM new"""
        )
        await conn.execute("ANALYZE jobs")
        await conn.execute("ANALYZE steps")

        nodes = await explain(conn, claim_sql(32, 0), "w", 30.0, 10)
        scans = {n.get("Index Name") for n in nodes if n.get("Relation Name") == "steps"}
        assert "steps_claim_idx" in scans
        assert not [n for n in nodes if n["Node Type"] == "Seq Scan"]
        # In claim order: no sort on top of the index scan.
        assert not [n for n in nodes if n["Node Type"] == "Sort"], nodes
        # With a bound per owner, owners are still looked up by key, never scanned.
        nodes = await explain(conn, claim_sql(32, 2), "w", 30.0, 10)
        assert not [n for n in nodes if n["Node Type"] == "Seq Scan"], nodes

        nodes = await explain(conn, "rescue_steps", 5, "lost", 40)
        assert not [n for n in nodes if n["Node Type"] == "Seq Scan"], nodes


async def test_listing_one_owners_jobs_uses_the_owner_index(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await conn.execute(
            """INSERT INTO jobs (topic, model, owner, deadline_at)
               SELECT 't', 'm', CASE WHEN g % 100 = 0 THEN 'alice' WHEN g % 2 = 0 THEN 'bob' END,
                      now() + interval '1 day'
               FROM generate_series(1, 5000) g"""
        )
        await conn.execute("ANALYZE jobs")
        nodes = await explain(conn, "list_owner_jobs", None, 20, None, None, "alice")
        scans = {n.get("Index Name") for n in nodes if n.get("Relation Name") == "jobs"}
        assert scans == {"jobs_owner_created_at_idx"}, nodes
        # Jobs under way may come from the smaller index of pending jobs per owner.
        nodes = await explain(conn, "list_owner_jobs", ["outlining"], 20, None, None, "alice")
        scans = {n.get("Index Name") for n in nodes if n.get("Relation Name") == "jobs"}
        assert scans <= {"jobs_owner_created_at_idx", "jobs_owner_pending_idx"}, nodes
        assert not [n for n in nodes if n["Node Type"] == "Seq Scan"], nodes
        # Jobs without an owner (an API without tokens) are not in that index at all.
        definition = await conn.fetchval(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'jobs_owner_created_at_idx'"
        )
        assert definition.endswith("WHERE (owner IS NOT NULL)")


async def test_the_claim_is_planned_once_and_its_plan_reused(pool: asyncpg.Pool) -> None:
    """A worker's claim has one text whatever the number it asks for (its ceiling and bound
    are literals), so PostgreSQL's plan cache settles on one reusable plan after its first
    five custom plans: with `LIMIT $3` alone it planned every claim again (the generic plan
    was costed for a tenth of the queue), and with a text per size each size was planned
    anew on every connection."""
    async with pool.acquire() as conn:
        await _writing_jobs(conn, 200)
        await conn.execute("ANALYZE jobs")
        await conn.execute("ANALYZE steps")
        for bound in (0, 2):
            name = f"claim_bound_{bound}"
            await conn.execute(f"PREPARE {name}(text, float8, int) AS {claim_sql(32, bound)}")
            for limit in (10, 3, 32, 7, 10, 1, 20, 10):
                transaction = conn.transaction()
                await transaction.start()
                try:
                    claimed = await conn.fetch(f"EXECUTE {name}('w', 30, {limit})")
                    # Anonymous jobs share one owner: with a bound of 2, two.
                    assert len(claimed) == min(limit, bound or limit)
                finally:
                    await transaction.rollback()
            plans = await conn.fetchrow(
                "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE name = $1",
                name,
            )
            assert plans is not None
            assert plans["custom_plans"] == 5, (bound, dict(plans))
            assert plans["generic_plans"] == 3, (bound, dict(plans))


async def test_a_claim_locks_only_the_rows_it_takes(pool: asyncpg.Pool) -> None:
    """The ceiling is only the planner's: a claim of 3 under a ceiling of 32 locks 3 rows,
    so another worker claiming at the same moment takes the next ones, not nothing."""
    async with pool.acquire() as first, pool.acquire() as second:
        await _writing_jobs(first, 20)
        transaction = first.transaction()
        await transaction.start()
        try:
            await first.execute("SET LOCAL lock_timeout = '1s'")
            taken = await first.fetch(claim_sql(32, 0), "first", 30.0, 3)
            assert len(taken) == 3
            locked = await second.fetchval(
                """SELECT count(*) FROM steps
                   WHERE id IN (SELECT id FROM steps WHERE status = 'queued'
                                FOR UPDATE SKIP LOCKED)"""
            )
            # 40 steps, 3 of them being claimed (their new versions are not yet visible):
            # the other 37 are still free to lock.
            assert locked == 37
        finally:
            await transaction.rollback()
