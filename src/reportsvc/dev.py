"""`reportsvc dev`: the whole service in one foreground process, for a laptop.

- No DATABASE_URL: an embedded PostgreSQL (from the pgserver wheel) with its data in
  `.data/postgres`, so reports survive a restart; it is stopped on exit.
- Migrations are applied.
- No OPENAI_API_KEY and no OPENAI_BASE_URL: the built-in stand-in model, which writes
  placeholder text (said loudly in the log and in every section it writes).
- The API on 127.0.0.1:8000 and one worker, until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import structlog
import uvicorn

from reportsvc.api.app import create_app
from reportsvc.api.server import server_options
from reportsvc.db import migrate
from reportsvc.db.engine import create_pool
from reportsvc.embedded import EmbeddedPostgres
from reportsvc.llm.fake import FakeLLM, serve
from reportsvc.queue.notifications import Publisher
from reportsvc.queue.sources import PassageSearch
from reportsvc.runtime import (
    build_worker,
    model_client,
    report_pipeline,
    webhook_sender,
    worker_config,
)
from reportsvc.settings import Settings

log = structlog.get_logger("reportsvc.dev")

DATA_DIR = Path(".data") / "postgres"
DATABASE = "reportsvc"


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: `run_dev` stops everything in order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def prepare_database(settings: Settings) -> tuple[Settings, EmbeddedPostgres | None]:
    """DATABASE_URL, or an embedded PostgreSQL started here; migrated either way."""
    embedded = None
    if settings.database_url is None:
        embedded = EmbeddedPostgres(DATA_DIR)
        log.info("starting the embedded PostgreSQL", data=str(DATA_DIR))
        embedded.start()
        asyncio.run(_create_database(embedded.url, DATABASE))
        settings = settings.model_copy(update={"database_url": embedded.url_for(DATABASE)})
        log.info("PostgreSQL is up; inspect it with psql", url=settings.database_url)
    migrate.upgrade(settings.require_database_url())
    return settings, embedded


async def _create_database(server_url: str, name: str) -> None:
    conn = await asyncpg.connect(server_url)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def run_dev(settings: Settings, *, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    stand_in = None
    if settings.openai_api_key is None and settings.openai_base_url is None:
        stand_in, model_port = await serve(FakeLLM(), "127.0.0.1", 0)
        settings = settings.model_copy(
            update={"openai_base_url": f"http://127.0.0.1:{model_port}/v1"}
        )
        log.warning(
            "NO MODEL CONFIGURED: using the built-in stand-in model. Reports will contain "
            "placeholder text, not generated text. Set OPENAI_API_KEY (or OPENAI_BASE_URL "
            "for Ollama, vLLM...) and restart to write real reports."
        )

    server = _Server(
        uvicorn.Config(
            create_app(settings), host=host, port=port, loop="none", **server_options(settings)
        )
    )
    pool = await create_pool(
        settings.require_database_url(),
        max_size=settings.worker_pool_size,
        application_name="reportsvc-worker",
        prepared_statements=settings.prepared_statements,
    )
    model = await model_client(settings, pool)
    publisher = Publisher(pool)
    sender = webhook_sender(settings, pool, publisher)
    runner = report_pipeline(settings, model, deliveries=sender, passages=PassageSearch(pool))
    worker = build_worker(pool, runner, worker_config(settings), publisher=publisher)
    api_task = asyncio.create_task(server.serve(), name="api")
    worker_task = asyncio.create_task(worker.run(), name="worker")
    log.info(
        "reportsvc is running", page=f"http://{host}:{port}/", docs=f"http://{host}:{port}/docs"
    )
    try:
        await asyncio.wait(
            [asyncio.ensure_future(stop.wait()), api_task, worker_task],
            return_when=asyncio.FIRST_COMPLETED,
        )
    finally:
        log.info("shutting down")
        server.should_exit = True
        worker.stop()
        await asyncio.gather(api_task, worker_task, return_exceptions=True)
        await model.close()
        await sender.close()
        await pool.close()
        if stand_in is not None:
            await stand_in.cleanup()
