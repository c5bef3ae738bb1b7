"""The Litestar application."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import asyncpg
from litestar import Litestar
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin, SwaggerRenderPlugin
from litestar.routes import HTTPRoute
from litestar.types import Message, Scope

from reportsvc import __version__
from reportsvc.api.bodies import SafeRequest
from reportsvc.api.docs import complete_document
from reportsvc.api.errors import EXCEPTION_HANDLERS
from reportsvc.api.operations import healthz, healthz_head, metrics, readyz
from reportsvc.api.reports import ReportController
from reportsvc.api.services import Services
from reportsvc.api.sources import SourceController
from reportsvc.api.web import page_handlers
from reportsvc.db.engine import create_pool
from reportsvc.process import freeze_startup_objects
from reportsvc.settings import Settings


def allow_header_fix() -> tuple[dict[str, bytes], Callable[[Message, Scope], Awaitable[None]]]:
    """Litestar 2 answers OPTIONS on a path with several handlers naming only the first
    handler's methods in `Allow` (fixed in Litestar 3); clients and tools believe it. The
    returned hook puts every method of the path there; fill the map once routes exist."""
    allowed: dict[str, bytes] = {}

    async def before_send(message: Message, scope: Scope) -> None:
        if message["type"] != "http.response.start" or scope.get("method") != "OPTIONS":
            return
        methods = allowed.get(str(scope.get("path_template")))
        if methods is not None:
            message["headers"] = [
                (name, methods if name.lower() == b"allow" else value)
                for name, value in message.get("headers", ())
            ]

    return allowed, before_send


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
        prepared_statements=settings.prepared_statements,
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

    allowed, fix_allow_header = allow_header_fix()
    app = Litestar(
        before_send=[fix_allow_header],
        route_handlers=[
            ReportController,
            SourceController,
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
    for app_route in app.routes:
        if isinstance(app_route, HTTPRoute):
            allowed[app_route.path_format] = ", ".join(sorted(app_route.methods)).encode()
    complete_document(app.openapi_schema, settings)
    app.state.services = services
    return app
