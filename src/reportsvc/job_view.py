"""A job as its client sees it: the JSON of `GET /reports/{jobId}`.

The same view goes out three ways: the API's answer, the last event of its event stream,
and the `data` of a webhook delivery. So it lives here, beside neither the API nor the
worker, and both may import it: the API renders it per request, the webhook sender once
per event. JSON keys are camelCase; Python names stay snake_case.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal
from uuid import UUID

import msgspec
from msgspec import UNSET, UnsetType

from reportsvc import failures
from reportsvc.domain import Detail, StepStatus, Usage
from reportsvc.domain import JobStatus as JobState
from reportsvc.queue.reports import HistoryRow, JobRow, WebhookRow

PublicStatus = Literal["processing", "awaiting_review", "completed", "failed", "cancelled"]

# Internal job states, as an operator sees them in psql, folded into what clients see.
PUBLIC_STATUS: dict[JobState, PublicStatus] = {
    JobState.OUTLINING: "processing",
    JobState.WRITING: "processing",
    JobState.AWAITING_REVIEW: "awaiting_review",
    JobState.COMPLETED: "completed",
    JobState.FAILED: "failed",
    JobState.CANCELLED: "cancelled",
}

Prices = dict[str, tuple[float, float]]


class CamelStruct(msgspec.Struct, rename="camel", omit_defaults=True):
    """Base for every body: camelCase on the wire, unset fields left out."""


class Reference(CamelStruct):
    """A passage of the report's sources that its sections cite as `[number]`."""

    number: int
    title: Annotated[str, msgspec.Meta(description="The title of the passage's document.")]
    passage: str


class Report(CamelStruct):
    topic: str
    outline: list[str]
    sections: dict[str, str]
    # With SUMMARY_PASS: a short summary written from the finished sections.
    summary: str | UnsetType = UNSET
    # A report written from sources: what its citations refer to, and how it went.
    references: (
        Annotated[
            list[Reference],
            msgspec.Meta(
                description=(
                    "A report with sources: the passages its sections cite as [n], by number "
                    "(an empty list when none is cited)."
                )
            ),
        ]
        | UnsetType
    ) = UNSET
    citations_removed: (
        Annotated[
            int,
            msgspec.Meta(
                description=(
                    "A report with sources: citations the model made of passage numbers its "
                    "section was not given, removed from the text."
                )
            ),
        ]
        | UnsetType
    ) = UNSET
    sections_without_sources: (
        Annotated[
            list[str],
            msgspec.Meta(
                description=(
                    "A report with sources: the sections no passage was relevant to; each "
                    "says so in its first line."
                )
            ),
        ]
        | UnsetType
    ) = UNSET


class Options(CamelStruct):
    """The options the job runs with (defaults filled in)."""

    sections: int
    detail: Detail
    summary: bool
    language: str | UnsetType = UNSET
    sources: (
        Annotated[int, msgspec.Meta(description="Documents the report is written from.")]
        | UnsetType
    ) = UNSET
    # The job stops after its outline for the owner's review (present when asked for).
    review_outline: bool = False


class TokenUsage(CamelStruct):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class OutlineShortfall(CamelStruct):
    """The outline has fewer sections than were asked for: the model kept proposing fewer
    usable titles, and on the last attempt what there was had to do."""

    asked: Annotated[int, msgspec.Meta(description="Sections asked for (options.sections).")]
    outlined: Annotated[int, msgspec.Meta(description="Sections the outline has.")]


WebhookState = Literal["pending", "delivering", "retrying", "delivered", "failed"]


class WebhookStatus(CamelStruct):
    """Where the job's latest webhook event stands (the job was created with a
    `webhookUrl`)."""

    url: str
    status: Annotated[
        WebhookState,
        msgspec.Meta(
            description=(
                "pending: the job has not ended yet, or the first attempt is about to be "
                "made; delivering: an attempt is under way; retrying: an attempt failed and "
                "another is due at nextAttemptAt; delivered: the receiver answered 2xx; "
                "failed: no more attempts (410 Gone, or the retry window ran out)."
            )
        ),
    ]
    attempts: int
    last_status_code: (
        Annotated[int, msgspec.Meta(description="The receiver's HTTP status, last attempt.")]
        | UnsetType
    ) = UNSET
    last_error: str | UnsetType = UNSET
    next_attempt_at: datetime | UnsetType = UNSET


