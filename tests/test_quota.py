"""The shared model quota: parsing what providers say, the buckets in the database, and
workers sharing them, against the stand-in model limiting its callers as a provider does."""

from __future__ import annotations

import asyncio
import itertools
import signal
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import asyncpg
import httpx
import pytest

from reportsvc.db import migrate
from reportsvc.embedded import EmbeddedPostgres
from reportsvc.errors import ConfigError, QuotaExhausted
from reportsvc.llm.fake import FakeConfig, FakeLLMThread, Faults
from reportsvc.queue.quotas import HEADROOM, PREFETCH, PREFETCH_SECONDS, QuotaStore, _Model
from reportsvc.quota import Grant, RateLimits, parse_reset, rate_limits, retry_after
from reportsvc.settings import Settings, load_settings
from tests.helpers import Stores, running_worker, submit, wait_for_job
from tests.processes import cluster, wait_until

MODEL = "test-model"


# --- what providers say --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("1s", 1.0), ("6m0s", 360.0), ("20ms", 0.02), ("1h2m3.5s", 3723.5), ("0.5", 0.5),
     ("", None), ("soon", None), ("1x", None), (None, None)],
)  # fmt: skip
def test_reset_durations(value: str | None, seconds: float | None) -> None:
    assert parse_reset(value) == seconds


