"""Find finished jobs by age, for `reportsvc prune`.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "jobs_finished_idx",
        "jobs",
        ["finished_at"],
        postgresql_where=sa.text("status IN ('completed', 'failed', 'cancelled')"),
    )


def downgrade() -> None:
    op.drop_index("jobs_finished_idx", table_name="jobs")
