"""API tokens, ownership, rate limit, admission control and body size."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from uuid import UUID

import asyncpg
import httpx
import pytest
from litestar import Litestar
from litestar.routes import HTTPRoute
from pydantic import SecretStr

from reportsvc.api import guard
from reportsvc.api.app import create_app
from reportsvc.llm.fake import FakeLLMThread
from reportsvc.queue.tokens import token_hash
from reportsvc.settings import Settings
from tests.conftest import api_client
from tests.helpers import Stores
from tests.processes import cluster
from tests.sse import read_events

ALPHA = {"Authorization": "Bearer alpha-secret"}
BETA = {"Authorization": "Bearer beta-secret"}


@pytest.fixture
async def locked(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[httpx.AsyncClient]:
    tokens = [_secret("alpha-secret"), _secret("beta-secret")]
    locked_settings = settings.model_copy(update={"api_tokens": tokens})
    async with api_client(locked_settings, pool) as client:
        yield client


def _secret(value: str) -> SecretStr:
    return SecretStr(value)


async def test_reports_need_a_token_and_health_and_docs_do_not(locked: httpx.AsyncClient) -> None:
    for method, path in [("POST", "/reports"), ("GET", "/reports"),
                         ("GET", f"/reports/{'0' * 8}-0000-0000-0000-{'0' * 12}")]:  # fmt: skip
        response = await locked.request(method, path, json={"topic": "x"})
        assert response.status_code == 401, (method, path)
        assert response.json()["code"] == "unauthorized"
        assert response.headers["www-authenticate"].startswith("Bearer")
    wrong = await locked.post(
        "/reports", json={"topic": "x"}, headers={"Authorization": "Bearer no"}
    )
    assert wrong.status_code == 401
    assert "not valid" in wrong.json()["error"]
    for path in ("/healthz", "/readyz", "/docs/openapi.json", "/metrics", "/", "/assets/app.js"):
        assert (await locked.get(path)).status_code == 200, path


# Public on purpose: health, metrics, the API's docs, and the web page with its assets
# (the same files for everyone, no data in them: the page asks for a token itself).
PUBLIC_PATHS = ("/healthz", "/readyz", "/metrics", "/docs", "/swagger", "/assets/")
PUBLIC_EXACT_PATHS = ("/",)


def protected_routes(app: Litestar) -> list[tuple[str, str]]:
    """Every (method, path) the app serves, but the public ones."""
    routes = []
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or route.path.startswith(PUBLIC_PATHS):
            continue
        if route.path in PUBLIC_EXACT_PATHS:
            continue
        path = re.sub(r"\{[^}]+:int\}", "0", route.path)  # a section's index
        path = re.sub(r"\{[^}]+\}", "5b8cfda7-4eaa-40bd-9c0e-93bb9d87ac30", path)
        routes += [(method, path) for method in route.methods if method not in ("OPTIONS", "HEAD")]
    return sorted(routes)


async def test_every_endpoint_but_the_public_ones_refuses_a_missing_or_wrong_token(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    locked_settings = settings.model_copy(update={"api_tokens": [_secret("alpha-secret")]})
    app = create_app(locked_settings, pool=pool)
    routes = protected_routes(app)
    # The enumeration finds the report endpoints (so a new one cannot slip past it).
    assert ("POST", "/reports") in routes
    assert ("DELETE", "/reports/5b8cfda7-4eaa-40bd-9c0e-93bb9d87ac30") in routes
    assert ("PUT", "/reports/5b8cfda7-4eaa-40bd-9c0e-93bb9d87ac30/outline") in routes
    assert ("POST", "/reports/5b8cfda7-4eaa-40bd-9c0e-93bb9d87ac30/sections/0/rewrite") in routes
    # The page's own JSON helpers are data endpoints too.
    assert ("GET", "/ui/options") in routes
    assert ("GET", "/ui/jobs/5b8cfda7-4eaa-40bd-9c0e-93bb9d87ac30") in routes
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            for method, path in routes:
                for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "x"}):
                    # A body the schema refuses: the token is checked first all the same.
                    response = await client.request(
                        method, path, json={"topic": 1}, headers=headers
                    )
                    assert response.status_code == 401, (method, path, headers, response.text)
                    assert response.json()["code"] == "unauthorized"
    finally:
        await app.state.services.events.close()


async def test_a_job_exists_only_for_the_token_that_created_it(locked: httpx.AsyncClient) -> None:
    job_id = (await locked.post("/reports", json={"topic": "Mine"}, headers=ALPHA)).json()["jobId"]
    assert (await locked.get(f"/reports/{job_id}", headers=ALPHA)).status_code == 200
    for method, path in [("GET", f"/reports/{job_id}"), ("GET", f"/reports/{job_id}/events"),
                         ("DELETE", f"/reports/{job_id}")]:  # fmt: skip
        theirs = await locked.request(method, path, headers=BETA)
        assert theirs.status_code == 404, (method, path)
        assert theirs.json()["code"] == "job_not_found"
    assert (await locked.get("/reports", headers=BETA)).json()["jobs"] == []
    mine = (await locked.get("/reports", headers=ALPHA)).json()["jobs"]
    assert [j["jobId"] for j in mine] == [job_id]
    assert (await locked.delete(f"/reports/{job_id}", headers=ALPHA)).status_code == 200


async def test_idempotency_keys_are_per_token(locked: httpx.AsyncClient) -> None:
    key = {"Idempotency-Key": "same"}
    a = await locked.post("/reports", json={"topic": "T"}, headers={**ALPHA, **key})
    b = await locked.post("/reports", json={"topic": "T"}, headers={**BETA, **key})
    assert a.status_code == b.status_code == 202
    assert a.json() != b.json()


async def test_tokens_in_the_table_lock_the_door_and_revoking_the_last_keeps_it_locked(
    settings: Settings, pool: asyncpg.Pool, stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(guard, "TOKEN_REFRESH_SECONDS", 0.0)
    first = {"Authorization": "Bearer first-secret"}
    second = {"Authorization": "Bearer second-secret"}

    async def post(headers: dict[str, str] | None = None) -> int:
        response = await client.post("/reports", json={"topic": "x"}, headers=headers)
        return response.status_code

    async with api_client(settings, pool) as client:
        assert await post() == 202  # no token anywhere: the API is open
        assert await stores.tokens.add_token("first", token_hash("first-secret"))
        assert await stores.tokens.add_token("second", token_hash("second-secret"))
        assert await post() == 401
        assert await post(first) == 202
        owned = (await client.get("/reports", headers=first)).json()["jobs"][0]["jobId"]
        assert await stores.tokens.revoke_token("first")
        assert await post(first) == 401
        assert await post(second) == 202
        assert await stores.tokens.revoke_token("second")
        # No active token left: the door stays locked, and owned jobs stay hidden.
        assert await post() == 401
        for path in ("/reports", f"/reports/{owned}", f"/reports/{owned}/events"):
            assert (await client.get(path)).status_code == 401, path
    hashes = {r[0] for r in await pool.fetch("SELECT token_hash FROM api_tokens")}
    assert hashes == {token_hash("first-secret"), token_hash("second-secret")}  # never tokens


async def test_auth_required_locks_an_api_with_no_token_at_all(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    required = settings.model_copy(update={"auth_required": True})
    async with api_client(required, pool) as client:
        response = await client.post("/reports", json={"topic": "x"})
        assert response.status_code == 401
        assert (await client.get("/healthz")).status_code == 200


async def test_token_commands(database_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": database_url, "LOG_FORMAT": "json"}

    async def cli(*args: str) -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "reportsvc", "token", *args, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await process.communicate()
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()

    code, out, err = await cli("add", "laptop")
    assert code == 0, err
    secret = out.strip()
    assert secret.startswith("rsk_")
    assert len(secret) > 30
    assert (await cli("add", "laptop"))[0] == 1
    code, out, _ = await cli("list")
    assert "laptop" in out
    assert "active" in out
    assert secret not in out
    assert (await cli("revoke", "laptop"))[0] == 0
    assert "revoked" in (await cli("list"))[1]
    assert (await cli("revoke", "laptop"))[0] == 1


async def test_rate_limit_per_token(settings: Settings, pool: asyncpg.Pool) -> None:
    limited = settings.model_copy(
        update={
            "rate_limit_per_minute": 3,
            "api_tokens": [_secret("alpha-secret"), _secret("beta-secret")],
        }
    )
    async with api_client(limited, pool) as client:
        codes = [
            (await client.post("/reports", json={"topic": "x"}, headers=ALPHA)).status_code
            for _ in range(4)
        ]
        assert codes == [202, 202, 202, 429]
        refused = await client.post("/reports", json={"topic": "x"}, headers=ALPHA)
        assert refused.json()["code"] == "rate_limited"
        assert int(refused.headers["retry-after"]) >= 1
        # Another token has its own allowance; reading is not limited.
        assert (await client.post("/reports", json={"topic": "x"}, headers=BETA)).status_code == 202
        assert (await client.get("/reports", headers=ALPHA)).status_code == 200


async def test_admission_stops_at_max_pending_jobs(settings: Settings, pool: asyncpg.Pool) -> None:
    bounded = settings.model_copy(update={"max_pending_jobs": 2})
    async with api_client(bounded, pool) as client:
        codes = [(await client.post("/reports", json={"topic": "x"})).status_code for _ in range(3)]
        assert codes == [202, 202, 503]
        refused = await client.post("/reports", json={"topic": "x"})
        assert refused.json()["code"] == "queue_full"
        assert refused.headers["retry-after"] == "10"
        # The refusal says nothing about how many jobs others have.
        assert not any(ch.isdigit() for ch in refused.json()["error"])


async def test_admission_holds_under_a_concurrent_burst(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """The bound is enforced by the insert itself: 300 requests at once cannot all see
    room that only some of them may take."""
    bounded = settings.model_copy(update={"max_pending_jobs": 40})
    async with api_client(bounded, pool) as client:
        responses = await asyncio.gather(
            *(client.post("/reports", json={"topic": f"burst {i}"}) for i in range(300))
        )
    codes = [r.status_code for r in responses]
    assert codes.count(202) == 40
    assert codes.count(503) == 260
    assert await pool.fetchval("SELECT count(*) FROM jobs") == 40


async def test_room_made_by_finished_jobs_is_found_again(
    settings: Settings, pool: asyncpg.Pool, stores: Stores
) -> None:
    """Admission counts exactly only when its upper bound (counted + admitted since) is
    short of room: jobs that finished meanwhile are found by that count."""
    bounded = settings.model_copy(update={"max_pending_jobs": 3})
    async with api_client(bounded, pool) as client:
        ids = [
            (await client.post("/reports", json={"topic": "x"})).json()["jobId"] for _ in range(3)
        ]
        assert (await client.post("/reports", json={"topic": "x"})).status_code == 503
        for job_id in ids[:2]:
            assert (await client.delete(f"/reports/{job_id}")).status_code == 200
        codes = [(await client.post("/reports", json={"topic": "x"})).status_code for _ in range(3)]
        assert codes == [202, 202, 503]
    counted, admitted = await pool.fetchrow(
        "SELECT counted, admitted FROM admission WHERE scope = '*'"
    )
    assert counted + admitted == 3


async def test_one_token_cannot_shut_out_the_others(settings: Settings, pool: asyncpg.Pool) -> None:
    bounded = settings.model_copy(
        update={
            "max_pending_jobs_per_owner": 3,
            "api_tokens": [_secret("alpha-secret"), _secret("beta-secret")],
        }
    )
    async with api_client(bounded, pool) as client:
        burst = await asyncio.gather(
            *(client.post("/reports", json={"topic": "a"}, headers=ALPHA) for _ in range(20))
        )
        assert sorted(r.status_code for r in burst) == [202] * 3 + [429] * 17
        refused = next(r for r in burst if r.status_code == 429)
        assert refused.json()["code"] == "too_many_pending"
        assert "3 reports" in refused.json()["error"]  # its own count, and only its own
        assert (await client.post("/reports", json={"topic": "b"}, headers=BETA)).status_code == 202


async def test_a_repeated_request_gets_its_job_back_when_the_queue_is_full(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    bounded = settings.model_copy(update={"max_pending_jobs": 1})
    key = {"Idempotency-Key": "once"}
    async with api_client(bounded, pool) as client:
        first = await client.post("/reports", json={"topic": "x"}, headers=key)
        assert first.status_code == 202
        again = await client.post("/reports", json={"topic": "x"}, headers=key)
        assert again.status_code == 202
        assert again.json() == first.json()
        assert (await client.post("/reports", json={"topic": "y"})).status_code == 503


async def test_body_size_limit_is_a_setting(settings: Settings, pool: asyncpg.Pool) -> None:
    small = settings.model_copy(update={"max_body_bytes": 2048, "max_topic_length": 5000})
    async with api_client(small, pool) as client:
        response = await client.post("/reports", json={"topic": "x" * 3000})
        assert response.status_code == 413
        assert response.json()["code"] == "request_too_large"


@pytest.mark.slow
async def test_revoking_a_token_ends_its_open_event_streams(
    database_url: str, stores: Stores, fake_llm: FakeLLMThread, tmp_path: Path
) -> None:
    """A stream opened before the revoke closes within 5 s of it and tells that token
    nothing more: the job's end, which comes later, is not sent."""
    assert await stores.tokens.add_token("watcher", token_hash("watcher-secret"))
    watcher = {"Authorization": "Bearer watcher-secret"}
    with cluster(database_url, fake_llm.base_url, tmp_path) as running:
        running.start_api()  # no worker: the job waits for its outline until cancelled
        async with httpx.AsyncClient(base_url=running.api_url, timeout=30) as http:
            job_id = UUID(
                (await http.post("/reports", json={"topic": "x"}, headers=watcher)).json()["jobId"]
            )

            async def revoke_then_cancel() -> None:
                await asyncio.sleep(0.5)
                assert await stores.tokens.revoke_token("watcher")
                await asyncio.sleep(6.0)  # past the 5 s in which the revoke takes effect
                await stores.reports.cancel_job(job_id)

            changes = asyncio.create_task(revoke_then_cancel())
            async with http.stream("GET", f"/reports/{job_id}/events", headers=watcher) as response:
                assert response.status_code == 200
                async with asyncio.timeout(30):  # a stream that never closes fails here
                    events = [name async for name, _ in read_events(response)]
            await changes
    assert events == []
    job = await stores.reports.get_job(job_id)
    assert job is not None
    assert job.status == "cancelled"