class SectionVersion(CamelStruct):
    """A text that a rewrite replaced (GET /reports/{jobId}?history=true)."""

    index: Annotated[
        int,
        msgspec.Meta(description="The section's index in the outline (the summary: its length)."),
    ]
    title: str
    text: str
    usage: Annotated[
        TokenUsage,
        msgspec.Meta(description="What this version cost (its failed attempts included)."),
    ]
    replaced_at: datetime
    written_at: datetime | UnsetType = UNSET
    instruction: (
        Annotated[str, msgspec.Meta(description="What the rewrite that replaced it asked for.")]
        | UnsetType
    ) = UNSET


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
    # While processing: what the job waits for when it is not moving (its model's quota).
    waiting_for: (
        Annotated[
            Literal["quota"],
            msgspec.Meta(
                description=(
                    "Present while a step waits for its model's quota (MODEL_RATE_LIMITS, or "
                    "the provider's own limits): the job is not stuck, its turn is coming."
                )
            ),
        ]
        | UnsetType
    ) = UNSET
    # Only for a job created with a webhookUrl (and never inside a webhook's own body).
    webhook: WebhookStatus | UnsetType = UNSET
    # awaiting_review: when the review is due (OUTLINE_REVIEW_TIMEOUT after the outline).
    review_due_at: (
        Annotated[
            datetime,
            msgspec.Meta(
                description=(
                    "awaiting_review only: PUT /reports/{jobId}/outline before this time, or "
                    "the job fails (OUTLINE_REVIEW_TIMEOUT)."
                )
            ),
        ]
        | UnsetType
    ) = UNSET
    # A completed report whose latest rewrite failed for good: why (the report is as before).
    rewrite_error: (
        Annotated[
            str,
            msgspec.Meta(
                description=(
                    "completed only: the latest section rewrite failed for good, so the "
                    "report is as it was before it; why."
                )
            ),
        ]
        | UnsetType
    ) = UNSET
    # With ?history=true: the texts rewrites replaced, by section, oldest first.
    history: list[SectionVersion] | UnsetType = UNSET


def progress(status: JobState, sections_total: int | None, sections_done: int) -> float:
    """Finished steps over all steps: the outline, then each section (and the summary).

    Before the outline exists the number of steps is unknown, so progress is 0. It only
    grows while the report is first written (the total is fixed with the outline); a
    section rewrite takes it back below 1 until the section (and summary) are written.
    """
    if status is JobState.COMPLETED:
        return 1.0
    if sections_total is None:
        return 0.0
    return (1 + sections_done) / (1 + sections_total)


def estimated_cost(
    model: str, prompt_tokens: int, completion_tokens: int, prices: Prices
) -> float | None:
    """USD, from OPENAI_PRICES (per million input and output tokens)."""
    if model not in prices:
        return None
    per_input, per_output = prices[model]
    return round((prompt_tokens * per_input + completion_tokens * per_output) / 1_000_000, 6)


def job_status(
    job: JobRow, prices: Prices | None = None, *, review_timeout_seconds: float | None = None
) -> JobStatus:
    public = PUBLIC_STATUS[job.status]
    usage = Usage(job.prompt_tokens, job.completion_tokens)
    status = JobStatus(
        job_id=job.id,
        status=public,
        model=job.model,
        options=_options(job),
        usage=TokenUsage(
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            total_tokens=usage.total_tokens,
        ),
        created_at=job.created_at,
    )
    cost = estimated_cost(job.model, job.prompt_tokens, job.completion_tokens, prices or {})
    if cost is not None:
        status.estimated_cost_usd = cost
    if job.truncated:
        status.truncated_sections = job.truncated
    if (shortfall := outline_shortfall(job)) is not None:
        status.outline_shortfall = shortfall
    if public == "completed":
        _completed(job, status)
    elif public == "processing":
        _in_progress(job, status)
    elif public == "awaiting_review":
        # The outline proposed, waiting for PUT /reports/{jobId}/outline.
        _in_progress(job, status)
        if job.review_since is not None and review_timeout_seconds is not None:
            status.review_due_at = job.review_since + timedelta(seconds=review_timeout_seconds)
    else:
        status.error = job.error or (
            failures.CANCELLED if public == "cancelled" else "unknown error"
        )
    if public not in ("processing", "awaiting_review"):
        status.finished_at = job.finished_at or job.created_at
    if job.webhook_url is not None:
        status.webhook = webhook_status(job.webhook_url, job.webhook)
    return status


