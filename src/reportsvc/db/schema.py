"""The tables, as SQLAlchemy Core metadata: the schema's single description.

Migrations (`migrations/versions`) create exactly this; a test runs Alembic's comparison
against a migrated database so the two cannot drift. Runtime SQL lives in the `.sql` files
of `reportsvc.queue`.

Status values come from `reportsvc.domain` and are enforced by CHECK constraints, so
`psql` readers can trust them:

jobs.status      outlining -> writing -> completed
                 outlining -> awaiting_review -> writing (the owner's review, migration 0009)
                 completed -> writing -> completed (a section rewrite)
                 outlining | writing | awaiting_review -> failed | cancelled
steps.status     queued -> running -> done
                 done -> queued (a section rewrite; its summary's too, after the section)
                 running -> queued (retry, lease expiry, release on shutdown)
                 queued | running -> failed | cancelled

A job with a `webhook_url` that reaches completed, failed or cancelled gets a `webhook`
step in the same transaction, from the trigger `jobs_webhook_event` (migration 0006), so
no path that ends a job can forget it: completion, a failed step, the rescuer, the
deadline, cancellation by the API or the CLI, `reportsvc retry`.
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSVECTOR, UUID

from reportsvc.domain import (
    ACTIVE_JOB_STATUSES,
    FINISHED_JOB_STATUSES,
    JobStatus,
    StepKind,
    StepStatus,
)


def sql_list(values: tuple[StrEnum, ...] | type[StrEnum]) -> str:
    """`'a', 'b'`: enum values as SQL literals, for CHECKs and index predicates."""
    return ", ".join(f"'{value.value}'" for value in values)


metadata = MetaData(
    naming_convention={
        "ix": "%(table_name)s_%(column_0_name)s_idx",
        "uq": "%(table_name)s_%(column_0_N_name)s_key",
        "ck": "%(table_name)s_%(constraint_name)s_check",
        "fk": "%(table_name)s_%(column_0_name)s_fkey",
        "pk": "%(table_name)s_pkey",
    }
)


def _status_check(statuses: type[StrEnum]) -> CheckConstraint:
    return CheckConstraint(f"status IN ({sql_list(statuses)})", name="status")


def _created_at() -> Column[object]:
    return Column(
        "created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")
    )


ACTIVE_JOBS = f"status IN ({sql_list(ACTIVE_JOB_STATUSES)})"
FINISHED_JOBS = f"status IN ({sql_list(FINISHED_JOB_STATUSES)})"

jobs = Table(
    "jobs",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()")),
    Column("topic", Text, nullable=False),
    Column("status", Text, nullable=False, server_default=text(f"'{JobStatus.OUTLINING.value}'")),
    Column("model", Text, nullable=False),
    Column("options", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    # The outcome.
    # Titles are keys of the report's `sections` object, so they are distinct: enforced by
    # the trigger jobs_outline_distinct (migration 0001).
    Column("outline", ARRAY(Text)),
    # Section steps (and the summary step) of the report, and how many of them are done.
    Column("sections_total", Integer),
    Column("sections_done", Integer, nullable=False, server_default=text("0")),
    Column("error", Text),
    Column("idempotency_key", Text),
    # The API token that created the job (NULL when the API runs without tokens).
    Column("owner", Text),
    # Where the job's webhook events are POSTed (NULL: none). Checked by the API (scheme,
    # length, addresses); each ending queues a `webhook` step (trigger jobs_webhook_event).
    Column("webhook_url", Text),
    # The job's place among its owner's and everyone's (migration 0007): its steps are
    # claimed in turn order, so owners with queued work take turns.
    Column("turn", BigInteger, nullable=False, server_default=text("0")),
    _created_at(),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("deadline_at", DateTime(timezone=True), nullable=False),
    # When the job began to wait for its outline's review (OUTLINE_REVIEW_TIMEOUT counts
    # from here), migration 0009.
    Column("review_since", DateTime(timezone=True)),
    _status_check(JobStatus),
    CheckConstraint("sections_done >= 0", name="sections_done"),
    CheckConstraint(
        "sections_total IS NULL OR sections_done <= sections_total", name="sections_done_le_total"
    ),
    # The rescuer fails unfinished jobs past their deadline.
    Index("jobs_deadline_idx", "deadline_at", postgresql_where=text(ACTIVE_JOBS)),
    # The oldest turn under way: where a newcomer's turns start.
    Index("jobs_turn_idx", "turn", postgresql_where=text(ACTIVE_JOBS)),
    # Reviews not given in time, for the workers' maintenance pass.
    Index(
        "jobs_review_idx",
        "review_since",
        postgresql_where=text(f"status = '{JobStatus.AWAITING_REVIEW.value}'"),
    ),
    # Listing, newest first, with a keyset cursor on (created_at, id).
    Index("jobs_created_at_idx", "created_at", "id"),
    # `reportsvc prune` deletes finished jobs oldest first (migration 0002).
    Index("jobs_finished_idx", "finished_at", postgresql_where=text(FINISHED_JOBS)),
    # An idempotency key is unique per owner.
    Index(
        "jobs_idempotency_key_idx",
        text("coalesce(owner, '')"),
        "idempotency_key",
        unique=True,
        postgresql_where=text("idempotency_key IS NOT NULL"),
    ),
    # Pending jobs per owner, for MAX_PENDING_JOBS_PER_OWNER (migration 0005, with the
    # function reportsvc_admit that counts on it).
    Index(
        "jobs_owner_pending_idx",
        "owner",
        postgresql_where=text(f"{ACTIVE_JOBS} AND owner IS NOT NULL"),
    ),
    # Only jobs with an owner: without API tokens nothing maintains it.
    Index(
        "jobs_owner_created_at_idx",
        "owner",
        "created_at",
        "id",
        postgresql_where=text("owner IS NOT NULL"),
    ),
)

# The work queue: every step of every job, whatever its kind, is one row here, claimed,
# leased, retried, rescued, released and completed by the same statements.
steps = Table(
    "steps",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("job_id", UUID(as_uuid=True), ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    Column("kind", Text, nullable=False),
    # Sections: the index in the outline; the summary: the outline's length; the outline: 0;
    # a webhook delivery: the job's events numbered from 0.
    Column("position", SmallInteger, nullable=False, server_default=text("0")),
    # Claim order: 0 for the steps of reports under way (sections, summaries), 1 for the
    # outlines of new reports, so that reports already started finish first.
    Column("priority", SmallInteger, nullable=False, server_default=text("0")),
    # The job's turn (a copy, so the claim reads one index in order).
    Column("turn", BigInteger, nullable=False, server_default=text("0")),
    # Why a queued step is not running yet: 'quota' while its model's quota is spent.
    Column("waiting_for", Text),
    # Sections: the outline title; the summary: 'Summary'; the outline: none; a webhook
    # delivery: its event type ('report.completed', 'report.failed', 'report.cancelled').
    Column("title", Text),
    Column("status", Text, nullable=False, server_default=text(f"'{StepStatus.QUEUED.value}'")),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("run_after", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("lease_owner", Text),
    Column("lease_expires_at", DateTime(timezone=True)),
    # What went wrong on the latest failed attempt, in detail (operators only).
    Column("last_error", Text),
    # The HTTP status the latest attempt was answered with, when worth keeping: a webhook
    # receiver's answer, a model service's error.
    Column("last_status_code", SmallInteger),
    # The worker that took the latest attempt; kept after the lease ends, for operators.
    Column("claimed_by", Text),
    # A section's or summary's text (the outline's titles go to jobs.outline); a webhook
    # delivery's body, stored by its first attempt and sent unchanged by every retry.
    Column("content", Text),
    # Tokens over all attempts, and why the model stopped ('length': truncated).
    Column("prompt_tokens", Integer, nullable=False, server_default=text("0")),
    Column("completion_tokens", Integer, nullable=False, server_default=text("0")),
    Column("finish_reason", Text),
    # A section of a report with sources (migration 0008): the passages its prompt carried
    # (0: none was relevant), and the citations of other numbers removed from its text.
    Column("passages_given", SmallInteger),
    Column("citations_removed", Integer, nullable=False, server_default=text("0")),
    # A section rewrite: what the client asked for (NULL: none, or not a rewrite).
    Column("instruction", Text),
    _created_at(),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    _status_check(StepStatus),
    CheckConstraint(f"kind IN ({sql_list(StepKind)})", name="kind"),
    UniqueConstraint("job_id", "kind", "position"),
    # The hot claim path: only queued rows are in this index, so it stays small no matter
    # how many finished steps the table holds, and it is in claim order.
    Index(
        "steps_claim_idx",
        "turn",
        "priority",
        "run_after",
        "id",
        postgresql_where=text(f"status = '{StepStatus.QUEUED.value}'"),
    ),
    # Running rows, for the rescuer. Keyed on id (never updated) rather than on
    # lease_expires_at, so a heartbeat that only moves the lease can be a HOT update.
    Index(
        "steps_running_idx", "id", postgresql_where=text(f"status = '{StepStatus.RUNNING.value}'")
    ),
)

# The texts a rewrite replaced (migration 0009): a section's, and the summary's, which is
# written again after it. Usage stays counted on the step (its tokens add up over every
# version); the row keeps what the replaced version cost.
section_history = Table(
    "section_history",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("job_id", UUID(as_uuid=True), ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    # 'section' or 'summary', and its position, as in `steps`.
    Column("kind", Text, nullable=False),
    Column("position", SmallInteger, nullable=False),
    Column("title", Text, nullable=False),
    Column("content", Text, nullable=False),
    # What the rewrite that replaced this text asked for.
    Column("instruction", Text),
    Column("prompt_tokens", Integer, nullable=False),
    Column("completion_tokens", Integer, nullable=False),
    # When this text was written, and when a rewrite replaced it.
    Column("written_at", DateTime(timezone=True)),
    Column("replaced_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Index("section_history_job_id_idx", "job_id", "position"),
)

# Admission (migration 0005, function reportsvc_admit): per scope ('*' for every job, or an
# owner), the jobs pending at the last exact count and the jobs admitted since, an upper
# bound of the jobs pending now. Written only by inserts of new jobs, one at a time.
admission = Table(
    "admission",
    metadata,
    Column("scope", Text, primary_key=True),
    Column("counted", BigInteger, nullable=False),
    Column("admitted", BigInteger, nullable=False),
)

# Each owner's next turn ('' for jobs without a token, '*' for anyone's), migration 0007.
fair_turns = Table(
    "fair_turns",
    metadata,
    Column("owner", Text, primary_key=True),
    Column("next_turn", BigInteger, nullable=False),
)

# Each model's rate limit and the state of its buckets, shared by every worker (0007);
# the view model_quota_state reads it in words.
model_quotas = Table(
    "model_quotas",
    metadata,
    Column("model", Text, primary_key=True),
    Column("rpm", Float),
    Column("tpm", Float),
    Column("source", Text, nullable=False),
    Column("request_tat", DateTime(timezone=True)),
    Column("token_tat", DateTime(timezone=True)),
    Column("paused_until", DateTime(timezone=True)),
    Column("learning_until", DateTime(timezone=True)),
    Column("learned", Boolean, nullable=False, server_default=text("false")),
    Column("remaining_requests", BigInteger),
    Column("remaining_tokens", BigInteger),
    Column("requests_reset_at", DateTime(timezone=True)),
    Column("tokens_reset_at", DateTime(timezone=True)),
    Column("rate_limited", BigInteger, nullable=False, server_default=text("0")),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    CheckConstraint("source IN ('configured', 'headers')", name="source"),
)

# Documents uploaded with POST /sources, for reports to name by id (migration 0008). A job
# does not refer to them: it takes a copy of their passages when it is created.
sources = Table(
    "sources",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()")),
    # The API token that uploaded it (NULL when the API runs without tokens).
    Column("owner", Text),
    Column("title", Text, nullable=False),
    Column("text", Text, nullable=False),
    _created_at(),
    # Listing, newest first, per owner ('' without tokens).
    Index("sources_owner_created_at_idx", text("coalesce(owner, '')"), "created_at", "id"),
)

# A job's sources as numbered passages: a snapshot taken when the job is created, from
# the request's documents and the uploaded ones it names (migration 0008). `tsv` is the
# passage (with its document's title) as the job's language reads it; a section's search
# is `tsv @@ query` among its job's rows.
job_passages = Table(
    "job_passages",
    metadata,
    Column("job_id", UUID(as_uuid=True), ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    # From 1, in the order of the documents and of the passages in each: what a citation
    # `[n]` names.
    Column("number", Integer, nullable=False),
    # The document's place in the request, from 0.
    Column("document", SmallInteger, nullable=False),
    # The uploaded source it was copied from (NULL: given in the request). Not a foreign
    # key: deleting the source leaves the job's copy alone.
    Column("source_id", UUID(as_uuid=True)),
    Column("title", Text, nullable=False),
    Column("text", Text, nullable=False),
    Column("tsv", TSVECTOR, nullable=False),
    PrimaryKeyConstraint("job_id", "number"),
    Index("job_passages_tsv_idx", "tsv", postgresql_using="gin"),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("name", Text, nullable=False, unique=True),
    # sha256 of the token: the token itself is shown once, when it is created.
    Column("token_hash", Text, nullable=False, unique=True),
    _created_at(),
    Column("revoked_at", DateTime(timezone=True)),
)
