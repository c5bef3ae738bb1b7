"""How a job's row is shown: JSON status, list items, Markdown."""

from __future__ import annotations

from reportsvc.api.schemas import PUBLIC_STATUS, JobStatus, JobSummary, Report
from reportsvc.queue.store import JobListRow, JobRow


def progress(status: str, sections_total: int | None, sections_done: int) -> float:
    """Finished steps over all steps: the outline, then each section.

    Before the outline exists the number of steps is unknown, so progress is 0. It only
    grows: the section counter never decreases, and the total is fixed with the outline.
    """
    if status == "completed":
        return 1.0
    if sections_total is None:
        return 0.0
    return (1 + sections_done) / (1 + sections_total)


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
        status = JobStatus(
            job_id=job.id,
            status=public,
            progress=progress(job.status, job.sections_total, job.sections_done),
            created_at=job.created_at,
        )
        if job.outline is not None:
            status.outline = job.outline
            status.partial_sections = job.done_sections
        return status
    return JobStatus(
        job_id=job.id,
        status=public,
        error=job.error or ("the job was cancelled" if public == "cancelled" else "unknown error"),
        created_at=job.created_at,
        finished_at=job.finished_at or job.created_at,
    )


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
    """The report as a Markdown document: `# topic`, then `## title` and text per section."""
    parts = [f"# {job.topic}"]
    for title in job.outline or []:
        parts.append(f"## {title}")
        parts.append(job.done_sections.get(title, "").strip())
    return "\n\n".join(parts) + "\n"
