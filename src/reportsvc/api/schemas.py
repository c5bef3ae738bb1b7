"""Request and response bodies. JSON keys are camelCase; Python names stay snake_case."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

import msgspec
from msgspec import UNSET, UnsetType

PublicStatus = Literal["processing", "completed", "failed", "cancelled"]

# Internal job states, as an operator sees them in psql, folded into what clients see.
PUBLIC_STATUS: dict[str, PublicStatus] = {
    "queued": "processing",
    "outlining": "processing",
    "writing": "processing",
    "completed": "completed",
    "failed": "failed",
    "cancelled": "cancelled",
}


class CamelStruct(msgspec.Struct, rename="camel", omit_defaults=True):
    """Base for every body: camelCase on the wire, unset fields left out."""


class CreateReport(CamelStruct, forbid_unknown_fields=True):
    """Start a report."""

    topic: Annotated[
        str,
        msgspec.Meta(
            description="What the report is about. Not blank; at most MAX_TOPIC_LENGTH characters.",
            examples=["The Roman Empire"],
        ),
    ]


class JobAccepted(CamelStruct):
    job_id: Annotated[UUID, msgspec.Meta(description="Poll GET /reports/{jobId} with it.")]


class Report(CamelStruct):
    topic: str
    outline: list[str]
    sections: dict[str, str]


Progress = Annotated[
    float,
    msgspec.Meta(
        ge=0,
        le=1,
        description="Finished steps (the outline, then each section) over all steps.",
    ),
]


class JobStatus(CamelStruct):
    job_id: UUID
    status: PublicStatus
    progress: Progress | UnsetType = UNSET
    report: Report | UnsetType = UNSET
    error: str | UnsetType = UNSET
    # While processing: the outline once written, and the sections finished so far.
    outline: list[str] | UnsetType = UNSET
    partial_sections: dict[str, str] | UnsetType = UNSET
    created_at: datetime | UnsetType = UNSET
    finished_at: datetime | UnsetType = UNSET


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
