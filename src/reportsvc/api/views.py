"""How a job's row is shown: JSON status, list items, Markdown."""

from __future__ import annotations

from reportsvc import failures
from reportsvc.api.schemas import (
    PUBLIC_STATUS,
    JobStatus,
    JobSummary,
    Options,
    OutlineShortfall,
    Report,
    TokenUsage,
)
from reportsvc.domain import JobStatus as JobState
from reportsvc.domain import Usage
from reportsvc.queue.reports import JobListRow, JobRow

Prices = dict[str, tuple[float, float]]


def progress(status: JobState, sections_total: int | None, sections_done: int) -> float:
    """Finished steps over all steps: the outline, then each section (and the summary).

    Before the outline exists the number of steps is unknown, so progress is 0. It only
    grows: the section counter never decreases, and the total is fixed with the outline.
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


def job_status(job: JobRow, prices: Prices | None = None) -> JobStatus:
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
        outline = job.outline or []
        status.progress = 1.0
        status.report = Report(
            topic=job.topic,
            outline=outline,
            sections={title: job.done_sections[title] for title in outline},
        )
        if job.summary is not None:
            status.report.summary = job.summary
    elif public == "processing":
        status.progress = progress(job.status, job.sections_total, job.sections_done)
        if job.outline is not None:
            status.outline = job.outline
            status.partial_sections = job.done_sections
    else:
        status.error = job.error or (
            failures.CANCELLED if public == "cancelled" else "unknown error"
        )
    if public != "processing":
        status.finished_at = job.finished_at or job.created_at
    return status


def outline_shortfall(job: JobRow) -> OutlineShortfall | None:
    """Sections asked for against sections outlined, when the outline came up short."""
    if job.outline is None or len(job.outline) >= job.options.sections:
        return None
    return OutlineShortfall(asked=job.options.sections, outlined=len(job.outline))


def _options(job: JobRow) -> Options:
    options = Options(
        sections=job.options.sections, detail=job.options.detail, summary=job.options.summary
    )  # language follows only when chosen
    if job.options.language is not None:
        options.language = job.options.language
    return options


def job_summary(row: JobListRow) -> JobSummary:
    summary = JobSummary(
        job_id=row.id,
        status=PUBLIC_STATUS[row.status],
        topic=row.topic,
        progress=progress(row.status, row.sections_total, row.sections_done),
        created_at=row.created_at,
    )
    if row.finished_at is not None:
        summary.finished_at = row.finished_at
    return summary


def markdown(job: JobRow) -> str:
    """The report as a Markdown document: `# topic`, the summary when there is one, then
    `## title` and text per section."""
    parts = [f"# {job.topic}"]
    if job.summary:
        parts.append(job.summary.strip())
    for title in job.outline or []:
        parts.append(f"## {title}")
        parts.append(job.done_sections.get(title, "").strip())
    return "\n\n".join(parts) + "\n"