def test_rate_limit_headers_and_retry_after() -> None:
    headers = {
        "X-RateLimit-Limit-Requests": "600",
        "x-ratelimit-remaining-requests": "599",
        "x-ratelimit-reset-requests": "100ms",
        "x-ratelimit-limit-tokens": "150000",
        "x-ratelimit-remaining-tokens": "149000",
        "x-ratelimit-reset-tokens": "1s",
    }
    assert rate_limits(headers) == RateLimits(600, 599, 0.1, 150000, 149000, 1.0)
    assert rate_limits({}).empty
    assert retry_after({"retry-after-ms": "250", "retry-after": "1"}) == 0.25
    assert retry_after({"Retry-After": "2"}) == 2.0
    now = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
    date = "Sat, 28 Nov 2026 12:00:03 GMT"
    assert retry_after({"retry-after": date}, now=now) == pytest.approx(3.0)
    assert retry_after({"retry-after": "never"}) is None
    # A 429 without Retry-After: the pause lasts until the empty bucket is full again.
    assert rate_limits(headers).spent_until is None
    spent = {**headers, "x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "6m0s"}
    assert rate_limits(spent).spent_until == 360.0


def test_model_rate_limits_setting() -> None:
    settings = load_settings(model_rate_limits="gpt-4o-mini=500rpm/200000tpm, gpt-4o=60rpm")
    assert settings.model_rate_limits == {
        "gpt-4o-mini": (500.0, 200000.0),
        "gpt-4o": (60.0, None),
    }
    for bad in ("gpt-4o", "gpt-4o=", "gpt-4o=60rps", "=60rpm", "gpt-4o=0rpm"):
        with pytest.raises(ConfigError, match="MODEL_RATE_LIMITS"):
            load_settings(model_rate_limits=bad)


# --- the buckets, in the database -------------------------------------------------------------


@pytest.fixture
def quotas(pool: asyncpg.Pool) -> QuotaStore:
    return QuotaStore(pool, horizon=2.5)


async def test_calls_are_spread_evenly_over_the_limit(quotas: QuotaStore) -> None:
    await quotas.configure({MODEL: (60.0, None)})
    # A grant's wait counts from its statement's now(), some instant between asking and
    # the answer; each start is known within that span, however slow the round trip.
    starts: list[tuple[float, float]] = []
    for _ in range(3):
        asked = time.monotonic()
        grant = await quotas.acquire(MODEL, 100)
        starts.append((asked + grant.wait, time.monotonic() + grant.wait))
    interval = 60.0 / (60.0 * HEADROOM)
    # Each grant starts one interval after the one before (times computed by PostgreSQL).
    for (earliest, latest), (next_earliest, next_latest) in itertools.pairwise(starts):
        assert next_earliest - latest - 0.01 <= interval <= next_latest - earliest + 0.01
    # Beyond the horizon, nothing is booked: the step goes back to the queue until then.
    with pytest.raises(QuotaExhausted) as refused:
        await quotas.acquire(MODEL, 100)
    assert refused.value.retry_in > 0


async def test_calls_asking_at_once_share_a_statement_and_are_still_spread(
    quotas: QuotaStore,
) -> None:
    await quotas.configure({MODEL: (1200.0, None)})
    grants = await asyncio.gather(*(quotas.acquire(MODEL, 10) for _ in range(40)))
    waits = sorted(grant.wait for grant in grants)
    interval = 60.0 / (1200.0 * HEADROOM)
    for earlier, later in itertools.pairwise(waits):
        assert later - earlier == pytest.approx(interval, abs=0.01)


async def test_a_roomy_limit_books_calls_ahead_and_counts_every_one(
    quotas: QuotaStore, pool: asyncpg.Pool
) -> None:
    """Far below its limit, a model costs a statement per many calls, not per call: each
    statement also books calls ahead, handed out locally. Each is booked in the database
    all the same, so the cluster's count of granted calls is exact."""
    await quotas.configure({MODEL: (60_000_000.0, None)})  # 0.001 ms a call
    statements = 0
    take = quotas._take

    async def counted(model: str, state: _Model) -> None:
        nonlocal statements
        statements += 1
        await take(model, state)

    quotas._take = counted  # type: ignore[method-assign]
    calls = 2 * PREFETCH
    for _ in range(calls // 8):
        grants = await asyncio.gather(*(quotas.acquire(MODEL, 10) for _ in range(8)))
        assert all(grant.wait == 0 and grant.tokens == 10 for grant in grants)
    assert statements < calls // 8
    await asyncio.sleep(0.05)  # let a refill under way finish
    ahead = len(quotas._models[MODEL].credits)
    # The request bucket moved on by one interval per call booked: those served and those
    # still ahead.
    booked = await pool.fetchval(
        "SELECT extract(epoch FROM request_tat - updated_at) FROM model_quotas"
    )
    interval = 60.0 / (60_000_000.0 * HEADROOM)
    assert booked <= (calls + ahead) * interval + 1e-6


@pytest.mark.parametrize(
    ("rpm", "tpm"),
    [(6000.0, None), (None, 60_000.0), (6000.0, 12_000.0)],
    ids=["requests", "tokens", "tokens bind first"],
)
async def test_calls_booked_ahead_are_spaced_as_the_database_booked_them(
    quotas: QuotaStore, pool: asyncpg.Pool, rpm: float | None, tpm: float | None
) -> None:
    """The statement says how many calls ahead it granted, not when each starts: the worker
    spaces them out itself, and must come out where the buckets were moved to."""
    await quotas.configure({MODEL: (rpm, tpm)})
    await quotas.acquire(MODEL, 10)  # spacing known from here on
    await asyncio.sleep(1.0)  # the buckets catch up: the next call starts now
    state = quotas._models[MODEL]
    state.prefetch = 5  # whatever the limit would allow, to measure the spacing
    first = await quotas.acquire(MODEL, 10)
    assert first.wait == 0
    starts = [start for start, _ in state.credits]
    assert len(starts) == 5
    per_request = 60.0 / (rpm * HEADROOM) if rpm else 0.0
    per_call = max(per_request, 10 * 60.0 / (tpm * HEADROOM) if tpm else 0.0)
    for earlier, later in itertools.pairwise([starts[0] - per_call, *starts]):
        assert later - earlier == pytest.approx(per_call, abs=0.002)
    # The buckets moved on by the call asking and the five ahead, no more, no less.
    tats = await pool.fetchrow(
        """SELECT extract(epoch FROM request_tat - updated_at) AS requests,
                  extract(epoch FROM token_tat - updated_at) AS tokens
           FROM model_quotas WHERE model = $1""",
        MODEL,
    )
    if rpm:
        assert float(tats["requests"]) == pytest.approx(6 * per_request, abs=0.002)
    if tpm:
        assert float(tats["tokens"]) == pytest.approx(6 * 10 * 60.0 / (tpm * HEADROOM), abs=0.002)


async def test_a_tight_limit_books_nothing_ahead(quotas: QuotaStore) -> None:
    await quotas.configure({MODEL: (600.0, None)})  # 0.1 s a call: more than the window
    assert 60.0 / (600.0 * HEADROOM) > PREFETCH_SECONDS
    await asyncio.gather(*(quotas.acquire(MODEL, 10) for _ in range(3)))
    assert quotas._models[MODEL].prefetch == 0
    assert not quotas._models[MODEL].credits


async def test_settlements_ride_with_the_next_asking(
    quotas: QuotaStore, pool: asyncpg.Pool
) -> None:
    await quotas.configure({MODEL: (None, 6000.0)})  # 100 tokens a second
    grants = [await quotas.acquire(MODEL, 100) for _ in range(3)]
    booked = await pool.fetchval("SELECT token_tat - now() FROM model_quotas")
    for grant in grants:
        await quotas.settle(MODEL, grant, 50, RateLimits())
    # Not sent yet: they go with the next asking, which gets its start after the refund.
    assert await pool.fetchval("SELECT token_tat - now() FROM model_quotas") == pytest.approx(
        booked, abs=timedelta(milliseconds=50)
    )
    after = await quotas.acquire(MODEL, 100)
    refund = 3 * 50 * 60 / (6000 * HEADROOM)
    assert after.wait == pytest.approx(booked.total_seconds() - refund, abs=0.05)


async def test_tokens_are_booked_then_settled(quotas: QuotaStore, pool: asyncpg.Pool) -> None:
    await quotas.configure({MODEL: (None, 6000.0)})  # 100 tokens a second
    first = await quotas.acquire(MODEL, 100)
    booked = await pool.fetchval("SELECT token_tat - now() FROM model_quotas")
    # The answer counted 40 tokens, not 100: the difference goes back to the bucket (with
    # the next statement, or within SETTLE_SECONDS; close() sends it now).
    await quotas.settle(MODEL, first, 40, RateLimits())
    await quotas.close()
    settled = await pool.fetchval("SELECT token_tat - now() FROM model_quotas")
    refund = timedelta(seconds=60 * 60 / (6000 * HEADROOM))
    assert booked - settled == pytest.approx(refund, abs=timedelta(milliseconds=50))


async def test_a_429_pauses_the_model_for_everyone(quotas: QuotaStore, pool: asyncpg.Pool) -> None:
    await quotas.configure({MODEL: (6000.0, None)})
    other = QuotaStore(pool, horizon=2.5)  # another worker
    pause = await quotas.rate_limited(MODEL, 2.0, RateLimits())
    assert pause == pytest.approx(2.0, abs=0.1)
    grant = await other.acquire(MODEL, 10)
    assert grant.wait == pytest.approx(2.0, abs=0.2)
    await quotas.rate_limited(MODEL, 10.0, RateLimits())
    with pytest.raises(QuotaExhausted):
        await other.acquire(MODEL, 10)
    assert await pool.fetchval("SELECT rate_limited FROM model_quotas") == 2


async def test_a_new_models_limits_are_learned_by_one_call(quotas: QuotaStore) -> None:
    probe = await quotas.acquire("fresh-model", 10)
    assert probe == Grant(tokens=10, learns=True)
    # Until the first answer says what the limits are, nobody else calls.
    with pytest.raises(QuotaExhausted):
        await quotas.acquire("fresh-model", 10)
    await quotas.settle("fresh-model", probe, 10, RateLimits(requests_limit=120))
    first = await quotas.acquire("fresh-model", 10)
    second = await quotas.acquire("fresh-model", 10)
    assert second.wait - first.wait == pytest.approx(60 / (120 * HEADROOM), abs=0.1)


async def test_a_model_without_limits_goes_at_once(quotas: QuotaStore, pool: asyncpg.Pool) -> None:
    probe = await quotas.acquire("local-model", 10)
    await quotas.settle("local-model", probe, 10, RateLimits())  # no x-ratelimit headers
    for _ in range(5):
        assert (await quotas.acquire("local-model", 10)).wait == 0
    row = await pool.fetchrow("SELECT rpm, tpm, learned FROM model_quotas")
    assert dict(row) == {"rpm": None, "tpm": None, "learned": True}


# --- workers sharing it ------------------------------------------------------------------------


async def test_a_job_waiting_for_quota_says_so(
    stores: Stores, settings: Settings, fake_llm: FakeLLMThread, client: httpx.AsyncClient
) -> None:
    # One call every 6 s and a 1 s horizon: the second report's outline must wait, away
    # from its lease, and its job says what it waits for.
    limited = settings.model_copy(
        update={"model_rate_limits": {MODEL: (10.0, None)}, "quota_wait_seconds": 1.0}
    )
    first = await submit(stores, "First", sections=1)
    second = await submit(stores, "Second", sections=1)
    async with running_worker(stores, limited):
        deadline = time.monotonic() + 20
        while True:
            body = (await client.get(f"/reports/{second}")).json()
            if body.get("waitingFor") == "quota":
                break
            assert time.monotonic() < deadline, body
            await asyncio.sleep(0.05)
        assert body["status"] == "processing"
    # The outline waiting for its turn was not called: only the first went to the model.
    assert fake_llm.stats().calls.get("outline", 0) == 1
    assert first != second


async def test_owners_take_turns(
    pool: asyncpg.Pool, settings: Settings, fake_llm: FakeLLMThread, stores: Stores
) -> None:
    """Owner A queues 12 reports, then owner B one: B's goes ahead of most of A's."""
    fake_llm.configure(FakeConfig(outline=Faults(latency=0.1), section=Faults(latency=0.1)))
    a = [await _owned(stores, "owner-a", f"A {i}") for i in range(12)]
    b = await _owned(stores, "owner-b", "B")
    async with running_worker(stores, settings, concurrency=2, claim_batch_size=1):
        await wait_for_job(stores, b, timeout=60)
    # Judged by the order of claims, which turns decide, not by completions, which also
    # depend on how long each model call happens to take on a loaded machine. B's outline
    # was the second step claimed (after A's first, which has the same turn and is older)...
    claimed = await pool.fetch(
        "SELECT s.job_id FROM steps s WHERE s.started_at IS NOT NULL ORDER BY s.started_at, s.id"
    )
    assert [r["job_id"] for r in claimed[:2]] == [a[0], b]
    # ...and each of B's steps that came later was claimed ahead of every step of a later
    # turn queued at the time: at most the claims already under way when it was created
    # (one per slot) went before it.
    jumped = await pool.fetch(
        """SELECT bs.kind, bs.position, count(later.id) AS n
           FROM steps bs JOIN jobs bj ON bj.id = bs.job_id AND bj.owner = 'owner-b'
           LEFT JOIN steps later ON later.turn > bs.turn
                AND later.started_at > bs.created_at AND later.started_at < bs.started_at
           WHERE bs.kind <> 'outline'
           GROUP BY 1, 2"""
    )
    assert jumped
    assert all(r["n"] <= 2 for r in jumped), [dict(r) for r in jumped]
    turns = dict(await pool.fetch("SELECT coalesce(owner, ''), next_turn FROM fair_turns"))
    first_of_a, last_of_a = await pool.fetchrow(
        "SELECT min(turn), max(turn) FROM jobs WHERE owner = 'owner-a'"
    )
    assert last_of_a - first_of_a == 11
    assert turns["owner-a"] == last_of_a + 1
    # B's turn was the oldest under way when it came: A's first.
    assert await pool.fetchval("SELECT turn FROM jobs WHERE owner = 'owner-b'") == first_of_a


async def _owned(stores: Stores, owner: str, topic: str) -> UUID:
    from reportsvc.domain import JobOptions  # noqa: PLC0415

    job_id = await stores.reports.create_job(
        topic=topic,
        model=MODEL,
        options=JobOptions(sections=2),
        idempotency_key=None,
        timeout_seconds=3600,
        owner=owner,
    )
    assert job_id is not None
    return job_id


@pytest.mark.parametrize("claim_batch_size", [1, 8])
async def test_a_bound_on_running_steps_per_owner(
    pool: asyncpg.Pool,
    settings: Settings,
    fake_llm: FakeLLMThread,
    stores: Stores,
    claim_batch_size: int,
) -> None:
    """Exact, not approximate: not passed by one claim taking several steps of an owner,
    nor by the worker's two claim lanes counting at the same time."""
    fake_llm.configure(FakeConfig(section=Faults(hang_rate=1.0, hang_seconds=30)))
    for i in range(3):
        await _owned(stores, "owner-a", f"A {i}")
    await _owned(stores, "owner-b", "B")
    # Calls hang until released: no timeout may end them first, however slow the machine.
    patient = settings.model_copy(update={"openai_timeout": 60.0})
    async with running_worker(
        stores,
        patient,
        concurrency=8,
        claim_batch_size=claim_batch_size,
        max_running_steps_per_owner=2,
    ):
        # Both owners reach the bound (the first call of a new model learns its limits
        # while the others wait a second or so: no fixed delay would do), and then no more
        # is claimed for either, however much of A's work is queued.
        await wait_until_sql(
            pool,
            """SELECT count(*) FILTER (WHERE j.owner = 'owner-a') >= 2
                      AND count(*) FILTER (WHERE j.owner = 'owner-b') >= 2
               FROM steps s JOIN jobs j ON j.id = s.job_id WHERE s.status = 'running'""",
        )
        await asyncio.sleep(1.0)  # room for claims that should not happen
        running = dict(
            await pool.fetch(
                """SELECT j.owner, count(*) FROM steps s JOIN jobs j ON j.id = s.job_id
                   WHERE s.status = 'running' GROUP BY 1"""
            )
        )
        queued_of_a = await pool.fetchval(
            """SELECT count(*) FROM steps s JOIN jobs j ON j.id = s.job_id
               WHERE s.status = 'queued' AND j.owner = 'owner-a'"""
        )
        fake_llm.release_hangs()
    assert queued_of_a > 0  # A had more ready than the bound let run
    assert running == {"owner-a": 2, "owner-b": 2}


async def wait_until_sql(pool: asyncpg.Pool, sql: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not await pool.fetchval(sql):
        assert time.monotonic() < deadline, sql
        await asyncio.sleep(0.05)


# --- real processes --------------------------------------------------------------------------


async def _post(api_url: str, count: int, prefix: str) -> list[str]:
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
        responses = await asyncio.gather(
            *(http.post("/reports", json={"topic": f"{prefix} {i}"}) for i in range(count))
        )
    assert {r.status_code for r in responses} == {202}
    return [r.json()["jobId"] for r in responses]


async def _workers_running(database_url: str, count: int) -> None:
    await wait_until(
        """SELECT count(*) >= $1 FROM pg_stat_activity
           WHERE application_name = 'reportsvc-listen' AND datname = current_database()""",
        database_url,
        count,
        timeout=60,
    )


@pytest.mark.slow
async def test_workers_share_one_quota_and_the_provider_refuses_nothing(
    database_url: str, fake_llm: FakeLLMThread, tmp_path: Path
) -> None:
    fake_llm.configure(FakeConfig(rpm=300, section=Faults(latency=0.05)))
    with cluster(
        database_url,
        fake_llm.base_url,
        tmp_path,
        OPENAI_MODEL=MODEL,
        DEFAULT_SECTIONS="3",
        MODEL_RATE_LIMITS=f"{MODEL}=180rpm",
    ) as running:
        running.start_api()
        for i in range(3):
            running.start_worker(f"worker-{i}", concurrency=8)
        await _workers_running(database_url, 3)
        await _post(running.api_url, 6, "Shared")
        await wait_until(
            "SELECT count(*) = 6 FROM jobs WHERE status = 'completed'", database_url, timeout=90
        )
    stats = fake_llm.stats()
    assert stats.statuses.get("429", 0) == 0
    assert stats.statuses["200"] == 6 * 4


@pytest.mark.slow
async def test_a_429_pauses_the_whole_cluster(
    database_url: str, fake_llm: FakeLLMThread, tmp_path: Path
) -> None:
    # No latency: the fake decides which call is the first when it arrives.
    fake_llm.configure(FakeConfig(section=Faults(fail_first=1, error_status=429, retry_after=1.5)))
    with cluster(database_url, fake_llm.base_url, tmp_path, OPENAI_MODEL=MODEL) as running:
        running.start_api()
        running.start_worker("first", concurrency=4)
        running.start_worker("second", concurrency=4)
        await _workers_running(database_url, 2)
        await _post(running.api_url, 4, "Paused")
        await wait_until(
            "SELECT count(*) = 4 FROM jobs WHERE status = 'completed'", database_url, timeout=90
        )
        conn = await asyncpg.connect(database_url)
        try:
            paused_until = (
                await conn.fetchval("SELECT paused_until FROM model_quotas WHERE model = $1", MODEL)
            ).timestamp()
        finally:
            await conn.close()
    timeline = fake_llm.timeline()
    [refused_at] = [t for t, _, status in timeline if status == 429]
    # The pause was recorded when the worker told the database (paused_until is that moment
    # plus the 1.5 s asked for). Calls granted before then may still arrive a little after
    # it; from then on no worker called the model until the pause ended: not the one that
    # got the 429, nor the other one.
    recorded_at = paused_until - 1.5
    assert refused_at <= recorded_at
    during = [t for t, _, _ in timeline if recorded_at + 0.25 <= t < paused_until - 0.05]
    assert during == []
    assert [t for t, _, _ in timeline if t >= paused_until - 0.05]  # the rest came after
    assert len(timeline) == 4 * 7 + 1


@pytest.mark.slow
async def test_limits_are_learned_from_the_providers_headers(
    database_url: str, fake_llm: FakeLLMThread, tmp_path: Path
) -> None:
    fake_llm.configure(FakeConfig(rpm=120, section=Faults(latency=0.05)))
    with cluster(
        database_url, fake_llm.base_url, tmp_path, OPENAI_MODEL=MODEL, DEFAULT_SECTIONS="3"
    ) as running:
        running.start_api()
        running.start_worker("first", concurrency=8)
        running.start_worker("second", concurrency=8)
        await _workers_running(database_url, 2)
        await _post(running.api_url, 5, "Learned")
        await wait_until(
            "SELECT count(*) = 5 FROM jobs WHERE status = 'completed'", database_url, timeout=90
        )
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            "SELECT rpm, source, learned FROM model_quotas WHERE model = $1", MODEL
        )
        state = await conn.fetchrow("SELECT * FROM model_quota_state WHERE model = $1", MODEL)
    finally:
        await conn.close()
    assert dict(row) == {"rpm": 120.0, "source": "headers", "learned": True}
    assert state["requests_per_minute"] == 120.0
    # The first call learned the limits alone; the rest were spread under them.
    assert fake_llm.stats().statuses.get("429", 0) <= 1


@pytest.mark.slow
async def test_a_worker_killed_while_waiting_for_quota_costs_nothing(
    database_url: str, fake_llm: FakeLLMThread, tmp_path: Path
) -> None:
    """Its booked calls are just moments that pass unused; its steps' leases expire and
    another worker runs them, within the same limit."""
    fake_llm.configure(FakeConfig(rpm=60, section=Faults(latency=0.05)))
    with cluster(
        database_url,
        fake_llm.base_url,
        tmp_path,
        OPENAI_MODEL=MODEL,
        DEFAULT_SECTIONS="2",
        MODEL_RATE_LIMITS=f"{MODEL}=40rpm",
        QUOTA_WAIT_SECONDS="6",
    ) as running:
        running.start_api()
        victim = running.start_worker("victim", concurrency=8)
        await _workers_running(database_url, 1)
        await _post(running.api_url, 3, "Killed")
        # The victim holds steps that wait for their booked moment.
        await wait_until(
            "SELECT count(*) >= 3 FROM steps WHERE status = 'running'", database_url, timeout=30
        )
        victim.signal(signal.SIGKILL)
        victim.wait(timeout=10)
        running.start_worker("survivor", concurrency=8)
        await wait_until(
            "SELECT count(*) = 3 FROM jobs WHERE status = 'completed'", database_url, timeout=120
        )
    assert fake_llm.stats().statuses.get("429", 0) == 0


@pytest.mark.slow
async def test_quota_survives_a_database_restart(fake_llm: FakeLLMThread, tmp_path: Path) -> None:
    server = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="reportsvc-pg-")), durable=False)
    try:
        server.start()
        admin = await asyncpg.connect(server.url)
        await admin.execute("CREATE DATABASE reports")
        await admin.close()
        url = server.url_for("reports")
        await asyncio.to_thread(migrate.upgrade, url)
        fake_llm.configure(FakeConfig(rpm=240, section=Faults(latency=0.1)))
        with cluster(
            url,
            fake_llm.base_url,
            tmp_path,
            OPENAI_MODEL=MODEL,
            DEFAULT_SECTIONS="3",
            MODEL_RATE_LIMITS=f"{MODEL}=120rpm",
        ) as running:
            running.start_api()
            running.start_worker("worker", concurrency=8)
            await _workers_running(url, 1)
            await _post(running.api_url, 6, "Restart")
            await wait_until(
                "SELECT count(*) >= 4 FROM steps WHERE status = 'done'", url, timeout=60
            )
            await asyncio.to_thread(server.stop)
            await asyncio.sleep(1.0)
            await asyncio.to_thread(server.start)
            await wait_until(
                "SELECT count(*) = 6 FROM jobs WHERE status = 'completed'", url, timeout=120
            )
            conn = await asyncpg.connect(url)
            try:
                rpm = await conn.fetchval("SELECT rpm FROM model_quotas WHERE model = $1", MODEL)
            finally:
                await conn.close()
        assert rpm == 120.0
        assert fake_llm.stats().statuses.get("429", 0) == 0
    finally:
        server.destroy()
