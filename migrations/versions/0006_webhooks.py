"""Completion webhooks: a job's webhook URL, and its deliveries as steps of kind `webhook`.

A job created with a webhook URL gets one `webhook` step each time it reaches `completed`,
`failed` or `cancelled`. The step is inserted by a trigger on `jobs`, in the transaction
that ends the job, so no path that ends a job (completion, a failed step, the rescuer, the
deadline, cancellation by the API or the CLI, `reportsvc retry`) can forget it, and a crash
between the two writes cannot lose it. The trigger's WHEN clause is checked for every
update of a job row without running the function; only an ending with a URL runs it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("webhook_url", sa.Text()))
    op.add_column("steps", sa.Column("last_status_code", sa.SmallInteger()))
    op.drop_constraint(op.f("steps_kind_check"), "steps", type_="check")
    op.create_check_constraint(
        op.f("steps_kind_check"), "steps", "kind IN ('outline', 'section', 'summary', 'webhook')"
    )
    # The event's number within its job is the step's position (a job retried with
    # `reportsvc retry` can end more than once). The job row is locked by the statement
    # that ends it, so two endings of one job cannot pick the same number. The NOTIFY wakes
    # idle workers for the new step, with the commit.
    op.execute(
        """CREATE FUNCTION reportsvc_webhook_event() RETURNS trigger
           LANGUAGE plpgsql AS $$
           BEGIN
               INSERT INTO steps (job_id, kind, position, title)
               SELECT NEW.id, 'webhook', coalesce(max(s.position) + 1, 0),
                      'report.' || NEW.status
               FROM steps s
               WHERE s.job_id = NEW.id AND s.kind = 'webhook';
               PERFORM pg_notify('reportsvc_work', 'steps');
               RETURN NULL;
           END
           $$"""
    )
    op.execute(
        """CREATE TRIGGER jobs_webhook_event AFTER UPDATE OF status ON jobs
           FOR EACH ROW
           WHEN (NEW.webhook_url IS NOT NULL
                 AND NEW.status IN ('completed', 'failed', 'cancelled')
                 AND OLD.status IS DISTINCT FROM NEW.status)
           EXECUTE FUNCTION reportsvc_webhook_event()"""
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER jobs_webhook_event ON jobs")
    op.execute("DROP FUNCTION reportsvc_webhook_event()")
    op.execute("DELETE FROM steps WHERE kind = 'webhook'")
    op.drop_constraint(op.f("steps_kind_check"), "steps", type_="check")
    op.create_check_constraint(
        op.f("steps_kind_check"), "steps", "kind IN ('outline', 'section', 'summary')"
    )
    op.drop_column("steps", "last_status_code")
    op.drop_column("jobs", "webhook_url")
