"""Per-job owners and token usage, section metadata and the summary step, API tokens.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _tokens() -> list[sa.Column[int]]:
    return [
        sa.Column("prompt_tokens", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("completion_tokens", sa.Integer(), nullable=False, server_default=sa.text("0")),
    ]


def upgrade() -> None:
    # Jobs belong to the API token that created them (NULL when the API runs without tokens);
    # idempotency keys are scoped to their owner.
    op.add_column("jobs", sa.Column("owner", sa.Text()))
    for column in _tokens():  # tokens of the outline step, every attempt
        op.add_column("jobs", column)
    op.drop_index("jobs_idempotency_key_idx", table_name="jobs")
    op.create_index(
        "jobs_idempotency_key_idx",
        "jobs",
        [sa.text("coalesce(owner, '')"), "idempotency_key"],
        unique=True,
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    )
    # Listing one owner's jobs; partial, so an API without tokens never maintains it.
    op.create_index(
        "jobs_owner_created_at_idx",
        "jobs",
        ["owner", "created_at", "id"],
        postgresql_where=sa.text("owner IS NOT NULL"),
    )

    # Sections: tokens, why the model stopped (`length` means truncated), and the optional
    # summary step: a section row of its own kind, queued once the others are done.
    op.add_column(
        "sections",
        sa.Column("kind", sa.Text(), nullable=False, server_default=sa.text("'section'")),
    )
    for column in _tokens():
        op.add_column("sections", column)
    op.add_column("sections", sa.Column("finish_reason", sa.Text()))
    op.create_check_constraint(
        op.f("sections_kind_check"), "sections", "kind IN ('section', 'summary')"
    )

    op.create_table(
        "api_tokens",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), primary_key=True),
        sa.Column("name", sa.Text(), nullable=False),
        # sha256 of the token: the token itself is shown once, when it is created.
        sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("id", name="api_tokens_pkey"),
        sa.UniqueConstraint("name", name="api_tokens_name_key"),
        sa.UniqueConstraint("token_hash", name="api_tokens_token_hash_key"),
    )


def downgrade() -> None:
    op.drop_table("api_tokens")
    op.execute("DELETE FROM sections WHERE kind = 'summary'")
    op.drop_constraint(op.f("sections_kind_check"), "sections", type_="check")
    for column in ("finish_reason", "completion_tokens", "prompt_tokens", "kind"):
        op.drop_column("sections", column)
    op.drop_index("jobs_owner_created_at_idx", table_name="jobs")
    op.drop_index("jobs_idempotency_key_idx", table_name="jobs")
    op.create_index(
        "jobs_idempotency_key_idx",
        "jobs",
        ["idempotency_key"],
        unique=True,
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    )
    for column in ("completion_tokens", "prompt_tokens", "owner"):
        op.drop_column("jobs", column)
