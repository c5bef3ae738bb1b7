"""`reportsvc` on the command line."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, NamedTuple
from uuid import UUID

import click
import httpx

from reportsvc import __version__
from reportsvc.errors import ConfigError, StepError
from reportsvc.settings import Settings, load_settings, parse_duration

if TYPE_CHECKING:
    from reportsvc.queue.operations import OperationsStore
    from reportsvc.queue.reports import ReportStore
    from reportsvc.queue.tokens import TokenStore


MAX_TOKEN_NAME = 64


def _settings(**overrides: object) -> Settings:
    try:
        return load_settings(**overrides)
    except ConfigError as exc:
        raise click.ClickException(exc.message) from None


def _run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    try:
        import uvloop  # noqa: PLC0415 - optional speed-up

        uvloop.run(main())
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux and macOS
        asyncio.run(main())


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="reportsvc")
def main() -> None:
    """Durable AI report generation: an HTTP API and workers on PostgreSQL."""


@main.command()
@click.option("--revision", default="head", show_default=True, help="Target revision.")
def migrate(revision: str) -> None:
    """Apply database migrations to DATABASE_URL."""
    from reportsvc.db import migrate as migrations  # noqa: PLC0415 - keep start-up light
    from reportsvc.logs import configure_logging  # noqa: PLC0415

    settings = _settings()
    configure_logging(settings.log_level, settings.log_format)
    try:
        url = settings.require_database_url()
    except ConfigError as exc:
        raise click.ClickException(exc.message) from None
    try:
        migrations.upgrade(url, revision)
    except OSError as exc:
        raise click.ClickException(f"cannot reach the database: {exc}") from None
    click.echo(f"database is at revision {revision}")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
def serve(host: str, port: int) -> None:
    """Run the HTTP API."""
    from reportsvc.api.app import create_app  # noqa: PLC0415
    from reportsvc.api.server import serve as serve_api  # noqa: PLC0415
    from reportsvc.logs import configure_logging  # noqa: PLC0415

    settings = _settings()
    configure_logging(settings.log_level, settings.log_format)
    try:
        settings.require_database_url()
    except ConfigError as exc:
        raise click.ClickException(exc.message) from None
    serve_api(create_app(settings), settings, host=host, port=port)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
def dev(host: str, port: int) -> None:
    """Run everything for local use: database, migrations, API and a worker.

    Without DATABASE_URL, an embedded PostgreSQL keeps its data in .data/postgres.
    Without OPENAI_API_KEY or OPENAI_BASE_URL, a built-in stand-in model writes
    placeholder text. Ctrl-C stops it all.
    """
    from reportsvc.dev import prepare_database, run_dev  # noqa: PLC0415
    from reportsvc.logs import configure_logging  # noqa: PLC0415

    settings = _settings()
    configure_logging(settings.log_level, settings.log_format)
    try:
        settings, embedded = prepare_database(settings)
    except (ConfigError, OSError, RuntimeError) as exc:
        raise click.ClickException(f"cannot start the database: {exc}") from None
    try:
        _run(lambda: run_dev(settings, host=host, port=port))
    finally:
        if embedded is not None:
            embedded.stop()


@main.command()
@click.option(
    "--concurrency",
    type=click.IntRange(1, 10_000),
    default=None,
    help="Steps run at once by this process [default: WORKER_CONCURRENCY, 64].",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Serve Prometheus metrics on this port [default: WORKER_METRICS_PORT, off].",
)
def worker(concurrency: int | None, metrics_port: int | None) -> None:
    """Run a worker: claim outline and section steps and call the model."""
    from reportsvc.logs import configure_logging  # noqa: PLC0415
    from reportsvc.runtime import run_worker  # noqa: PLC0415

    settings = _settings()
    if metrics_port is not None:
        settings = settings.model_copy(update={"worker_metrics_port": metrics_port})
    configure_logging(settings.log_level, settings.log_format)
    try:
        settings.require_database_url()
        _run(lambda: run_worker(settings, concurrency=concurrency))
    except (ConfigError, StepError) as exc:
        raise click.ClickException(exc.message) from None


class _Stores(NamedTuple):
    reports: ReportStore
    operations: OperationsStore
    tokens: TokenStore


def _on_store(settings: Settings, work: Callable[[_Stores], Coroutine[Any, Any, None]]) -> None:
    """Run `work` with the stores on DATABASE_URL, turning outages into a clear message."""
    from reportsvc.db.engine import create_pool  # noqa: PLC0415
    from reportsvc.db.errors import DATABASE_UNAVAILABLE  # noqa: PLC0415
    from reportsvc.queue.notifications import Publisher  # noqa: PLC0415
    from reportsvc.queue.operations import OperationsStore  # noqa: PLC0415
    from reportsvc.queue.reports import ReportStore  # noqa: PLC0415
    from reportsvc.queue.tokens import TokenStore  # noqa: PLC0415

    async def run() -> None:
        pool = await create_pool(
            settings.require_database_url(),
            min_size=1,
            max_size=2,
            prepared_statements=settings.prepared_statements,
        )
        publisher = Publisher(pool)
        stores = _Stores(
            ReportStore(pool, publisher), OperationsStore(pool, publisher), TokenStore(pool)
        )
        try:
            await work(stores)
        finally:
            await publisher.close()
            await pool.close()

    try:
        _run(run)
    except ConfigError as exc:
        raise click.ClickException(exc.message) from None
    except DATABASE_UNAVAILABLE as exc:
        raise click.ClickException(f"cannot reach the database: {exc}") from None


def _job_id(value: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a job id (a UUID)") from None


@main.command()
@click.option(
    "--older-than",
    required=True,
    help="Age of finished jobs to delete: 90s, 30m, 12h, 7d, 2w.",
)
def prune(older_than: str) -> None:
    """Delete finished (completed, failed, cancelled) jobs and their sections."""
    try:
        seconds = parse_duration(older_than)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--older-than") from None
    settings = _settings()

    async def work(stores: _Stores) -> None:
        deleted = await stores.operations.prune(seconds)
        click.echo(f"deleted {deleted} finished job(s) older than {older_than}")

    _on_store(settings, work)


@main.command()
@click.argument("job_id")
def retry(job_id: str) -> None:
    """Re-queue a failed or cancelled job's unfinished steps (with fresh attempts)."""
    parsed = _job_id(job_id)
    settings = _settings()

    async def work(stores: _Stores) -> None:
        outcome = await stores.operations.retry_job(parsed, settings.job_timeout_seconds)
        if outcome is None:
            raise click.ClickException(f"no job {job_id}")
        if not outcome.retried:
            raise click.ClickException(
                f"job {job_id} is {outcome.status}; only failed or cancelled jobs can be retried"
            )
        if outcome.status == "outlining":
            click.echo(f"job {job_id} re-queued from its outline step")
        elif outcome.status == "awaiting_review":
            click.echo(f"job {job_id} waits for its outline's review again, from now")
        elif outcome.status == "completed":
            click.echo(f"job {job_id} had every section written: now completed")
        else:
            click.echo(f"job {job_id} re-queued: {outcome.steps} step(s) to run")

    _on_store(settings, work)


