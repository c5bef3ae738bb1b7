"""Endpoints for orchestrators and monitoring: /healthz, /readyz, /metrics."""

from __future__ import annotations

import contextlib

from litestar import Response, get
from litestar.di import NamedDependency
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from reportsvc.api import docs
from reportsvc.api.errors import ApiError
from reportsvc.api.schemas import Health, Readiness
from reportsvc.api.services import Services
from reportsvc.db.errors import DATABASE_UNAVAILABLE
from reportsvc.domain import JobStatus
from reportsvc.metrics import (
    JOBS,
    QUEUE_OLDEST_SECONDS,
    QUEUE_READY,
    QUEUE_RETRYING,
    QUEUE_RUNNING,
)
from reportsvc.queue.operations import OperationsStore


@get(
    "/healthz",
    summary="Liveness: the process is up",
    tags=["operations"],
    responses=docs.HEALTH_RESPONSES,
)
async def healthz() -> Health:
    return Health(status="ok")


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
    description="Jobs by status and queue state (read at scrape time), and request metrics.",
    tags=["operations"],
    media_type=CONTENT_TYPE_LATEST,
    responses=docs.METRICS_RESPONSES,
)
async def metrics(services: NamedDependency[Services]) -> Response[bytes]:
    # While the database is unreachable the last values stay; /readyz says why.
    with contextlib.suppress(*DATABASE_UNAVAILABLE):
        await refresh_queue_metrics(services.operations)
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


async def refresh_queue_metrics(store: OperationsStore) -> None:
    counts = await store.job_counts()
    for status in JobStatus:
        JOBS.labels(status.value).set(counts.get(status, 0))
    for kind, stats in (await store.queue_stats()).items():
        QUEUE_READY.labels(kind.value).set(stats.ready)
        QUEUE_OLDEST_SECONDS.labels(kind.value).set(stats.oldest_seconds)
        QUEUE_RETRYING.labels(kind.value).set(stats.retrying)
        QUEUE_RUNNING.labels(kind.value).set(stats.running)