def _completed(job: JobRow, status: JobStatus) -> None:
    status.progress = 1.0
    status.report = _report(job)
    # A completed job keeps an error only when its latest rewrite failed for good.
    if job.error is not None:
        status.rewrite_error = job.error


def _report(job: JobRow) -> Report:
    outline = job.outline or []
    report = Report(
        topic=job.topic,
        outline=outline,
        sections={title: job.done_sections[title] for title in outline},
    )
    if job.summary is not None:
        report.summary = job.summary
    if job.options.sources:
        report.references = [Reference(p.number, p.title, p.text) for p in job.references]
        report.citations_removed = job.citations_removed
        report.sections_without_sources = job.unsourced_sections
    return report


def _in_progress(job: JobRow, status: JobStatus) -> None:
    """What a job under way shows: progress, the outline and the sections written so far,
    and what it waits for."""
    status.progress = progress(job.status, job.sections_total, job.sections_done)
    if job.waiting_for_quota:
        status.waiting_for = "quota"
    if job.outline is not None:
        status.outline = job.outline
        status.partial_sections = job.done_sections


def outline_shortfall(job: JobRow) -> OutlineShortfall | None:
    """Sections asked for against sections outlined, when the outline came up short."""
    if job.outline is None or len(job.outline) >= job.options.sections:
        return None
    return OutlineShortfall(asked=job.options.sections, outlined=len(job.outline))


def webhook_status(url: str, delivery: WebhookRow | None) -> WebhookStatus:
    if delivery is None:  # the job has not ended yet
        return WebhookStatus(url=url, status="pending", attempts=0)
    shown = WebhookStatus(url=url, status=_webhook_state(delivery), attempts=delivery.attempts)
    if delivery.last_status_code is not None:
        shown.last_status_code = delivery.last_status_code
    if delivery.last_error is not None:
        shown.last_error = delivery.last_error
    if delivery.status is StepStatus.QUEUED:
        shown.next_attempt_at = delivery.run_after
    return shown


def _webhook_state(delivery: WebhookRow) -> WebhookState:
    match delivery.status:
        case StepStatus.QUEUED:
            return "retrying" if delivery.attempts > 0 else "pending"
        case StepStatus.RUNNING:
            return "delivering"
        case StepStatus.DONE:
            return "delivered"
        case StepStatus.FAILED | StepStatus.CANCELLED:
            return "failed"


def _options(job: JobRow) -> Options:
    options = Options(
        sections=job.options.sections, detail=job.options.detail, summary=job.options.summary
    )  # language follows only when chosen
    if job.options.language is not None:
        options.language = job.options.language
    if job.options.sources:
        options.sources = job.options.sources
    options.review_outline = job.options.review_outline
    return options


def section_versions(rows: list[HistoryRow]) -> list[SectionVersion]:
    """The history of rewrites, as GET ?history=true shows it."""
    versions = []
    for row in rows:
        version = SectionVersion(
            index=row.position,
            title=row.title,
            text=row.content,
            usage=TokenUsage(
                prompt_tokens=row.prompt_tokens,
                completion_tokens=row.completion_tokens,
                total_tokens=row.prompt_tokens + row.completion_tokens,
            ),
            replaced_at=row.replaced_at,
        )
        if row.written_at is not None:
            version.written_at = row.written_at
        if row.instruction is not None:
            version.instruction = row.instruction
        versions.append(version)
    return versions
