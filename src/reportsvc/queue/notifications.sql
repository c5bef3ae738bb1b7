-- Notifications sent after the transactions they announce have committed. Only
-- `reportsvc.queue.notifications` runs these.


-- name: wake_workers
-- Tells idle workers (LISTEN reportsvc_work) that new steps are waiting.
SELECT pg_notify('reportsvc_work', 'steps');


-- name: notify_progress
-- $1 comma-separated job ids whose state changed (API processes LISTEN reportsvc_events).
SELECT pg_notify('reportsvc_events', $1);


-- name: job_versions
-- $1 ids of the jobs an API process's event streams watch, where it cannot LISTEN.
-- Each job's row version: every step that finishes and every end of a job writes the job's
-- row, and each write gives it a new xmin (the transaction that wrote it), so a changed
-- xmin means "look now", the hint a notification would have given. A system column: this
-- holds whatever the table's other columns become. Deleted jobs are simply absent.
SELECT id, xmin::text FROM jobs WHERE id = ANY($1::uuid[]);