@main.command()
@click.argument("job_id")
def cancel(job_id: str) -> None:
    """Cancel a job that is still processing."""
    parsed = _job_id(job_id)
    settings = _settings()

    async def work(stores: _Stores) -> None:
        status = await stores.reports.cancel_job(parsed)
        if status is None:
            raise click.ClickException(f"no job {job_id}")
        if status != "cancelled":
            raise click.ClickException(f"job {job_id} has already {status}")
        click.echo(f"job {job_id} cancelled")

    _on_store(settings, work)


@main.group()
def webhooks() -> None:
    """Webhook deliveries (a job created with a webhookUrl)."""


@webhooks.command("retry")
@click.argument("job_id")
def webhooks_retry(job_id: str) -> None:
    """Re-send a job's webhook deliveries that gave up.

    Each goes back to the queue with fresh attempts and a new retry window, as the same
    event: the same webhook-id and body, so a receiver that did process it can tell.
    """
    parsed = _job_id(job_id)
    settings = _settings()

    async def work(stores: _Stores) -> None:
        outcome = await stores.operations.retry_webhooks(parsed)
        if outcome is None:
            raise click.ClickException(f"no job {job_id}")
        if outcome.webhook_url is None:
            raise click.ClickException(f"job {job_id} has no webhook URL")
        if not outcome.retried:
            states = ", ".join(f"{d.event} {d.status}" for d in outcome.deliveries)
            raise click.ClickException(
                f"job {job_id} has no delivery that gave up ({states or 'none yet'})"
            )
        click.echo(f"job {job_id}: {outcome.retried} delivery(ies) queued again")

    _on_store(settings, work)


@main.group()
def token() -> None:
    """Manage API tokens (stored hashed in the database).

    With at least one token (here or in API_TOKENS), every /reports endpoint needs
    `Authorization: Bearer <token>`, and a job is visible only to the token that created it.
    """


@token.command("add")
@click.argument("name")
def token_add(name: str) -> None:
    """Create a token called NAME and print it (it is shown only this once).

    NAME: 1 to 64 printable characters (letters, digits, punctuation, inner spaces).
    """
    import secrets  # noqa: PLC0415

    from reportsvc.queue.tokens import token_hash  # noqa: PLC0415

    if not (0 < len(name) <= MAX_TOKEN_NAME and name.isprintable() and name.strip() == name):
        raise click.BadParameter(
            f"a token's name is 1 to {MAX_TOKEN_NAME} printable characters, without leading or "
            "trailing spaces",
            param_hint="NAME",
        )
    settings = _settings()
    secret = f"rsk_{secrets.token_urlsafe(32)}"

    async def work(stores: _Stores) -> None:
        if not await stores.tokens.add_token(name, token_hash(secret)):
            raise click.ClickException(f"a token called {name!r} exists already")
        click.echo(secret)
        click.echo(
            f"token {name!r} created; keep it now, it cannot be shown again. API processes "
            "require tokens within 5 seconds.",
            err=True,
        )

    _on_store(settings, work)


