"""What a webhook delivery sends: the event as Standard Webhooks lays it out (`type`,
`timestamp`, `data`), with the job as `GET /reports/{jobId}` shows it as its data."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import msgspec
from msgspec import UNSET

from reportsvc.job_view import CamelStruct, JobStatus, Prices, job_status
from reportsvc.queue.reports import JobRow


class WebhookEvent(CamelStruct):
    # report.completed, report.failed, report.cancelled, or report.awaiting_review (the job
    # stopped for its outline's review).
    type: str
    # When the job ended: the same on every attempt (the headers carry the attempt's time).
    timestamp: datetime
    data: JobStatus


def webhook_id(job_id: UUID, event_number: int) -> str:
    """The event's id: the same on every attempt, so a receiver can deduplicate. Without
    dots, which the signed content `id.timestamp.body` uses as separators."""
    return f"msg_{job_id.hex}_{event_number}"


def event_body(
    event: str,
    occurred_at: datetime,
    job: JobRow,
    prices: Prices,
    *,
    review_timeout_seconds: float | None = None,
) -> str:
    """The JSON body of an event, as sent (and signed) on every attempt."""
    data = job_status(job, prices, review_timeout_seconds=review_timeout_seconds)
    # The delivery's own progress is not part of the event it delivers.
    data.webhook = UNSET
    return msgspec.json.encode(WebhookEvent(event, occurred_at, data)).decode()
