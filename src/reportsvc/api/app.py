"""The Litestar application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from litestar import Litestar
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin, SwaggerRenderPlugin

from reportsvc import __version__
from reportsvc.api.bodies import SafeRequest
from reportsvc.api.errors import EXCEPTION_HANDLERS
from reportsvc.api.operations import healthz, healthz_head, metrics, readyz
from reportsvc.api.reports import ReportController
from reportsvc.api.services import Services
from reportsvc.api.web import page_handlers
from reportsvc.db.engine import create_pool
from reportsvc.process import freeze_startup_objects
from reportsvc.settings import Settings


@asynccontextmanager
async def _own_pool(settings: Settings, services: Services) -> AsyncIterator[None]:
    pool = await create_pool(
        settings.require_database_url(),
        # No connection at start-up: the API starts (and answers 503) even while the
        # database is down, and connects once it is back.
        min_size=0,
        max_size=settings.database_pool_size,
        connect_timeout=settings.database_connect_timeout,
        application_name="reportsvc-api",
    )
    services.connect(pool)
    freeze_startup_objects()
    try:
        yield
    finally:
        await services.publisher.close()
        await pool.close()


def create_app(settings: Settings, *, pool: asyncpg.Pool | None = None) -> Litestar:
    """The API. Without `pool`, one is created at start-up from DATABASE_URL."""
    services = Services(settings)

    def provide_services() -> Services:
        return services

    if pool is not None:
        services.connect(pool)

    @asynccontextmanager
    async def lifespan(_app: Litestar) -> AsyncIterator[None]:
        try:
            if pool is not None:  # the caller owns the pool
                yield
            else:
                async with _own_pool(settings, services):
                    yield
        finally:
            await services.events.close()

    app = Litestar(
        route_handlers=[
            ReportController,
            healthz,
            healthz_head,
            readyz,
            metrics,
            *page_handlers(),
        ],
        lifespan=[lifespan],
        # One dependency, not two: Litestar resolves several in a task group per request,
        # which costs more than the rest of a POST's Python work.
        dependencies={"services": Provide(provide_services, sync_to_thread=False)},
        exception_handlers=EXCEPTION_HANDLERS,
        # Bodies are read with a time limit, and undecodable ones are 400s, not 500s.
        request_class=SafeRequest,
        request_max_body_size=settings.max_body_bytes,
        # Logging is configured once for the process (reportsvc.logs), not by Litestar.
        logging_config=None,
        openapi_config=OpenAPIConfig(
            title="reportsvc",
            version=__version__,
            description=(
                "Durable AI report generation. POST a topic, poll the job until its report "
                "is ready."
            ),
            path="/docs",
            render_plugins=[ScalarRenderPlugin(), SwaggerRenderPlugin(path="/swagger")],
        ),
    )
    app.state.services = services
    return app