@token.command("revoke")
@click.argument("name")
def token_revoke(name: str) -> None:
    """Revoke the token called NAME (API processes refuse it within 5 seconds)."""
    settings = _settings()

    async def work(stores: _Stores) -> None:
        if not await stores.tokens.revoke_token(name):
            raise click.ClickException(f"no active token called {name!r}")
        click.echo(f"token {name!r} revoked")

    _on_store(settings, work)


@token.command("list")
def token_list() -> None:
    """List tokens by name (never their secrets)."""
    settings = _settings()

    async def work(stores: _Stores) -> None:
        for name, created, revoked in await stores.tokens.list_tokens():
            state = f"revoked {revoked:%Y-%m-%d %H:%M}" if revoked else "active"
            click.echo(f"{name}\tcreated {created:%Y-%m-%d %H:%M}\t{state}")

    _on_store(settings, work)


API_OPTION = click.option(
    "--api",
    default="http://127.0.0.1:8000",
    show_default=True,
    envvar="REPORTSVC_API",
    help="The reportsvc API to talk to (or REPORTSVC_API).",
)


@main.command()
@click.argument("job_ids", nargs=-1, required=True)
@API_OPTION
def watch(job_ids: tuple[str, ...], api: str) -> None:
    """Live progress bars for one or more jobs, until they finish."""
    from rich.console import Console  # noqa: PLC0415

    from reportsvc.watch import watch as watch_jobs  # noqa: PLC0415

    console = Console()
    try:
        ok = asyncio.run(watch_jobs(api, list(job_ids), console))
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot reach the API at {api}: {exc}") from None
    sys.exit(0 if ok else 1)


@main.command()
@API_OPTION
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 100))
@click.option(
    "--status",
    "state",
    type=click.Choice(["processing", "awaiting_review", "completed", "failed", "cancelled"]),
    help="Only jobs with this status.",
)
def status(api: str, limit: int, state: str | None) -> None:
    """Recent jobs, newest first, as a table."""
    from rich.console import Console  # noqa: PLC0415

    from reportsvc.watch import status as show_status  # noqa: PLC0415

    try:
        asyncio.run(show_status(api, Console(), limit=limit, state=state))
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot reach the API at {api}: {exc}") from None


@main.command("fake-llm")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=9100, show_default=True, type=click.IntRange(0, 65535))
@click.option("--latency", default=0.0, show_default=True, help="Seconds before each answer.")
@click.option("--jitter", default=0.0, show_default=True, help="Extra random seconds, 0..jitter.")
@click.option("--error-rate", default=0.0, show_default=True, help="Share of calls answered 500.")
@click.option(
    "--rate-limit-rate", default=0.0, show_default=True, help="Share of calls answered 429."
)
@click.option("--retry-after", default=1.0, show_default=True, help="Retry-After on 429s (s).")
@click.option("--hang-rate", default=0.0, show_default=True, help="Share of calls that hang.")
@click.option(
    "--rpm",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="A provider's limit: requests a minute (429 beyond, with Retry-After).",
)
@click.option(
    "--tpm",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="A provider's limit: tokens a minute (prompt + max_tokens per request).",
)
def fake_llm(  # noqa: PLR0913, PLR0917 - one parameter per command-line option
    host: str,
    port: int,
    latency: float,
    jitter: float,
    error_rate: float,
    rate_limit_rate: float,
    retry_after: float,
    hang_rate: float,
    rpm: float | None,
    tpm: float | None,
) -> None:
    """Run the built-in stand-in model: an OpenAI-compatible server with placeholder text.

    Point workers at it with OPENAI_BASE_URL=http://HOST:PORT/v1. Change its behaviour
    while it runs with PUT /fake/config; read call counts from GET /fake/stats. With --rpm
    or --tpm it limits its callers as a provider does, with x-ratelimit-* headers.
    """
    from reportsvc.llm.fake import FakeConfig, FakeLLM, Faults, serve  # noqa: PLC0415

    if error_rate and rate_limit_rate:
        raise click.UsageError("choose one of --error-rate and --rate-limit-rate")
    faults = Faults(
        latency=latency,
        jitter=jitter,
        error_rate=error_rate or rate_limit_rate,
        error_status=429 if rate_limit_rate else 500,
        retry_after=retry_after if rate_limit_rate else None,
        hang_rate=hang_rate,
    )
    fake = FakeLLM(FakeConfig(outline=faults, section=faults, rpm=rpm, tpm=tpm))

    async def run() -> None:
        runner, bound = await serve(fake, host, port)
        click.echo(f"stand-in model listening on http://{host}:{bound}/v1", err=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await runner.cleanup()

    _run(run)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
