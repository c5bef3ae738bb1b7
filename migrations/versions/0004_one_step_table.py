"""One step table: outline, section and summary steps are rows of `steps`.

Until now the outline step lived on the `jobs` row and sections and summaries in
`sections`, so every queue transition existed twice. Now every step is a row of `steps`
with a kind, and `jobs` keeps only the report: its phase (`outlining`, `writing`, then
`completed`, `failed` or `cancelled`), outline, counters and outcome.

Existing rows move over: a job waiting for or writing its outline gets a queued outline
step; a finished outline becomes a done outline step carrying the job's outline tokens;
section and summary rows are copied. A step that was running when the migration ran (stop
the workers before migrating: the old code cannot write to the new table) goes back to the
queue with the interrupted attempt not counted, as on a graceful shutdown.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

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


def _tokens() -> list[sa.Column[int]]:
    return [
        sa.Column("prompt_tokens", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("completion_tokens", sa.Integer(), nullable=False, server_default=sa.text("0")),
    ]


def upgrade() -> None:
    op.create_table(
        "steps",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), primary_key=True),
        sa.Column("job_id", sa.UUID(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("position", sa.SmallInteger(), nullable=False, server_default=sa.text("0")),
        sa.Column("priority", sa.SmallInteger(), nullable=False, server_default=sa.text("0")),
        sa.Column("title", sa.Text()),
        sa.Column("status", sa.Text(), nullable=False, server_default=sa.text("'queued'")),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0")),
        _timestamp("run_after", nullable=False, now=True),
        sa.Column("lease_owner", sa.Text()),
        _timestamp("lease_expires_at"),
        sa.Column("last_error", sa.Text()),
        sa.Column("claimed_by", sa.Text()),
        sa.Column("content", sa.Text()),
        *_tokens(),
        sa.Column("finish_reason", sa.Text()),
        _timestamp("created_at", nullable=False, now=True),
        _timestamp("started_at"),
        _timestamp("finished_at"),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'done', 'failed', 'cancelled')",
            name=op.f("steps_status_check"),
        ),
        sa.CheckConstraint(
            "kind IN ('outline', 'section', 'summary')", name=op.f("steps_kind_check")
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name="steps_job_id_fkey", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="steps_pkey"),
        sa.UniqueConstraint("job_id", "kind", "position", name="steps_job_id_kind_position_key"),
    )
    op.execute(f"ALTER TABLE steps SET ({QUEUE_STORAGE})")

    # Outline steps, from the jobs' own queue columns. A finished outline's step ends when
    # its sections were queued (the same statement did both).
    op.execute(
        """INSERT INTO steps (job_id, kind, position, priority, title, status, attempts, run_after,
                           last_error, claimed_by, content, prompt_tokens, completion_tokens,
                           finish_reason, created_at, started_at, finished_at)
        SELECT j.id, 'outline', 0, 1, NULL,
               CASE WHEN j.status IN ('queued', 'outlining') THEN 'queued'
                    WHEN j.outline IS NOT NULL THEN 'done'
                    WHEN j.status = 'failed' THEN 'failed'
                    ELSE 'cancelled' END,
               CASE WHEN j.status = 'outlining' THEN greatest(j.attempts - 1, 0)
                    ELSE j.attempts END,
               CASE WHEN j.status = 'outlining' THEN now() ELSE j.run_after END,
               j.last_error, NULL, NULL, j.prompt_tokens, j.completion_tokens, NULL,
               j.created_at, j.started_at,
               CASE WHEN j.status IN ('queued', 'outlining') THEN NULL
                    ELSE coalesce((SELECT min(s.created_at) FROM sections s
                                   WHERE s.job_id = j.id), j.finished_at) END
        FROM jobs j ORDER BY j.created_at, j.id"""
    )
    op.execute(
        """INSERT INTO steps (job_id, kind, position, priority, title, status, attempts, run_after,
                           last_error, claimed_by, content, prompt_tokens, completion_tokens,
                           finish_reason, created_at, started_at, finished_at)
        SELECT s.job_id, s.kind, s.position, 0, s.title,
               CASE WHEN s.status = 'running' THEN 'queued' ELSE s.status END,
               CASE WHEN s.status = 'running' THEN greatest(s.attempts - 1, 0)
                    ELSE s.attempts END,
               CASE WHEN s.status = 'running' THEN now() ELSE s.run_after END,
               s.last_error, s.claimed_by, s.content, s.prompt_tokens, s.completion_tokens,
               s.finish_reason, s.created_at, s.started_at, s.finished_at
        FROM sections s ORDER BY s.id"""
    )
    op.create_index(
        "steps_claim_idx",
        "steps",
        ["priority", "run_after", "id"],
        postgresql_where=sa.text("status = 'queued'"),
    )
    op.create_index(
        "steps_running_idx", "steps", ["id"], postgresql_where=sa.text("status = 'running'")
    )
    op.drop_table("sections")

    # Jobs keep the report; their phase no longer mirrors the outline step's queue state.
    op.drop_index("jobs_claim_idx", table_name="jobs")
    op.drop_index("jobs_outlining_idx", table_name="jobs")
    op.drop_index("jobs_deadline_idx", table_name="jobs")
    op.drop_constraint(op.f("jobs_status_check"), "jobs", type_="check")
    op.execute("UPDATE jobs SET status = 'outlining' WHERE status = 'queued'")
    op.create_check_constraint(
        op.f("jobs_status_check"),
        "jobs",
        "status IN ('outlining', 'writing', 'completed', 'failed', 'cancelled')",
    )
    op.alter_column("jobs", "status", server_default=sa.text("'outlining'"))
    for column in (
        "attempts",
        "run_after",
        "lease_owner",
        "lease_expires_at",
        "last_error",
        "prompt_tokens",
        "completion_tokens",
    ):
        op.drop_column("jobs", column)
    op.create_index(
        "jobs_deadline_idx",
        "jobs",
        ["deadline_at"],
        postgresql_where=sa.text("status IN ('outlining', 'writing')"),
    )


def downgrade() -> None:
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
        sa.Column("kind", sa.Text(), nullable=False, server_default=sa.text("'section'")),
        *_tokens(),
        sa.Column("finish_reason", sa.Text()),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'done', 'failed', 'cancelled')",
            name=op.f("sections_status_check"),
        ),
        sa.CheckConstraint("kind IN ('section', 'summary')", name=op.f("sections_kind_check")),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name="sections_job_id_fkey", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="sections_pkey"),
        sa.UniqueConstraint("job_id", "position", name="sections_job_id_position_key"),
    )
    op.execute(f"ALTER TABLE sections SET ({QUEUE_STORAGE})")
    op.execute(
        """INSERT INTO sections (job_id, position, title, status, attempts, run_after,
                                 last_error, claimed_by, content, created_at, started_at,
                                 finished_at, kind, prompt_tokens, completion_tokens,
                                 finish_reason)
        SELECT job_id, position, title,
               CASE WHEN status = 'running' THEN 'queued' ELSE status END,
               CASE WHEN status = 'running' THEN greatest(attempts - 1, 0) ELSE attempts END,
               run_after, last_error, claimed_by, content, created_at, started_at,
               finished_at, kind, prompt_tokens, completion_tokens, finish_reason
        FROM steps WHERE kind <> 'outline' ORDER BY id"""
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

    op.drop_index("jobs_deadline_idx", table_name="jobs")
    op.add_column("jobs", sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("jobs", _timestamp("run_after", nullable=False, now=True))
    op.add_column("jobs", sa.Column("lease_owner", sa.Text()))
    op.add_column("jobs", _timestamp("lease_expires_at"))
    op.add_column("jobs", sa.Column("last_error", sa.Text()))
    for column in _tokens():
        op.add_column("jobs", column)
    op.drop_constraint(op.f("jobs_status_check"), "jobs", type_="check")
    op.execute(
        """UPDATE jobs j
        SET status = CASE WHEN j.status = 'outlining' THEN 'queued' ELSE j.status END,
            attempts = CASE WHEN o.status = 'running' THEN greatest(o.attempts - 1, 0)
                            ELSE o.attempts END,
            run_after = o.run_after, last_error = o.last_error,
            prompt_tokens = o.prompt_tokens, completion_tokens = o.completion_tokens
        FROM steps o WHERE o.job_id = j.id AND o.kind = 'outline'"""
    )
    op.create_check_constraint(
        op.f("jobs_status_check"),
        "jobs",
        "status IN ('queued', 'outlining', 'writing', 'completed', 'failed', 'cancelled')",
    )
    op.alter_column("jobs", "status", server_default=sa.text("'queued'"))
    op.drop_table("steps")
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
