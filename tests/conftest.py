"""Fixtures: a real PostgreSQL, a database per test, and a real HTTP stand-in model.

PostgreSQL, in order of preference:
1. TEST_DATABASE_URL, when set (CI points it at the machine's server);
2. a throwaway container through testcontainers, when a Docker engine answers;
3. an embedded PostgreSQL from the `pgserver` wheel, in a temporary directory.

One template database is migrated per session; every test gets its own
`CREATE DATABASE ... TEMPLATE ...` copy, dropped afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import tempfile
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import hypothesis  # noqa: F401 - see below
import pytest

from reportsvc.api.app import create_app
from reportsvc.db import migrate
from reportsvc.db.engine import create_pool
from reportsvc.embedded import EmbeddedPostgres
from reportsvc.llm.fake import FakeConfig, FakeLLMThread
from reportsvc.queue.notifications import Publisher
from reportsvc.settings import Settings
from tests.helpers import Stores, make_settings

# hypothesis is imported here, up front, even by runs that use none of its tests: its pytest
# plugin otherwise imports it while printing the final summary, under a deep stack where
# CPython 3.11.7's parser fails ("AST constructor recursion depth mismatch").


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def _docker_engine_answers() -> bool:
    if os.environ.get("DOCKER_HOST"):
        return True
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1)
        try:
            probe.connect("/var/run/docker.sock")
        except OSError:
            return False
    return True


def _docker_postgres() -> Iterator[str] | None:
    if not _docker_engine_answers():
        return None
    try:
        from testcontainers.community.postgres import PostgresContainer  # noqa: PLC0415
    except ImportError:
        try:
            from testcontainers.postgres import PostgresContainer  # noqa: PLC0415
        except ImportError:
            return None
    try:
        container = PostgresContainer("postgres:16-alpine", driver=None)
        container.start()
    except Exception:
        return None

    def urls() -> Iterator[str]:
        try:
            yield container.get_connection_url()
        finally:
            container.stop()

    return urls()


def _embedded_postgres() -> Iterator[str]:
    server = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="reportsvc-test-pg-")), durable=False)
    try:
        yield server.start()
    finally:
        server.destroy()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A server URL whose database we may create other databases from."""
    if url := os.environ.get("TEST_DATABASE_URL"):
        yield url
        return
    docker = _docker_postgres() if os.environ.get("REPORTSVC_TEST_DOCKER", "1") == "1" else None
    source = docker if docker is not None else _embedded_postgres()
    url = next(source)
    try:
        yield url
    finally:
        with contextlib.suppress(StopIteration):
            next(source)


async def _admin(url: str, *statements: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
async def template_database(postgres_url: str) -> AsyncIterator[str]:
    name = f"reportsvc_tmpl_{os.getpid()}_{secrets.token_hex(3)}"
    await _admin(postgres_url, f'CREATE DATABASE "{name}"')
    url = with_database(postgres_url, name)
    try:
        await asyncio.to_thread(migrate.upgrade, url)
        yield name
    finally:
        await _admin(postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def database_url(postgres_url: str, template_database: str) -> AsyncIterator[str]:
    name = f"reportsvc_t_{secrets.token_hex(6)}"
    await _admin(postgres_url, f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
    try:
        yield with_database(postgres_url, name)
    finally:
        await _admin(postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, min_size=1, max_size=8)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
async def stores(pool: asyncpg.Pool) -> AsyncIterator[Stores]:
    """Every store, on the test's pool, sharing one notification publisher."""
    publisher = Publisher(pool)
    try:
        yield Stores.on(pool, publisher)
    finally:
        await publisher.close()


@pytest.fixture(scope="session")
def fake_llm_server() -> Iterator[FakeLLMThread]:
    server = FakeLLMThread().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fake_llm(fake_llm_server: FakeLLMThread) -> FakeLLMThread:
    """The stand-in model, back to good behaviour and zeroed counters for each test."""
    fake_llm_server.configure(FakeConfig())
    fake_llm_server.release_hangs()
    fake_llm_server.reset()
    return fake_llm_server


@pytest.fixture
def settings(database_url: str, fake_llm: FakeLLMThread) -> Settings:
    return make_settings(database_url=database_url, openai_base_url=fake_llm.base_url)


@contextlib.asynccontextmanager
async def api_client(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[httpx.AsyncClient]:
    """The API in-process, on the test's event loop (so it can share the test's pool)."""
    app = create_app(settings, pool=pool)
    # Litestar's ASGI signature is narrower than the one httpx declares; they interoperate.
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield client
    finally:
        # The transport runs no lifespan: stop what the app started, before its database goes.
        await app.state.services.events.close()


@pytest.fixture
async def client(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(settings, pool) as client:
        yield client


PHASE_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item,
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on its test, so a fixture's teardown can tell whether the
    test failed (the browser tests then save a screenshot)."""
    report = yield
    item.stash.setdefault(PHASE_REPORTS, {})[report.when] = report
    return report


def has_failed(item: pytest.Item) -> bool:
    return any(report.failed for report in item.stash.get(PHASE_REPORTS, {}).values())
