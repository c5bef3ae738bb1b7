"""Jobs and sections: the report state and the work queue in two tables.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Queue tables are updated constantly: leave room on each page for HOT updates (heartbeats,
# counters) and vacuum them long before the default 20 % of dead rows accumulates.
QUEUE_STORAGE = (
    "fillfactor = 80, autovacuum_vacuum_scale_factor = 0.02, "
    "autovacuum_vacuum_threshold = 500, autovacuum_analyze_scale_factor = 0.02, "
    "autovacuum_vacuum_cost_delay = 1"
)


def _timestamp(name: str, *, nullable: bool = True, now: bool = False) -> sa.Column[object]:
    return sa.Column(
        name,
        sa.DateTime(timezone=True),
        nullable=nullable,
        server_default=sa.text("now()") if now else None,
    )


def upgrade() -> None:
    # Every outline title becomes a key of the report's `sections` object, so titles must be
    # distinct. A trigger on the outline column checks it once per job; a unique index on
    # sections(job_id, title) or a CHECK constraint on jobs would instead cost every section
    # update and every progress update (about 10 % of queue throughput, measured).
    op.execute(
        """CREATE FUNCTION reportsvc_outline_distinct() RETURNS trigger
           LANGUAGE plpgsql AS $$
           BEGIN
               IF NEW.outline IS NOT NULL AND (SELECT count(DISTINCT t) <> count(*)
                                               FROM unnest(NEW.outline) AS t) THEN
                   RAISE EXCEPTION 'outline titles must be distinct'
                       USING ERRCODE = 'check_violation';
               END IF;
               RETURN NEW;
           END $$"""
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.UUID(), primary_key=True, server_default=sa.text("gen_random_uuid()")),
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False, server_default=sa.text("'queued'")),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column(
            "options",
            postgresql.JSONB(),
            nullable=False,
            server_default=sa.text("'{}'::jsonb"),
        ),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0")),
        _timestamp("run_after", nullable=False, now=True),
        sa.Column("lease_owner", sa.Text()),
        _timestamp("lease_expires_at"),
        sa.Column("last_error", sa.Text()),
        sa.Column("outline", postgresql.ARRAY(sa.Text())),
        sa.Column("sections_total", sa.Integer()),
        sa.Column("sections_done", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("error", sa.Text()),
        sa.Column("idempotency_key", sa.Text()),
        _timestamp("created_at", nullable=False, now=True),
        _timestamp("started_at"),
        _timestamp("finished_at"),
        _timestamp("deadline_at", nullable=False),
        sa.CheckConstraint(
            "status IN ('queued', 'outlining', 'writing', 'completed', 'failed', 'cancelled')",
            name=op.f("jobs_status_check"),
        ),
        sa.CheckConstraint("sections_done >= 0", name=op.f("jobs_sections_done_check")),
        sa.CheckConstraint(
            "sections_total IS NULL OR sections_done <= sections_total",
            name=op.f("jobs_sections_done_le_total_check"),
        ),
        sa.PrimaryKeyConstraint("id", name="jobs_pkey"),
    )
    op.execute(
        """CREATE TRIGGER jobs_outline_distinct BEFORE INSERT OR UPDATE OF outline ON jobs
           FOR EACH ROW EXECUTE FUNCTION reportsvc_outline_distinct()"""
    )
    op.create_index(
        "jobs_claim_idx", "jobs", ["run_after"], postgresql_where=sa.text("status = 'queued'")
    )
    op.create_index(
        "jobs_outlining_idx", "jobs", ["id"], postgresql_where=sa.text("status = 'outlining'")
    )
    op.create_index(
        "jobs_deadline_idx",
        "jobs",
        ["deadline_at"],
        postgresql_where=sa.text("status IN ('queued', 'outlining', 'writing')"),
    )
    op.create_index("jobs_created_at_idx", "jobs", ["created_at", "id"])
    op.create_index(
        "jobs_idempotency_key_idx",
        "jobs",
        ["idempotency_key"],
        unique=True,
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    )

    op.create_table(
        "sections",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), primary_key=True),
        sa.Column("job_id", sa.UUID(), nullable=False),
        sa.Column("position", sa.SmallInteger(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False, server_default=sa.text("'queued'")),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0")),
        _timestamp("run_after", nullable=False, now=True),
        sa.Column("lease_owner", sa.Text()),
        _timestamp("lease_expires_at"),
        sa.Column("last_error", sa.Text()),
        sa.Column("claimed_by", sa.Text()),
        sa.Column("content", sa.Text()),
        _timestamp("created_at", nullable=False, now=True),
        _timestamp("started_at"),
        _timestamp("finished_at"),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'done', 'failed', 'cancelled')",
            name=op.f("sections_status_check"),
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name="sections_job_id_fkey", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="sections_pkey"),
        sa.UniqueConstraint("job_id", "position", name="sections_job_id_position_key"),
    )
    op.create_index(
        "sections_claim_idx",
        "sections",
        ["run_after", "id"],
        postgresql_where=sa.text("status = 'queued'"),
    )
    op.create_index(
        "sections_running_idx", "sections", ["id"], postgresql_where=sa.text("status = 'running'")
    )
    op.execute(f"ALTER TABLE jobs SET ({QUEUE_STORAGE})")
    op.execute(f"ALTER TABLE sections SET ({QUEUE_STORAGE})")


def downgrade() -> None:
    op.drop_table("sections")
    op.drop_table("jobs")
    op.execute("DROP FUNCTION reportsvc_outline_distinct()")
