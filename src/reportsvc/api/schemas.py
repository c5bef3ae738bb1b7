"""Request and response bodies. JSON keys are camelCase; Python names stay snake_case."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

import msgspec
from msgspec import UNSET, UnsetType

from reportsvc.domain import Detail
from reportsvc.domain import JobStatus as JobState

PublicStatus = Literal["processing", "completed", "failed", "cancelled"]

# Internal job states, as an operator sees them in psql, folded into what clients see.
PUBLIC_STATUS: dict[JobState, PublicStatus] = {
    JobState.OUTLINING: "processing",
    JobState.WRITING: "processing",
    JobState.COMPLETED: "completed",
    JobState.FAILED: "failed",
    JobState.CANCELLED: "cancelled",
}


class CamelStruct(msgspec.Struct, rename="camel", omit_defaults=True):
    """Base for every body: camelCase on the wire, unset fields left out."""


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


class JobAccepted(CamelStruct):
    job_id: Annotated[UUID, msgspec.Meta(description="Poll GET /reports/{jobId} with it.")]


class Report(CamelStruct):
    topic: str
    outline: list[str]
    sections: dict[str, str]
    # With SUMMARY_PASS: a short summary written from the finished sections.
    summary: str | UnsetType = UNSET


class Options(CamelStruct):
    """The options the job runs with (defaults filled in)."""

    sections: int
    detail: Detail
    summary: bool
    language: str | UnsetType = UNSET


class TokenUsage(CamelStruct):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class OutlineShortfall(CamelStruct):
    """The outline has fewer sections than were asked for: the model kept proposing fewer
    usable titles, and on the last attempt what there was had to do."""

    asked: Annotated[int, msgspec.Meta(description="Sections asked for (options.sections).")]
    outlined: Annotated[int, msgspec.Meta(description="Sections the outline has.")]


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
    # Sections the model stopped at max_tokens (SECTION_MAX_TOKENS, scaled by `detail`).
    truncated_sections: list[str] | UnsetType = UNSET
    # Present only when the report has fewer sections than asked for.
    outline_shortfall: OutlineShortfall | UnsetType = UNSET
    model: str | UnsetType = UNSET
    options: Options | UnsetType = UNSET
    usage: TokenUsage | UnsetType = UNSET
    estimated_cost_usd: (
        Annotated[float, msgspec.Meta(description="From OPENAI_PRICES; absent if unknown.")]
        | UnsetType
    ) = UNSET
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
