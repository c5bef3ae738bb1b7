-- Notifications sent after the transactions they announce have committed. Only
-- `reportsvc.queue.notifications` runs these.


-- name: wake_workers
-- Tells idle workers (LISTEN reportsvc_work) that new steps are waiting.
SELECT pg_notify('reportsvc_work', 'steps');


-- name: notify_progress
-- $1 comma-separated job ids whose state changed (API processes LISTEN reportsvc_events).
SELECT pg_notify('reportsvc_events', $1);
