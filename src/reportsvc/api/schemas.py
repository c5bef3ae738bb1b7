"""Request and response bodies. JSON keys are camelCase; Python names stay snake_case.

The job as GET shows it (`JobStatus` and its parts) is also the data of a webhook event,
so it is defined in `reportsvc.job_view`, which the API and the webhook sender share.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

import msgspec
from msgspec import UNSET, UnsetType

from reportsvc.domain import Detail
from reportsvc.job_view import (
    PUBLIC_STATUS,
    CamelStruct,
    JobStatus,
    Options,
    OutlineShortfall,
    Progress,
    PublicStatus,
    Report,
    TokenUsage,
    WebhookStatus,
)

__all__ = [
    "PUBLIC_STATUS",
    "CamelStruct",
    "CancelResult",
    "CreateReport",
    "ErrorBody",
    "Health",
    "JobAccepted",
    "JobList",
    "JobStatus",
    "JobSummary",
    "Options",
    "OutlineShortfall",
    "Progress",
    "PublicStatus",
    "Readiness",
    "Report",
    "TokenUsage",
    "WebhookStatus",
]


class CreateReport(CamelStruct, forbid_unknown_fields=True):
    """Start a report. Only `topic` is required."""

    topic: Annotated[
        str,
        msgspec.Meta(
            description="What the report is about. Not blank; at most MAX_TOPIC_LENGTH characters.",
            examples=["The Roman Empire"],
        ),
    ]
    sections: (
        Annotated[
            int,
            msgspec.Meta(
                ge=1,
                le=20,
                description="How many sections (default DEFAULT_SECTIONS, at most MAX_SECTIONS).",
                examples=[6],
            ),
        ]
        | UnsetType
    ) = UNSET
    language: (
        Annotated[
            str,
            msgspec.Meta(
                min_length=1,
                max_length=40,
                description="The report's language, by name: letters, spaces, hyphens.",
                examples=["French"],
            ),
        ]
        | UnsetType
    ) = UNSET
    model: (
        Annotated[
            str,
            msgspec.Meta(
                min_length=1,
                max_length=200,
                description="A model from OPENAI_ALLOWED_MODELS (default OPENAI_MODEL).",
                examples=["gpt-4o-mini"],
            ),
        ]
        | UnsetType
    ) = UNSET
    detail: (
        Annotated[
            Detail,
            msgspec.Meta(
                description="Section length: brief (~120 words), standard (~280), deep (~580)."
            ),
        ]
        | UnsetType
    ) = UNSET
    webhook_url: (
        Annotated[
            str,
            msgspec.Meta(
                min_length=1,
                max_length=2048,
                description=(
                    "An http or https URL to POST the job to when it completes, fails or is "
                    "cancelled (signed per Standard Webhooks; see README). Hosts on loopback, "
                    "private, link-local or cloud-metadata addresses are refused."
                ),
                examples=["https://example.com/hooks/reports"],
            ),
        ]
        | UnsetType
    ) = UNSET


class JobAccepted(CamelStruct):
    job_id: Annotated[UUID, msgspec.Meta(description="Poll GET /reports/{jobId} with it.")]


class JobSummary(CamelStruct):
    job_id: UUID
    status: PublicStatus
    topic: str
    progress: Progress
    created_at: datetime
    finished_at: datetime | UnsetType = UNSET


class JobList(CamelStruct):
    jobs: list[JobSummary]
    next_cursor: Annotated[
        str | None,
        msgspec.Meta(description="Pass as `cursor` for the next (older) page; null at the end."),
    ]


class CancelResult(CamelStruct):
    job_id: UUID
    status: PublicStatus


class ErrorBody(CamelStruct):
    """Every 4xx and 5xx answer has this shape."""

    status: int
    code: str
    error: str


class Health(CamelStruct):
    status: str


class Readiness(CamelStruct):
    status: str
    database: str
    schema_revision: str
