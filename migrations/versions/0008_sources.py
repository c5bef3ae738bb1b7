"""Sources: uploaded documents, each job's passages, and citations counted per section.

`sources` holds documents uploaded with POST /sources. `job_passages` holds each job's
sources as numbered passages, copied when the job is created (from the request's documents
and the uploaded ones it names), with their `tsvector` in the job's language and a GIN
index, so that a section's search is an index scan however many passages are stored. Steps
get `passages_given` and `citations_removed`.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sources",
        sa.Column(
            "id",
            postgresql.UUID(as_uuid=True),
            server_default=sa.text("gen_random_uuid()"),
            nullable=False,
        ),
        sa.Column("owner", sa.Text()),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name="sources_pkey"),
    )
    op.create_index(
        "sources_owner_created_at_idx",
        "sources",
        [sa.text("coalesce(owner, '')"), "created_at", "id"],
    )
    op.create_table(
        "job_passages",
        sa.Column("job_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("document", sa.SmallInteger(), nullable=False),
        sa.Column("source_id", postgresql.UUID(as_uuid=True)),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("tsv", postgresql.TSVECTOR(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name="job_passages_job_id_fkey", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("job_id", "number", name="job_passages_pkey"),
    )
    op.create_index("job_passages_tsv_idx", "job_passages", ["tsv"], postgresql_using="gin")
    op.add_column("steps", sa.Column("passages_given", sa.SmallInteger()))
    op.add_column(
        "steps",
        sa.Column("citations_removed", sa.Integer(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_column("steps", "citations_removed")
    op.drop_column("steps", "passages_given")
    op.drop_table("job_passages")
    op.drop_table("sources")
