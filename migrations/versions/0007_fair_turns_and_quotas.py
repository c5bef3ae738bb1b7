"""Fair turns between owners, and model quotas shared by every worker.

Turns: every job gets a `turn` when it is created, the next of its owner's (an API token's,
or the anonymous owner's) but never earlier than the oldest job still under way; its steps
carry it, and the claim hands out steps in turn order. So the owners of queued work take
turns, report by report: a lone report of one owner goes ahead of another owner's backlog,
and within one owner, older reports (their sections) go before newer ones (their outlines).
`fair_turns` keeps each owner's next turn ('*': the next turn of anyone).

Quotas: `model_quotas` is each model's rate limit (configured in MODEL_RATE_LIMITS, or
learned from the provider's x-ratelimit headers), the state of its two buckets (requests,
tokens) as theoretical arrival times (GCRA), and a pause after a 429, shared by every
worker. The view `model_quota_state` shows it in words.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamp(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True))


def upgrade() -> None:
    for table in ("jobs", "steps"):
        op.add_column(table, sa.Column("turn", sa.BigInteger(), nullable=False, server_default="0"))
    # Jobs under way take turns in the order they were created, per owner.
    op.execute(
        """UPDATE jobs j SET turn = t.n
           FROM (SELECT id, row_number() OVER (PARTITION BY coalesce(owner, '')
                                               ORDER BY created_at, id) AS n
                 FROM jobs WHERE status IN ('outlining', 'writing')) t
           WHERE j.id = t.id"""
    )
    op.execute("UPDATE steps s SET turn = j.turn FROM jobs j WHERE j.id = s.job_id AND j.turn > 0")
    op.create_table(
        "fair_turns",
        sa.Column("owner", sa.Text(), primary_key=True),
        sa.Column("next_turn", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("owner", name="fair_turns_pkey"),
    )
    op.execute(
        """INSERT INTO fair_turns (owner, next_turn)
           SELECT coalesce(owner, ''), max(turn) + 1 FROM jobs GROUP BY 1
           UNION ALL SELECT '*', coalesce(max(turn), 0) + 1 FROM jobs"""
    )
    # The claim reads queued steps in turn order.
    op.drop_index("steps_claim_idx", table_name="steps")
    op.create_index(
        "steps_claim_idx",
        "steps",
        ["turn", "priority", "run_after", "id"],
        postgresql_where=sa.text("status = 'queued'"),
    )
    # The oldest turn under way: where a newcomer's turns start.
    op.create_index(
        "jobs_turn_idx",
        "jobs",
        ["turn"],
        postgresql_where=sa.text("status IN ('outlining', 'writing')"),
    )
    # Why a queued step is not running yet: 'quota' while its model's quota is spent.
    op.add_column("steps", sa.Column("waiting_for", sa.Text()))

    op.create_table(
        "model_quotas",
        sa.Column("model", sa.Text(), primary_key=True),
        # Requests and tokens per minute; NULL: no limit (known or configured).
        sa.Column("rpm", sa.Float()),
        sa.Column("tpm", sa.Float()),
        # 'configured' (MODEL_RATE_LIMITS) or 'headers' (learned from the provider).
        sa.Column("source", sa.Text(), nullable=False),
        # Theoretical arrival times: when each bucket will have caught up with what was
        # granted; a request may start once both are at most `now`.
        _timestamp("request_tat"),
        _timestamp("token_tat"),
        # After a 429 (or headers saying nothing is left): no call before this.
        _timestamp("paused_until"),
        # Until the first answer tells the limits, one call at a time learns them.
        _timestamp("learning_until"),
        sa.Column("learned", sa.Boolean(), nullable=False, server_default=sa.text("false")),
        # What the provider's last answer said.
        sa.Column("remaining_requests", sa.BigInteger()),
        sa.Column("remaining_tokens", sa.BigInteger()),
        _timestamp("requests_reset_at"),
        _timestamp("tokens_reset_at"),
        sa.Column("rate_limited", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
        sa.CheckConstraint(
            "source IN ('configured', 'headers')", name=op.f("model_quotas_source_check")
        ),
        sa.PrimaryKeyConstraint("model", name="model_quotas_pkey"),
    )
    op.execute(
        """CREATE VIEW model_quota_state AS
           SELECT model, source,
                  rpm AS requests_per_minute, tpm AS tokens_per_minute,
                  greatest(request_tat - now(), interval '0') AS requests_booked_ahead,
                  greatest(token_tat - now(), interval '0') AS tokens_booked_ahead,
                  CASE WHEN paused_until > now() THEN paused_until - now() END AS paused_for,
                  remaining_requests, remaining_tokens,
                  rate_limited AS answered_429,
                  updated_at
           FROM model_quotas"""
    )


def downgrade() -> None:
    op.execute("DROP VIEW model_quota_state")
    op.drop_table("model_quotas")
    op.drop_column("steps", "waiting_for")
    op.drop_index("jobs_turn_idx", table_name="jobs")
    op.drop_index("steps_claim_idx", table_name="steps")
    op.create_index(
        "steps_claim_idx",
        "steps",
        ["priority", "run_after", "id"],
        postgresql_where=sa.text("status = 'queued'"),
    )
    op.drop_table("fair_turns")
    for table in ("jobs", "steps"):
        op.drop_column(table, "turn")
