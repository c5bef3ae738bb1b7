"""The work a worker does, as plain values shared by the queue, the API and the pipeline.

A job (one report) is written in steps, every one a row of one queue table with a kind:
one `outline` step, then one `section` step per outline title, then, when asked for, a
`summary` step. A job with a webhook URL gets one `webhook` step per ending (completed,
failed, cancelled): its delivery, claimed, leased and retried like any other step. The
queue hands out `Step`s; a `StepRunner` turns each into a `StepResult`. Nothing here
knows about SQL or HTTP.

Statuses are defined once, here. The schema's CHECK constraints and the queue's SQL are
generated from these enums (`reportsvc.db.schema`, `reportsvc.queue.sql`).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Final, Literal, Protocol
from uuid import UUID

import msgspec


class JobStatus(StrEnum):
    """A report's phase, as an operator sees it in psql (clients see `PublicStatus`)."""

    OUTLINING = "outlining"  # its outline step is waiting, running or retrying
    WRITING = "writing"  # the outline exists; section (and summary) steps are under way
    # The outline exists and waits for its owner's review (PUT /reports/{id}/outline); no
    # step of the job is queued or leased meanwhile.
    AWAITING_REVIEW = "awaiting_review"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class StepStatus(StrEnum):
    QUEUED = "queued"  # claimable once run_after has passed
    RUNNING = "running"  # leased to a worker
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class StepKind(StrEnum):
    OUTLINE = "outline"
    SECTION = "section"
    SUMMARY = "summary"
    # The delivery of a finished job's webhook event. It runs after its job has ended, so
    # the job's end does not retire it, and its failing does not fail the job.
    WEBHOOK = "webhook"


# Every set of statuses is spelled once, here.
# Jobs whose steps workers run. A job awaiting its outline's review is not among them: no
# worker holds anything for it, it takes no part in fair turns (the oldest turn under
# way), in admission counts or in the job deadline (JOB_TIMEOUT_SECONDS); its own clock is
# OUTLINE_REVIEW_TIMEOUT. See DEVLOG.md, Part 14.
ACTIVE_JOB_STATUSES: Final = (JobStatus.OUTLINING, JobStatus.WRITING)
# Jobs that have not ended: these can be cancelled or failed.
UNFINISHED_JOB_STATUSES: Final = (*ACTIVE_JOB_STATUSES, JobStatus.AWAITING_REVIEW)
FINISHED_JOB_STATUSES: Final = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)
# A failed or cancelled job may be retried (`reportsvc retry`).
RETRYABLE_JOB_STATUSES: Final = (JobStatus.FAILED, JobStatus.CANCELLED)
ENDED_STEP_STATUSES: Final = (StepStatus.DONE, StepStatus.FAILED, StepStatus.CANCELLED)
# Steps that produce a part of the report, counted by jobs.sections_done.
REPORT_PART_KINDS: Final = (StepKind.SECTION, StepKind.SUMMARY)
# The summary step's title, as shown in psql.
SUMMARY_TITLE: Final = "Summary"

Detail = Literal["brief", "standard", "deep"]


class JobOptions(msgspec.Struct, frozen=True, omit_defaults=True):
    """Per-job choices, stored with the job (jobs.options) and echoed by the API."""

    sections: int
    detail: Detail = "standard"
    language: str | None = None
    # A final pass writes a short summary from the finished sections (SUMMARY_PASS).
    summary: bool = False
    # Documents the report is written from (0: none), and a digest of them, so that a
    # request repeated with an Idempotency-Key but other sources is told apart.
    sources: int = 0
    sources_digest: str | None = None
    # The job stops after its outline until its owner approves it (reviewOutline).
    review_outline: bool = False
    # The outline was given by the client: no outline step runs.
    outline_given: bool = False

    @classmethod
    def from_row(cls, value: object) -> JobOptions:
        """From `jobs.options` as a connection decodes jsonb (a dict)."""
        return msgspec.convert(value, cls)


class Usage(msgspec.Struct, frozen=True):
    """Tokens a model call consumed, as the model service reported them."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
        )


class Delivery(msgspec.Struct, frozen=True, kw_only=True):
    """What a webhook step needs besides the job: where to, and what was sent before."""

    url: str
    # The event type, e.g. `report.completed`.
    event: str
    # When the job ended (the step was created with the job's final state): the event's
    # time in the body, the same on every attempt.
    occurred_at: datetime
    # When the first attempt was made (the retry window is measured from it).
    first_attempt_at: datetime
    # The body as first sent: every retry sends exactly these bytes. None before the first
    # attempt has taken its snapshot of the job.
    body: str | None = None


class Step(msgspec.Struct, frozen=True, kw_only=True):
    """One claimed step, with everything needed to run it (no further query)."""

    id: int
    kind: StepKind
    job_id: UUID
    # The fencing token: every write about this step presents it.
    attempt: int
    topic: str
    model: str
    options: JobOptions
    # Sections: the index in the outline (the summary: the outline's length).
    position: int = 0
    title: str | None = None
    # The job's outline, once it has one (every step but the outline).
    outline: list[str] = msgspec.field(default_factory=list)
    # The summary step only: the finished sections, title -> text.
    written: dict[str, str] = msgspec.field(default_factory=dict)
    # A webhook step only.
    delivery: Delivery | None = None
    # A section being rewritten (POST .../sections/{index}/rewrite): its current text, and
    # what the client asked for, if anything.
    previous: str | None = None
    instruction: str | None = None


class StepResult(msgspec.Struct, frozen=True, kw_only=True):
    """What a step produced: the outline's titles, or a section's (or summary's) text."""

    titles: list[str] | None = None
    content: str | None = None
    # Why the model stopped: 'length' means the text was cut at max_tokens.
    finish_reason: str = "stop"
    usage: Usage = Usage()
    # The HTTP status the step's call was answered with, when it is worth keeping (a
    # webhook receiver's answer).
    status_code: int | None = None
    # A section of a report with sources: how many passages its prompt carried (0: none
    # was relevant), and how many citations of passages it was not given were removed.
    passages_given: int | None = None
    citations_removed: int = 0


class StepRunner(Protocol):
    """Does the work of one step. Raises `StepError` when it cannot."""

    async def run(self, step: Step) -> StepResult: ...
