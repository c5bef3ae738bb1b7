"""The /reports endpoints."""

from __future__ import annotations

import unicodedata
from typing import Annotated
from uuid import UUID

from litestar import Controller, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.openapi.spec import Example
from litestar.params import HeaderParameter, JSONBody, PathParameter
from litestar.status_codes import HTTP_202_ACCEPTED

from reportsvc.api.errors import ApiError
from reportsvc.api.schemas import (
    PUBLIC_STATUS,
    CancelResult,
    CreateReport,
    ErrorBody,
    JobAccepted,
    JobStatus,
    Report,
)
from reportsvc.api.services import Services
from reportsvc.domain import JobOptions
from reportsvc.queue.store import JobRow, Store

MAX_IDEMPOTENCY_KEY_LENGTH = 255

# Taken as a string and parsed in the handler, so a malformed id is a 404 like an unknown one.
JobIdParam = Annotated[
    str,
    PathParameter(
        description="The jobId returned by POST /reports.",
        examples=[Example(value="5b8cfda7-4eaa-40bd-9c0e-93bb9d87ac30")],
    ),
]


def clean_topic(raw: str, max_length: int) -> str:
    """The topic with its whitespace collapsed; a 400 if it is blank, too long or binary."""
    topic = " ".join(raw.split())
    if not topic:
        raise ApiError(400, "invalid_topic", "topic must not be empty or blank")
    if len(topic) > max_length:
        raise ApiError(
            400,
            "invalid_topic",
            f"topic is {len(topic)} characters long; the limit is {max_length} (MAX_TOPIC_LENGTH)",
        )
    if any(unicodedata.category(char) in ("Cc", "Cs") for char in topic):
        raise ApiError(400, "invalid_topic", "topic must not contain control characters")
    return topic


def parse_job_id(raw: str) -> UUID:
    try:
        return UUID(raw)
    except ValueError:
        raise ApiError(404, "job_not_found", f"no job with id {raw!r}") from None


def progress(job: JobRow) -> float:
    """Finished steps over all steps: the outline, then each section.

    Before the outline exists the number of steps is unknown, so progress is 0. It only
    grows: the section counter never decreases, and the total is fixed with the outline.
    """
    if job.status == "completed":
        return 1.0
    if job.sections_total is None:
        return 0.0
    return (1 + job.sections_done) / (1 + job.sections_total)


def job_status(job: JobRow) -> JobStatus:
    public = PUBLIC_STATUS[job.status]
    if public == "completed":
        outline = job.outline or []
        return JobStatus(
            job_id=job.id,
            status=public,
            progress=1.0,
            report=Report(
                topic=job.topic,
                outline=outline,
                sections={title: job.done_sections[title] for title in outline},
            ),
            created_at=job.created_at,
            finished_at=job.finished_at or job.created_at,
        )
    if public == "processing":
        return JobStatus(
            job_id=job.id, status=public, progress=progress(job), created_at=job.created_at
        )
    return JobStatus(
        job_id=job.id,
        status=public,
        error=job.error or ("the job was cancelled" if public == "cancelled" else "unknown error"),
        created_at=job.created_at,
        finished_at=job.finished_at or job.created_at,
    )


_ERRORS = {
    400: "Bad input: a missing, blank, non-string or too long topic, malformed JSON.",
    404: "No job with this id (or the id is not a UUID).",
    503: "The database is unreachable; retry after the Retry-After delay.",
}


class ReportController(Controller):
    path = "/reports"
    tags = ("reports",)

    @post(
        "/",
        status_code=HTTP_202_ACCEPTED,
        summary="Start a report",
        description=(
            "Queues a report and returns its job id at once; the outline and sections are "
            "written in the background by workers. With an `Idempotency-Key` header, "
            "repeating the request returns the same job id and creates nothing new."
        ),
        responses={},
    )
    async def create_report(
        self,
        data: JSONBody[CreateReport],
        services: NamedDependency[Services],
        idempotency_key: Annotated[
            str | None,
            HeaderParameter(
                name="Idempotency-Key",
                required=False,
                description="Any unique string (a UUID is a good choice), at most 255 characters.",
                examples=[Example(value="5b0f3c1e-6a55-4d7e-9d0c-5a2a8f3e9b11")],
            ),
        ] = None,
    ) -> Response[JobAccepted]:
        settings, store = services.settings, services.store
        topic = clean_topic(data.topic, settings.max_topic_length)
        if idempotency_key is not None and not (
            0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY_LENGTH and idempotency_key.isprintable()
        ):
            raise ApiError(
                400,
                "invalid_idempotency_key",
                f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} printable characters",
            )
        options = JobOptions(sections=settings.default_sections)
        job_id = await store.create_job(
            topic=topic,
            model=settings.openai_model,
            options=options,
            idempotency_key=idempotency_key,
            timeout_seconds=settings.job_timeout_seconds,
        )
        if job_id is None:
            assert idempotency_key is not None
            job_id = await self._replay(store, idempotency_key, topic)
        return Response(
            JobAccepted(job_id=job_id),
            status_code=HTTP_202_ACCEPTED,
            headers={"Location": f"/reports/{job_id}"},
        )

    @staticmethod
    async def _replay(store: Store, key: str, topic: str) -> UUID:
        existing = await store.find_job_by_key(key)
        if existing is None:  # pragma: no cover - the job was deleted between two statements
            raise ApiError(409, "conflict", "this Idempotency-Key was just used; retry")
        job_id, existing_topic, _model, _options = existing
        if existing_topic != topic:
            raise ApiError(
                422,
                "idempotency_key_reused",
                "this Idempotency-Key was already used for a different request",
            )
        return job_id

    @get(
        "/{job_id:str}",
        summary="Status, progress and result of a report",
        description=(
            "`status` is `processing` (with `progress` from 0 to 1), `completed` (with "
            "`report`), `failed` (with `error`) or `cancelled`."
        ),
    )
    async def get_report(
        self, job_id: JobIdParam, services: NamedDependency[Services]
    ) -> JobStatus:
        store = services.store
        job = await store.get_job(parse_job_id(job_id))
        if job is None:
            raise ApiError(404, "job_not_found", f"no job with id {job_id!r}")
        return job_status(job)

    @delete(
        "/{job_id:str}",
        status_code=200,
        summary="Cancel a report",
        description=(
            "Stops a job that is still processing: nothing more is started for it, and "
            "running steps are abandoned at their next checkpoint. Cancelling a cancelled "
            "job is a no-op; a finished job cannot be cancelled (409)."
        ),
    )
    async def cancel_report(
        self, job_id: JobIdParam, services: NamedDependency[Services]
    ) -> CancelResult:
        store = services.store
        parsed = parse_job_id(job_id)
        status = await store.cancel_job(parsed)
        if status is None:
            raise ApiError(404, "job_not_found", f"no job with id {job_id!r}")
        if status != "cancelled":
            raise ApiError(409, "job_finished", f"the job has already {status}")
        return CancelResult(job_id=parsed, status="cancelled")


__all__ = ["ErrorBody", "ReportController"]
