"""The tables, as SQLAlchemy Core metadata: the schema's single description.

Migrations (`migrations/versions`) create exactly this; a test runs Alembic's comparison
against a migrated database so the two cannot drift. Runtime SQL lives in
`reportsvc.queue.queries.sql`.

Status values (also enforced by CHECK constraints, so `psql` readers can trust them):

jobs.status      queued -> outlining -> writing -> completed
                 any non-terminal state -> failed | cancelled
sections.status  queued -> running -> done
                 running -> queued (retry, lease expiry, release on shutdown)
                 queued | running -> failed | cancelled
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

JOB_STATUSES: Final = ("queued", "outlining", "writing", "completed", "failed", "cancelled")
JOB_ACTIVE_STATUSES: Final = ("queued", "outlining", "writing")
SECTION_STATUSES: Final = ("queued", "running", "done", "failed", "cancelled")

metadata = MetaData(
    naming_convention={
        "ix": "%(table_name)s_%(column_0_name)s_idx",
        "uq": "%(table_name)s_%(column_0_N_name)s_key",
        "ck": "%(table_name)s_%(constraint_name)s_check",
        "fk": "%(table_name)s_%(column_0_name)s_fkey",
        "pk": "%(table_name)s_pkey",
    }
)


def _status_check(statuses: tuple[str, ...]) -> CheckConstraint:
    allowed = ", ".join(f"'{status}'" for status in statuses)
    return CheckConstraint(f"status IN ({allowed})", name="status")


def _created_at() -> Column[object]:
    return Column(
        "created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")
    )


jobs = Table(
    "jobs",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()")),
    Column("topic", Text, nullable=False),
    Column("status", Text, nullable=False, server_default=text("'queued'")),
    Column("model", Text, nullable=False),
    Column("options", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    # The outline step's queue state: the job row itself is the claimable outline task.
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("run_after", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("lease_owner", Text),
    Column("lease_expires_at", DateTime(timezone=True)),
    Column("last_error", Text),
    # The outcome.
    # Titles are keys of the report's `sections` object, so they are distinct: enforced by
    # the trigger jobs_outline_distinct (migration 0001).
    Column("outline", ARRAY(Text)),
    Column("sections_total", Integer),
    Column("sections_done", Integer, nullable=False, server_default=text("0")),
    Column("error", Text),
    Column("idempotency_key", Text),
    # The API token that created the job (NULL when the API runs without tokens).
    Column("owner", Text),
    # Tokens the outline step used, over all its attempts.
    Column("prompt_tokens", Integer, nullable=False, server_default=text("0")),
    Column("completion_tokens", Integer, nullable=False, server_default=text("0")),
    _created_at(),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("deadline_at", DateTime(timezone=True), nullable=False),
    _status_check(JOB_STATUSES),
    CheckConstraint("sections_done >= 0", name="sections_done"),
    CheckConstraint(
        "sections_total IS NULL OR sections_done <= sections_total", name="sections_done_le_total"
    ),
    # Only the outline step is claimable from this table: fresh or retrying jobs.
    Index("jobs_claim_idx", "run_after", postgresql_where=text("status = 'queued'")),
    # The rescuer looks for expired outline leases among the (few) outlining jobs.
    Index("jobs_outlining_idx", "id", postgresql_where=text("status = 'outlining'")),
    # The rescuer also fails unfinished jobs past their deadline.
    Index(
        "jobs_deadline_idx",
        "deadline_at",
        postgresql_where=text("status IN ('queued', 'outlining', 'writing')"),
    ),
    # Listing, newest first, with a keyset cursor on (created_at, id).
    Index("jobs_created_at_idx", "created_at", "id"),
    # `reportsvc prune` deletes finished jobs oldest first (migration 0002).
    Index(
        "jobs_finished_idx",
        "finished_at",
        postgresql_where=text("status IN ('completed', 'failed', 'cancelled')"),
    ),
    # An idempotency key is unique per owner.
    Index(
        "jobs_idempotency_key_idx",
        text("coalesce(owner, '')"),
        "idempotency_key",
        unique=True,
        postgresql_where=text("idempotency_key IS NOT NULL"),
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

sections = Table(
    "sections",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("job_id", UUID(as_uuid=True), ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    Column("position", SmallInteger, nullable=False),
    # 'section', or 'summary': the optional final pass, queued once the others are done.
    Column("kind", Text, nullable=False, server_default=text("'section'")),
    Column("title", Text, nullable=False),
    Column("status", Text, nullable=False, server_default=text("'queued'")),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("run_after", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("lease_owner", Text),
    Column("lease_expires_at", DateTime(timezone=True)),
    Column("last_error", Text),
    # The worker that took the latest attempt; kept after the lease ends, for operators.
    Column("claimed_by", Text),
    Column("content", Text),
    # Tokens over all attempts, and why the model stopped ('length': truncated).
    Column("prompt_tokens", Integer, nullable=False, server_default=text("0")),
    Column("completion_tokens", Integer, nullable=False, server_default=text("0")),
    Column("finish_reason", Text),
    _created_at(),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    _status_check(SECTION_STATUSES),
    CheckConstraint("kind IN ('section', 'summary')", name="kind"),
    UniqueConstraint("job_id", "position"),
    # The hot claim path: only queued rows are in this index, so it stays small no matter
    # how many finished sections the table holds.
    Index("sections_claim_idx", "run_after", "id", postgresql_where=text("status = 'queued'")),
    # Running rows, for the rescuer. Keyed on id (never updated) rather than on
    # lease_expires_at, so a heartbeat that only moves the lease can be a HOT update.
    Index("sections_running_idx", "id", postgresql_where=text("status = 'running'")),
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
