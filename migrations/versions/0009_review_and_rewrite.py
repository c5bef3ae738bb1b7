"""The owner's outline review, and section rewrites.

Review: a job created with `reviewOutline` stops after its outline in the status
`awaiting_review` (since `review_since`), holding no step; the owner's PUT of the outline
queues its sections. Workers fail a review not given within OUTLINE_REVIEW_TIMEOUT
(`jobs_review_idx` finds them). The webhook trigger reports the pause as an event
(`report.awaiting_review`).

Rewrite: a section step of a completed job goes back to the queue with an optional
`instruction`; its text (and the summary's, which is written again after it) is first
copied to `section_history`.

Both resume a job in a new turn (`reportsvc_next_turn`), taken as `create_jobs` takes
one, so that resuming old jobs does not jump ahead of other owners' queued work.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STATUSES = "'outlining', 'writing', 'completed', 'failed', 'cancelled'"


def _webhook_trigger(statuses: str) -> None:
    op.execute("DROP TRIGGER jobs_webhook_event ON jobs")
    op.execute(
        f"""CREATE TRIGGER jobs_webhook_event AFTER UPDATE OF status ON jobs
           FOR EACH ROW
           WHEN (NEW.webhook_url IS NOT NULL
                 AND NEW.status IN ({statuses})
                 AND OLD.status IS DISTINCT FROM NEW.status)
           EXECUTE FUNCTION reportsvc_webhook_event()"""
    )


def upgrade() -> None:
    op.drop_constraint(op.f("jobs_status_check"), "jobs", type_="check")
    op.create_check_constraint(
        op.f("jobs_status_check"), "jobs", f"status IN ({_STATUSES}, 'awaiting_review')"
    )
    op.add_column("jobs", sa.Column("review_since", sa.DateTime(timezone=True)))
    op.create_index(
        "jobs_review_idx",
        "jobs",
        ["review_since"],
        postgresql_where=sa.text("status = 'awaiting_review'"),
    )
    op.add_column("steps", sa.Column("instruction", sa.Text()))
    op.create_table(
        "section_history",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("job_id", sa.UUID(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("position", sa.SmallInteger(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("instruction", sa.Text()),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("written_at", sa.DateTime(timezone=True)),
        sa.Column(
            "replaced_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("section_history_job_id_fkey"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("section_history_pkey")),
    )
    op.create_index("section_history_job_id_idx", "section_history", ["job_id", "position"])
    _webhook_trigger("'completed', 'failed', 'cancelled', 'awaiting_review'")
    # A resumed job's next turn, as create_jobs gives a new job one: its owner's next turn,
    # but never earlier than the oldest job under way.
    op.execute(
        """CREATE FUNCTION reportsvc_next_turn(turn_owner text) RETURNS bigint
           LANGUAGE plpgsql AS $$
           DECLARE
               taken bigint;
           BEGIN
               SELECT greatest(
                          coalesce((SELECT turn FROM jobs
                                    WHERE status IN ('outlining', 'writing')
                                    ORDER BY turn LIMIT 1),
                                   (SELECT next_turn FROM fair_turns WHERE owner = '*'), 0),
                          coalesce((SELECT next_turn FROM fair_turns
                                    WHERE owner = turn_owner), 0))
               INTO taken;
               INSERT INTO fair_turns AS f (owner, next_turn)
               VALUES (turn_owner, taken + 1), ('*', taken + 1)
               ON CONFLICT (owner)
               DO UPDATE SET next_turn = greatest(f.next_turn, excluded.next_turn);
               RETURN taken;
           END
           $$"""
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION reportsvc_next_turn(text)")
    _webhook_trigger("'completed', 'failed', 'cancelled'")
    op.drop_index("section_history_job_id_idx", table_name="section_history")
    op.drop_table("section_history")
    op.drop_column("steps", "instruction")
    # A job waiting for its review has no place in the older schema: it fails.
    op.execute(
        """UPDATE jobs SET status = 'failed', finished_at = now(),
                          error = 'the outline review was interrupted by a downgrade'
           WHERE status = 'awaiting_review'"""
    )
    op.drop_index("jobs_review_idx", table_name="jobs")
    op.drop_column("jobs", "review_since")
    op.drop_constraint(op.f("jobs_status_check"), "jobs", type_="check")
    op.create_check_constraint(op.f("jobs_status_check"), "jobs", f"status IN ({_STATUSES})")
