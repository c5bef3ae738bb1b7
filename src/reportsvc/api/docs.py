"""Examples for the OpenAPI document: every endpoint's answers, errors included."""

from __future__ import annotations

from typing import Any, Final

from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example

from reportsvc.api.schemas import (
    CancelResult,
    ErrorBody,
    Health,
    JobAccepted,
    JobList,
    JobStatus,
    Readiness,
)

JOB_ID: Final = "5b8cfda7-4eaa-40bd-9c0e-93bb9d87ac30"
OUTLINE: Final = ["I. The Rise of the Republic", "II. The Augustan Principate", "III. Decline"]


def ok(data: type, description: str, **examples: dict[str, Any]) -> ResponseSpec:
    return ResponseSpec(
        data_container=data,
        description=description,
        examples=[Example(summary=name, value=value) for name, value in examples.items()],
    )


def error(status: int, description: str, *cases: tuple[str, str]) -> ResponseSpec:
    return ResponseSpec(
        data_container=ErrorBody,
        description=description,
        examples=[
            Example(summary=code, value={"status": status, "code": code, "error": message})
            for code, message in cases
        ],
    )


UNAVAILABLE: Final = error(
    503,
    "The database is unreachable; retry after the Retry-After delay.",
    ("database_unavailable", "the database is unreachable right now; try again in a few seconds"),
)
BAD_PARAMETER: Final = error(
    400,
    "A query parameter is not one of the documented values.",
    ("bad_request", "Validation failed for GET /reports/5b8cfda7-4eaa-40bd-9c0e-93bb9d87ac30"),
)
NOT_FOUND: Final = error(
    404,
    "No job with this id (a malformed id is answered the same way).",
    ("job_not_found", f"no job with id '{JOB_ID}'"),
)

CREATE_RESPONSES: Final = {
    202: ok(JobAccepted, "Queued; poll GET /reports/{jobId}.", queued={"jobId": JOB_ID}),
    400: error(
        400,
        "The request is malformed or the topic is not acceptable.",
        ("invalid_topic", "topic must not be empty or blank"),
        ("invalid_topic", "topic is 412 characters long; the limit is 300 (MAX_TOPIC_LENGTH)"),
        ("invalid_request", "topic: Expected str, got int"),
        ("invalid_request", "request body: Object contains unknown field colour"),
        ("invalid_json", "the request body is not valid JSON (unexpected end of input)"),
        ("invalid_idempotency_key", "Idempotency-Key must be 1 to 255 printable characters"),
        (
            "invalid_webhook_url",
            (
                "webhookUrl must reach a public address: its host resolves to a loopback, "
                "private, link-local or cloud-metadata address"
            ),
        ),
        (
            "webhooks_disabled",
            (
                "webhookUrl cannot be used here: the service has no WEBHOOK_SECRET to sign "
                "deliveries with"
            ),
        ),
    ),
    413: error(
        413,
        "The body is larger than 64 KiB.",
        ("request_too_large", "the request body is too large"),
    ),
    422: error(
        422,
        "The Idempotency-Key was used before for a different request.",
        ("idempotency_key_reused", "this Idempotency-Key was already used for a different request"),
    ),
    503: UNAVAILABLE,
}

