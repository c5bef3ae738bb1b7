"""Admission that holds: the jobs pending are bounded when they are inserted, one decision
at a time across API processes, in all and per owner.

`reportsvc_admit(scope, bound, wanted)` is called by the insert of new jobs (in the same
transaction). It takes a transaction-level advisory lock, so admissions are decided one at
a time across API processes and each sees every job committed before it (a VOLATILE
function's queries take fresh snapshots). It grants at most `bound` pending jobs per scope
('*' for all jobs, or an owner), and records what it granted in `admission`.

Counting the pending jobs on every insert would cost each insert as many index entries as
there are jobs waiting, so the function keeps an upper bound instead: the jobs it counted
last time plus those it granted since (jobs finishing only lower the truth). Only when
that bound leaves too little room does it count again, exactly. So the bound is never
overshot, and a busy API with a short queue counts rarely.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The pending jobs of one owner (an API token), for MAX_PENDING_JOBS_PER_OWNER.
    op.create_index(
        "jobs_owner_pending_idx",
        "jobs",
        ["owner"],
        postgresql_where=sa.text("status IN ('outlining', 'writing') AND owner IS NOT NULL"),
    )
    op.create_table(
        "admission",
        # '*': every job; otherwise an owner (the hash of an API token).
        sa.Column("scope", sa.Text(), primary_key=True),
        # Pending jobs at the last exact count, and jobs admitted since.
        sa.Column("counted", sa.BigInteger(), nullable=False),
        sa.Column("admitted", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("scope", name="admission_pkey"),
    )
    op.execute(
        """CREATE FUNCTION reportsvc_admit(for_scope text, bound integer, wanted integer)
           RETURNS integer LANGUAGE plpgsql VOLATILE AS $$
           DECLARE
               counted bigint;
               admitted bigint;
               granted integer;
           BEGIN
               -- One admission decision at a time, held until the insert commits.
               PERFORM pg_advisory_xact_lock(7370451928311107913);
               SELECT a.counted, a.admitted INTO counted, admitted
               FROM admission a WHERE a.scope = for_scope;
               IF NOT FOUND OR counted + admitted + wanted > bound THEN
                   IF for_scope = '*' THEN
                       SELECT count(*) INTO counted FROM (
                           SELECT 1 FROM jobs WHERE status IN ('outlining', 'writing')
                           LIMIT bound
                       ) p;
                   ELSE
                       SELECT count(*) INTO counted FROM (
                           SELECT 1 FROM jobs
                           WHERE owner = for_scope AND owner IS NOT NULL
                             AND status IN ('outlining', 'writing')
                           LIMIT bound
                       ) p;
                   END IF;
                   admitted := 0;
               END IF;
               granted := greatest(0, least(wanted, bound - counted - admitted));
               INSERT INTO admission AS a (scope, counted, admitted)
               VALUES (for_scope, counted, admitted + granted)
               ON CONFLICT (scope) DO UPDATE
               SET counted = excluded.counted, admitted = excluded.admitted;
               RETURN granted;
           END $$"""
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION reportsvc_admit(text, integer, integer)")
    op.drop_table("admission")
    op.drop_index("jobs_owner_pending_idx", table_name="jobs")
