-- What operators and monitoring ask: counts, queue state, pruning, retrying a job. Only
-- `reportsvc.queue.operations` runs them. `{name}` placeholders are sets of statuses.


-- name: job_counts
-- Jobs under way by status, for metrics, from the partial index of unfinished jobs
-- (jobs_deadline_idx): the cost follows the jobs in progress, never the table's size.
-- Finished jobs are counted as they finish, by the processes that finish them. Jobs
-- awaiting their outline's review come from their own partial index (jobs_review_idx).
SELECT status, count(*) FROM jobs WHERE status IN ({active_jobs}) GROUP BY status
UNION ALL
SELECT 'awaiting_review', count(*) FROM jobs WHERE status = 'awaiting_review';


-- name: queue_stats
-- The queue as an operator sees it, per kind of step, from the two small partial indexes
-- (queued rows, running rows).
SELECT kind,
       count(*) FILTER (WHERE status = 'queued' AND run_after <= now()) AS ready,
       extract(epoch FROM now() - min(run_after)
                              FILTER (WHERE status = 'queued' AND run_after <= now()))
           AS oldest,
       count(*) FILTER (WHERE status = 'queued' AND run_after > now()) AS retrying,
       count(*) FILTER (WHERE status = 'running') AS running
FROM steps
WHERE status = 'queued' OR status = 'running'
GROUP BY kind;


-- name: schema_revision
SELECT version_num FROM alembic_version;


-- name: prune_jobs
-- $1 age (s), $2 batch size. Deletes up to $2 finished jobs older than $1, oldest first;
-- their steps go with them (ON DELETE CASCADE). Run in batches to keep each short. A job
-- whose webhook delivery is still waiting or under way is kept until it ends (a retry
-- schedule can outlast PRUNE_AFTER).
WITH doomed AS (
    SELECT id FROM jobs j
    WHERE status IN ({finished_jobs})
      AND finished_at < now() - make_interval(secs => $1)
      AND NOT EXISTS (SELECT 1 FROM steps s
                      WHERE s.job_id = j.id AND s.kind = 'webhook'
                        AND s.status IN ('queued', 'running'))
    ORDER BY finished_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
DELETE FROM jobs j USING doomed d WHERE j.id = d.id;


-- name: requeue_unfinished_steps
-- $1 job id. Step 1 of `reportsvc retry`: a failed or cancelled job's failed and cancelled
-- steps go back to the queue with fresh attempts (steps locked first). So does an outline
-- step that finished after its job had already ended (its outline was never taken).
-- Webhook deliveries are not the job's work: `reportsvc webhooks retry` re-sends them.
UPDATE steps s
SET status = 'queued', attempts = 0, run_after = now(), last_error = NULL,
    last_status_code = NULL, finished_at = NULL, lease_owner = NULL, lease_expires_at = NULL
FROM jobs j
WHERE s.job_id = $1 AND j.id = s.job_id AND j.status IN ({retryable_jobs})
  AND s.kind <> 'webhook'
  AND (s.status IN ('failed', 'cancelled')
       OR (s.kind = 'outline' AND s.status = 'done' AND j.outline IS NULL))
RETURNING s.id, s.kind;


-- name: reopen_job
-- $1 job id, $2 job timeout (s). Step 2 of `reportsvc retry`: a failed or cancelled job
-- runs again, with a new deadline. Without an outline it starts from the outline step; with
-- one it goes on writing its sections (or is complete, if they are all done); with an
-- outline but no section steps (its review was not given in time) it waits for the review
-- again, from now.
UPDATE jobs
SET status = CASE WHEN outline IS NULL THEN 'outlining'
                  WHEN NOT EXISTS (SELECT 1 FROM steps s
                                   WHERE s.job_id = jobs.id AND s.kind = 'section')
                       THEN 'awaiting_review'
                  WHEN sections_done = sections_total THEN 'completed'
                  ELSE 'writing' END,
    review_since = CASE WHEN outline IS NOT NULL
                             AND NOT EXISTS (SELECT 1 FROM steps s
                                             WHERE s.job_id = jobs.id AND s.kind = 'section')
                        THEN now() END,
    error = NULL,
    finished_at = CASE WHEN outline IS NOT NULL AND sections_done = sections_total
                       THEN now() END,
    deadline_at = now() + make_interval(secs => $2)
WHERE id = $1 AND status IN ({retryable_jobs})
RETURNING status;


-- name: admit_reopened_job
-- $1 job id. Step 3 of `reportsvc retry`, when the job runs again: it counts towards the
-- admission bounds (the upper bound reportsvc_admit keeps), in all and for its owner.
UPDATE admission SET admitted = admitted + 1
WHERE scope = '*' OR scope = (SELECT owner FROM jobs WHERE id = $1);


-- name: job_status
-- $1 job id.
SELECT status FROM jobs WHERE id = $1;


-- name: retry_webhooks
-- $1 job id. `reportsvc webhooks retry`: the job's deliveries that gave up go back to the
-- queue with fresh attempts and a new retry window (started_at is the first attempt's
-- time). Each keeps its event: the same webhook-id, and the body its first attempt stored.
WITH retried AS (
    UPDATE steps
    SET status = 'queued', attempts = 0, run_after = now(), started_at = NULL,
        finished_at = NULL, last_error = NULL, last_status_code = NULL,
        lease_owner = NULL, lease_expires_at = NULL
    WHERE job_id = $1 AND kind = 'webhook' AND status = 'failed'
    RETURNING id
)
SELECT count(*) AS retried,
       CASE WHEN count(*) > 0 THEN pg_notify('reportsvc_work', 'steps') END AS notified
FROM retried;


-- name: webhook_deliveries
-- $1 job id. The job's webhook URL and its deliveries, newest first (no rows: no job).
SELECT j.webhook_url, s.title, s.status, s.attempts, s.last_status_code, s.last_error
FROM jobs j LEFT JOIN steps s ON s.job_id = j.id AND s.kind = 'webhook'
WHERE j.id = $1
ORDER BY s.position DESC;


-- name: quota_state
-- Every model's quota (migration 0007), for metrics: its limits, the provider's last word
-- on what is left, how many 429s it answered, and how long the model is still paused.
SELECT model, rpm, tpm, remaining_requests, remaining_tokens, rate_limited,
       greatest(extract(epoch FROM paused_until - now()), 0)::float8 AS paused_for
FROM model_quotas
ORDER BY model;
