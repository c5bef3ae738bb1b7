"""Wiring: builds a worker's resources once, from the settings, and runs it until a signal."""

from __future__ import annotations

import asyncio
import signal

import asyncpg
import structlog
from prometheus_client import start_http_server

from reportsvc.db.engine import create_pool
from reportsvc.domain import StepRunner
from reportsvc.llm.client import OpenAIChatModel, create_openai_client
from reportsvc.pipeline.runner import ReportPipeline
from reportsvc.process import dump_tasks, freeze_startup_objects
from reportsvc.queue.notifications import Publisher
from reportsvc.queue.operations import OperationsStore
from reportsvc.queue.quotas import QuotaStore
from reportsvc.queue.reports import ReportStore
from reportsvc.queue.sources import PassageSearch
from reportsvc.queue.steps import StepQueue
from reportsvc.settings import Settings
from reportsvc.sources import PassageIndex
from reportsvc.webhooks.sender import WebhookConfig, WebhookSender
from reportsvc.worker import DATABASE_ERRORS, Worker, WorkerConfig

log = structlog.get_logger("reportsvc.runtime")


def build_worker(
    pool: asyncpg.Pool,
    runner: StepRunner,
    config: WorkerConfig,
    *,
    worker_id: str | None = None,
    publisher: Publisher | None = None,
) -> Worker:
    """A worker whose stores share `pool` and one notification publisher."""
    publisher = publisher or Publisher(pool)
    return Worker(
        StepQueue(pool, publisher),
        OperationsStore(pool, publisher),
        runner,
        config,
        worker_id=worker_id,
    )


def worker_config(settings: Settings, *, concurrency: int | None = None) -> WorkerConfig:
    return WorkerConfig(
        # The worker opens only its LISTEN connection from this URL; the pool comes ready.
        database_url=settings.require_listen_url(),
        concurrency=concurrency or settings.worker_concurrency,
        claim_batch_size=settings.claim_batch_size,
        lease_seconds=settings.lease_seconds,
        max_attempts=settings.max_attempts,
        webhook_max_attempts=settings.webhook_max_attempts,
        retry_base_seconds=settings.retry_base_seconds,
        retry_max_seconds=settings.retry_max_seconds,
        step_timeout_seconds=settings.step_timeout_seconds,
        job_timeout_seconds=settings.job_timeout_seconds,
        outline_review_timeout_seconds=settings.outline_review_timeout_seconds,
        poll_interval_seconds=settings.poll_interval_seconds,
        rescue_interval_seconds=settings.rescue_interval_seconds,
        shutdown_grace_seconds=settings.shutdown_grace_seconds,
        listen_notify=settings.listens,
        prune_after_seconds=settings.prune_after_seconds,
        max_running_steps_per_owner=settings.max_running_steps_per_owner,
    )


async def model_client(settings: Settings, pool: asyncpg.Pool) -> OpenAIChatModel:
    """The model client of a worker: its calls share each model's quota with every other
    worker through the database (MODEL_RATE_LIMITS, or what the provider's headers say)."""
    quotas = QuotaStore(pool, horizon=settings.quota_wait_seconds)
    await quotas.configure(settings.model_rate_limits)
    return OpenAIChatModel(create_openai_client(settings), quotas)


def report_pipeline(
    settings: Settings,
    model: OpenAIChatModel,
    *,
    deliveries: StepRunner | None = None,
    passages: PassageIndex | None = None,
) -> ReportPipeline:
    """The runner of every step: the report's own steps, and webhook steps handed to
    `deliveries` (a `WebhookSender`); the sections of reports with sources search
    `passages`."""
    return ReportPipeline(
        model,
        max_title_length=settings.max_title_length,
        section_max_tokens=settings.section_max_tokens,
        outline_format=settings.outline_format,
        max_attempts=settings.max_attempts,
        deliveries=deliveries,
        passages=passages,
        passages_per_section=settings.passages_per_section,
    )


def webhook_config(settings: Settings) -> WebhookConfig:
    return WebhookConfig(
        secrets=[secret.get_secret_value() for secret in settings.webhook_secret],
        allow_private_networks=settings.webhook_allow_private_networks,
        timeout_seconds=settings.webhook_timeout_seconds,
        retry_for_seconds=settings.webhook_retry_for_seconds,
        retry_base_seconds=settings.webhook_retry_base_seconds,
        retry_max_seconds=settings.webhook_retry_max_seconds,
        max_attempts=settings.webhook_max_attempts,
        prices=settings.openai_prices,
        review_timeout_seconds=settings.outline_review_timeout_seconds,
    )


def webhook_sender(settings: Settings, pool: asyncpg.Pool, publisher: Publisher) -> WebhookSender:
    """The sender of webhook deliveries, on the worker's pool; close it when done."""
    return WebhookSender(
        StepQueue(pool, publisher), ReportStore(pool, publisher), webhook_config(settings)
    )


async def run_worker(
    settings: Settings, *, concurrency: int | None = None, runner: StepRunner | None = None
) -> None:
    """Run one worker until SIGTERM or SIGINT (a second signal skips the grace period)."""
    config = worker_config(settings, concurrency=concurrency)
    if settings.worker_metrics_port is not None:
        # A thread of prometheus_client's serving /metrics; the counters are thread-safe.
        start_http_server(settings.worker_metrics_port, settings.worker_metrics_host)
        log.info("serving metrics", port=settings.worker_metrics_port)
    client = create_openai_client(settings)  # refuses to start without a model configured
    await client.close()
    pool = await _connect(settings)
    model = await model_client(settings, pool)
    publisher = Publisher(pool)
    sender = webhook_sender(settings, pool, publisher)
    runner = runner or report_pipeline(
        settings, model, deliveries=sender, passages=PassageSearch(pool)
    )
    worker = build_worker(pool, runner, config, publisher=publisher)
    loop = asyncio.get_running_loop()
    signals = 0

    def on_signal(signum: int) -> None:
        nonlocal signals
        signals += 1
        log.info("signal received; shutting down", signal=signal.Signals(signum).name)
        worker.stop()
        if signals > 1:
            worker.hurry()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    loop.add_signal_handler(signal.SIGUSR1, dump_tasks)
    freeze_startup_objects()
    try:
        await worker.run()
    finally:
        await sender.close()
        await model.close()  # before the pool: the quota's last settlements use it
        await pool.close()


async def _connect(settings: Settings) -> asyncpg.Pool:
    """The worker's pool. Waits (with backoff) for a database that is not up yet."""
    delay = 0.2
    while True:
        try:
            return await create_pool(
                settings.require_database_url(),
                min_size=1,
                max_size=settings.worker_pool_size,
                connect_timeout=settings.database_connect_timeout,
                application_name="reportsvc-worker",
                prepared_statements=settings.prepared_statements,
            )
        except DATABASE_ERRORS as exc:
            log.warning(
                "database unavailable at start-up; retrying", error=str(exc), retry_in=delay
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
