"""Request and response bodies. JSON keys are camelCase; Python names stay snake_case.

The job as GET shows it (`JobStatus` and its parts) is also the data of a webhook event,
so it is defined in `reportsvc.job_view`, which the API and the webhook sender share.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
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
    Reference,
    Report,
    SectionVersion,
    TokenUsage,
    WebhookStatus,
)
from reportsvc.webhooks.addresses import MAX_URL_LENGTH

__all__ = [
    "PUBLIC_STATUS",
    "CamelStruct",
    "CancelResult",
    "CreateReport",
    "CreateSource",
    "ErrorBody",
    "Health",
    "InlineSource",
    "JobAccepted",
    "JobList",
    "JobStatus",
    "JobSummary",
    "Options",
    "OutlineShortfall",
    "Progress",
    "PublicStatus",
    "Readiness",
    "Reference",
    "Report",
    "ReviewOutline",
    "RewriteAccepted",
    "RewriteSection",
    "SectionVersion",
    "SourceCreated",
    "SourceDeleted",
    "SourceDetail",
    "SourceList",
    "SourceSummary",
    "TokenUsage",
    "WebhookStatus",
]


MAX_LANGUAGE_LENGTH = 40
MAX_SOURCE_TITLE_LENGTH = 300

# A count, as JSON Schema's "integer" has it: 3 and 3.0 are the same number.
Count = Annotated[int, msgspec.Meta(ge=1, le=20)] | Annotated[float, msgspec.Meta(ge=1, le=20)]


class CreateReport(CamelStruct, forbid_unknown_fields=True):
    """Start a report. Only `topic` is required.

    The types here are what the body is decoded into; the limits that come from the
    settings, and the document's descriptions, are in `api/docs.py` (`create_report_schema`)
    and are checked by the handler (`api/validation.py`)."""

    topic: str
    sections: Count | UnsetType = UNSET
    language: (
        Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_LANGUAGE_LENGTH)] | UnsetType
    ) = UNSET
    model: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | UnsetType = UNSET
    detail: Detail | UnsetType = UNSET
    webhook_url: (
        Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_URL_LENGTH)] | UnsetType
    ) = UNSET
    # Documents to write from: given here, or the ids of uploaded ones (api/sources.py).
    sources: list[str | InlineSource] | UnsetType = UNSET
    # The client's own outline (no outline call is made), and/or a pause for the owner's
    # review of the outline (the model's, or the client's as a draft).
    outline: Annotated[list[str], msgspec.Meta(min_length=1, max_length=20)] | UnsetType = UNSET
    review_outline: bool | UnsetType = UNSET


class InlineSource(CamelStruct, forbid_unknown_fields=True):
    """A document given in POST /reports: plain text or Markdown."""

    title: str
    text: str


class CreateSource(CamelStruct, forbid_unknown_fields=True):
    """A document to upload: plain text or Markdown."""

    title: str
    text: str


class SourceCreated(CamelStruct):
    source_id: Annotated[
        UUID, msgspec.Meta(description="Name it in the `sources` of POST /reports.")
    ]
    title: str
    characters: int
    created_at: datetime


class SourceSummary(CamelStruct):
    source_id: UUID
    title: str
    characters: int
    created_at: datetime


class SourceDetail(CamelStruct):
    source_id: UUID
    title: str
    text: str
    characters: int
    created_at: datetime


class SourceDeleted(CamelStruct):
    source_id: UUID
    status: Literal["deleted"]


class SourceList(CamelStruct):
    sources: list[SourceSummary]
    next_cursor: Annotated[
        str | None,
        msgspec.Meta(description="Pass as `cursor` for the next (older) page; null at the end."),
    ]


class ReviewOutline(CamelStruct, forbid_unknown_fields=True):
    """PUT /reports/{jobId}/outline: the outline to write, edited or as proposed."""

    outline: Annotated[list[str], msgspec.Meta(min_length=1, max_length=20)]


class RewriteSection(CamelStruct, forbid_unknown_fields=True):
    """POST /reports/{jobId}/sections/{index}/rewrite: what to change, optionally."""

    instruction: Annotated[str, msgspec.Meta(min_length=1, max_length=10_000)] | UnsetType = UNSET


class RewriteAccepted(CamelStruct):
    job_id: UUID
    index: int
    title: str
    status: PublicStatus


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
