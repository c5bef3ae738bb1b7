"""How a job's row is shown: JSON status, list items, Markdown.

The JSON status (`job_status`) is shared with the webhook sender, so it lives in
`reportsvc.job_view`; list items and Markdown are the API's alone.
"""

from __future__ import annotations

from reportsvc.api.schemas import PUBLIC_STATUS, JobSummary
from reportsvc.job_view import job_status, progress, section_versions
from reportsvc.queue.reports import JobListRow, JobRow

__all__ = ["job_status", "job_summary", "markdown", "progress", "section_versions"]


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
    if job.references:
        parts.append("## References")
        parts.extend(
            f"- [{p.number}] *{p.title}*: {' '.join(p.text.split())}" for p in job.references
        )
    return "\n\n".join(parts) + "\n"