GET_RESPONSES: Final = {
    200: ok(
        JobStatus,
        "The job; `application/json`, or `text/markdown` for a completed report.",
        processing={
            "jobId": JOB_ID,
            "status": "processing",
            "progress": 0.5,
            "outline": OUTLINE,
            "partialSections": {OUTLINE[0]: "In 509 BC the Romans expelled their last king..."},
            "createdAt": "2026-11-27T10:00:00Z",
        },
        completed={
            "jobId": JOB_ID,
            "status": "completed",
            "progress": 1.0,
            "report": {
                "topic": "The Roman Empire",
                "outline": OUTLINE,
                "sections": dict.fromkeys(OUTLINE, "..."),
            },
            "createdAt": "2026-11-27T10:00:00Z",
            "finishedAt": "2026-11-27T10:00:41Z",
        },
        completed_short={
            "jobId": JOB_ID,
            "status": "completed",
            "progress": 1.0,
            "report": {
                "topic": "The Roman Empire",
                "outline": OUTLINE[:2],
                "sections": dict.fromkeys(OUTLINE[:2], "..."),
            },
            "outlineShortfall": {"asked": 3, "outlined": 2},
            "createdAt": "2026-11-27T10:00:00Z",
            "finishedAt": "2026-11-27T10:00:52Z",
        },
        failed={
            "jobId": JOB_ID,
            "status": "failed",
            "error": 'Section 2 of 3 ("II. The Augustan Principate") could not be written after '
            "5 attempts: the model service failed (500)",
            "createdAt": "2026-11-27T10:00:00Z",
            "finishedAt": "2026-11-27T10:03:12Z",
        },
        cancelled={
            "jobId": JOB_ID,
            "status": "cancelled",
            "error": "the job was cancelled",
            "createdAt": "2026-11-27T10:00:00Z",
            "finishedAt": "2026-11-27T10:00:05Z",
        },
    ),
    400: BAD_PARAMETER,
    404: NOT_FOUND,
    409: error(
        409,
        "Markdown was asked for a report that is not completed.",
        ("report_not_ready", "the report is not completed (status writing)"),
    ),
    503: UNAVAILABLE,
}

LIST_RESPONSES: Final = {
    200: ok(
        JobList,
        "Jobs, newest first.",
        page={
            "jobs": [
                {
                    "jobId": JOB_ID,
                    "status": "processing",
                    "topic": "The Roman Empire",
                    "progress": 0.25,
                    "createdAt": "2026-11-27T10:00:00Z",
                }
            ],
            "nextCursor": "MjAyNi0xMS0yN1QxMDowMDowMCswMDowMHw1YjhjZmRhNw",
        },
    ),
    400: error(
        400,
        "A parameter is out of range or not recognised.",
        ("bad_request", "Validation failed for GET /reports"),
        ("invalid_cursor", "cursor is not one this API returned"),
    ),
    503: UNAVAILABLE,
}

EVENT_STREAM: Final = (
    "event: progress\n"
    f'data: {{"jobId":"{JOB_ID}","step":"outline","progress":0.25,"outline":[...]}}\n\n'
    "event: progress\n"
    f'data: {{"jobId":"{JOB_ID}","step":"section","progress":0.5,"section":"{OUTLINE[0]}"}}\n\n'
    ": keep-alive\n\n"
    "event: completed\n"
    f'data: {{"jobId":"{JOB_ID}","status":"completed","progress":1.0,"report":{{...}}}}\n\n'
)
EVENTS_RESPONSES: Final = {
    200: ResponseSpec(
        data_container=str,
        media_type="text/event-stream",
        description="The job's events, until its final one.",
        examples=[Example(summary="a job from start to finish", value=EVENT_STREAM)],
    ),
    400: BAD_PARAMETER,
    404: NOT_FOUND,
    503: UNAVAILABLE,
}

CANCEL_RESPONSES: Final = {
    200: ok(CancelResult, "Cancelled.", cancelled={"jobId": JOB_ID, "status": "cancelled"}),
    400: BAD_PARAMETER,
    404: NOT_FOUND,
    409: error(
        409, "The job has already finished.", ("job_finished", "the job has already completed")
    ),
    503: UNAVAILABLE,
}

HEALTH_RESPONSES: Final = {200: ok(Health, "The process is up.", up={"status": "ok"})}
READY_RESPONSES: Final = {
    200: ok(
        Readiness,
        "Ready to serve.",
        ready={"status": "ready", "database": "ok", "schemaRevision": "0002"},
    ),
    503: error(
        503,
        "Not ready: the database is unreachable, or not migrated to this version.",
        ("database_unavailable", "the database is unreachable"),
        (
            "schema_out_of_date",
            "the database schema is at 0001, this version needs 0002; run `reportsvc migrate`",
        ),
    ),
}
METRICS_RESPONSES: Final = {
    200: ResponseSpec(
        data_container=str,
        media_type="text/plain; version=0.0.4",
        description="Prometheus text format.",
        examples=[
            Example(
                summary="excerpt",
                value='reportsvc_jobs{status="writing"} 3.0\n'
                'reportsvc_queue_ready{step="section"} 17.0\n'
                'reportsvc_queue_oldest_ready_seconds{step="section"} 0.42\n',
            )
        ],
    )
}
