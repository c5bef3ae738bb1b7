"""Endpoints for orchestrators and monitoring: /healthz, /readyz, /metrics."""

from __future__ import annotations

import hmac
from typing import Any, Final

from litestar import Request, Response, get, head
from litestar.di import NamedDependency
from prometheus_client import REGISTRY, generate_latest
from pydantic import SecretStr

from reportsvc.api import docs
from reportsvc.api.errors import ApiError
from reportsvc.api.metrics import METRICS_REFRESH_SECONDS
from reportsvc.api.schemas import Health, Readiness
from reportsvc.api.services import Services
from reportsvc.db.errors import DATABASE_UNAVAILABLE

# Prometheus' text format; Litestar adds the charset.
METRICS_MEDIA_TYPE: Final = "text/plain; version=0.0.4"


@get(
    "/healthz",
    summary="Liveness: the process is up",
    tags=["operations"],
    responses=docs.HEALTH_RESPONSES,
)
async def healthz() -> Health:
    return Health(status="ok")


# HEAD is what some load balancers probe with; it is GET without the body, so the document
# lists it only once, under GET.
@head("/healthz", include_in_schema=False)
async def healthz_head() -> None:
    return None


@get(
    "/readyz",
    summary="Readiness: the database answers and its schema is current",
    description="503 while the database is unreachable or not migrated to this version.",
    tags=["operations"],
    responses=docs.READY_RESPONSES,
)
async def readyz(services: NamedDependency[Services]) -> Readiness:
    try:
        revision = await services.operations.schema_revision()
    except DATABASE_UNAVAILABLE:
        raise ApiError(
            503, "database_unavailable", "the database is unreachable", {"Retry-After": "2"}
        ) from None
    if revision != services.schema_head:
        raise ApiError(
            503,
            "schema_out_of_date",
            f"the database schema is at {revision or 'nothing'}, this version needs "
            f"{services.schema_head}; run `reportsvc migrate`",
            {"Retry-After": "10"},
        )
    return Readiness(status="ready", database="ok", schema_revision=revision)


@get(
    "/metrics",
    summary="Prometheus metrics",
    description=(
        "Jobs under way and the queue's state (read from the database at most every "
        f"{METRICS_REFRESH_SECONDS:g} s, whatever the number of scrapers), and counters. With "
        "METRICS_TOKEN set, needs `Authorization: Bearer <METRICS_TOKEN>`."
    ),
    tags=["operations"],
    media_type=METRICS_MEDIA_TYPE,
    responses=docs.METRICS_RESPONSES,
)
async def metrics(
    request: Request[Any, Any, Any], services: NamedDependency[Services]
) -> Response[bytes]:
    check_metrics_token(request, services.settings.metrics_token)
    await services.queue_metrics.refresh()
    return Response(generate_latest(REGISTRY), media_type=METRICS_MEDIA_TYPE)


def check_metrics_token(request: Request[Any, Any, Any], token: SecretStr | None) -> None:
    if token is None:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), token.get_secret_value().encode()
    ):
        raise ApiError(
            401,
            "unauthorized",
            "metrics need Authorization: Bearer <METRICS_TOKEN>",
            {"WWW-Authenticate": 'Bearer realm="reportsvc-metrics"'},
        )
