-- Every statement reportsvc runs against its tables, by name. Only `reportsvc.queue.store`
-- executes them. Parameters are positional ($1, $2, ...); each block says what they are.
--
-- Locking order, to keep statements from deadlocking one another: a statement that
-- touches both tables locks section rows before job rows. Claims never wait (SKIP LOCKED).


-- name: create_jobs
-- $1 ids, $2 topics, $3 models, $4 options (jsonb), $5 idempotency keys (or NULL),
-- $6 job timeouts (s), $7 owners (the API token's id, or NULL). One row per POST; the API
-- inserts the requests that arrive while the previous insert is under way together (group
-- commit: one round trip and one WAL flush for the lot, and each request is answered only
-- once its row is committed). A row whose idempotency key its owner already used (also
-- earlier in the same batch) is not inserted, and its id is missing from the result (see
-- find_job_by_key). Idle workers are woken by `wake_workers` after this commits, not from
-- inside it: a NOTIFY in every insert serialises all commits on PostgreSQL's notification
-- queue lock.
INSERT INTO jobs (id, topic, model, options, idempotency_key, deadline_at, owner)
SELECT r.id, r.topic, r.model, r.options, r.idempotency_key,
       now() + make_interval(secs => r.timeout), r.owner
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::text[], $6::float8[],
            $7::text[])
     WITH ORDINALITY AS r(id, topic, model, options, idempotency_key, timeout, owner, ord)
ORDER BY r.ord
ON CONFLICT ((coalesce(owner, '')), idempotency_key) WHERE idempotency_key IS NOT NULL
DO NOTHING
RETURNING id;


-- name: wake_workers
-- Tells idle workers (LISTEN reportsvc_work) that new jobs are waiting.
SELECT pg_notify('reportsvc_work', 'job');


-- name: notify_progress
-- $1 comma-separated job ids whose state changed (API processes LISTEN reportsvc_events).
SELECT pg_notify('reportsvc_events', $1);


-- name: find_job_by_key
-- $1 idempotency key, $2 owner (or NULL)
SELECT id, topic, model, options FROM jobs
WHERE idempotency_key = $1 AND coalesce(owner, '') = coalesce($2, '');


-- name: get_job
-- $1 job id, $2 owner (NULL: any). Finished sections come along, in outline order, for the
-- report (or, while the job runs, for partial results), with the summary when there is
-- one, the titles of sections cut short by max_tokens, and the tokens of every step.
SELECT j.id, j.topic, j.status, j.model, j.options, j.outline, j.sections_total,
       j.sections_done, j.error, j.created_at, j.started_at, j.finished_at,
       done.titles AS done_titles, done.contents AS done_contents, done.summary,
       done.truncated,
       j.prompt_tokens + coalesce(done.prompt_tokens, 0) AS prompt_tokens,
       j.completion_tokens + coalesce(done.completion_tokens, 0) AS completion_tokens
FROM jobs j
LEFT JOIN LATERAL (
    SELECT array_agg(s.title ORDER BY s.position)
               FILTER (WHERE s.status = 'done' AND s.kind = 'section') AS titles,
           array_agg(s.content ORDER BY s.position)
               FILTER (WHERE s.status = 'done' AND s.kind = 'section') AS contents,
           max(s.content) FILTER (WHERE s.status = 'done' AND s.kind = 'summary') AS summary,
           array_agg(s.title ORDER BY s.position)
               FILTER (WHERE s.finish_reason = 'length' AND s.status = 'done') AS truncated,
           sum(s.prompt_tokens) AS prompt_tokens,
           sum(s.completion_tokens) AS completion_tokens
    FROM sections s
    WHERE s.job_id = j.id
) done ON j.sections_total IS NOT NULL
WHERE j.id = $1 AND ($2::text IS NULL OR j.owner = $2);


-- name: list_jobs
-- $1 statuses (NULL: all), $2 page size, $3 and $4: the (created_at, id) of the last job of
-- the previous page (NULL: start from the newest). Keyset pagination on jobs_created_at_idx.
SELECT id, topic, status, sections_total, sections_done, created_at, finished_at
FROM jobs
WHERE ($1::text[] IS NULL OR status = ANY($1::text[]))
  AND ($3::timestamptz IS NULL OR (created_at, id) < ($3::timestamptz, $4::uuid))
ORDER BY created_at DESC, id DESC
LIMIT $2;


-- name: list_owner_jobs
-- The same for the jobs of one owner ($5), on jobs_owner_created_at_idx. That index holds
-- only jobs with an owner, so an API without tokens does not maintain it on every update.
SELECT id, topic, status, sections_total, sections_done, created_at, finished_at
FROM jobs
WHERE owner = $5
  AND ($1::text[] IS NULL OR status = ANY($1::text[]))
  AND ($3::timestamptz IS NULL OR (created_at, id) < ($3::timestamptz, $4::uuid))
ORDER BY owner, created_at DESC, id DESC
LIMIT $2;


-- name: job_counts
-- Jobs by status, for metrics. A full count: `reportsvc prune` keeps the table bounded.
SELECT status, count(*) FROM jobs GROUP BY status;


-- name: queue_stats
-- The queue as an operator sees it, each figure read from a small partial index.
SELECT
    (SELECT count(*) FROM sections WHERE status = 'queued' AND run_after <= now())
        AS sections_ready,
    (SELECT extract(epoch FROM now() - min(run_after)) FROM sections
     WHERE status = 'queued' AND run_after <= now()) AS sections_oldest,
    (SELECT count(*) FROM sections WHERE status = 'queued' AND run_after > now())
        AS sections_retrying,
    (SELECT count(*) FROM sections WHERE status = 'running') AS sections_running,
    (SELECT count(*) FROM jobs WHERE status = 'queued' AND run_after <= now())
        AS outlines_ready,
    (SELECT extract(epoch FROM now() - min(run_after)) FROM jobs
     WHERE status = 'queued' AND run_after <= now()) AS outlines_oldest,
    (SELECT count(*) FROM jobs WHERE status = 'queued' AND run_after > now())
        AS outlines_retrying,
    (SELECT count(*) FROM jobs WHERE status = 'outlining') AS outlines_running;


-- name: schema_revision
SELECT version_num FROM alembic_version;


-- name: claim_sections
-- $1 worker id, $2 how many sections at most, $3 lease (s)
--
-- Hands out up to $2 ready sections in one round trip.
WITH
-- 1. Sections ready to run: queued, and not waiting out a retry backoff, oldest first.
--    The partial index sections_claim_idx holds only queued rows, so this stays a short
--    index scan however many finished sections the table holds. SKIP LOCKED lets
--    concurrent workers take disjoint rows without waiting for one another.
ready AS (
    SELECT id
    FROM sections
    WHERE status = 'queued' AND run_after <= now()
    ORDER BY run_after, id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
-- 2. Take them: lease them to this worker and count the attempt. The attempt number is
--    the fencing token every later write by this worker must present. A queued section
--    of a job that failed or was cancelled meanwhile is retired instead of being run.
--    The job row is read, not locked, and comes back with everything a worker needs to
--    write the section (topic, whole outline, options), so no second query is needed.
UPDATE sections s
SET status = CASE WHEN j.status = 'writing' THEN 'running' ELSE 'cancelled' END,
    lease_owner = CASE WHEN j.status = 'writing' THEN $1 END,
    claimed_by = CASE WHEN j.status = 'writing' THEN $1 ELSE s.claimed_by END,
    lease_expires_at = CASE WHEN j.status = 'writing'
                            THEN now() + make_interval(secs => $3) END,
    attempts = s.attempts + CASE WHEN j.status = 'writing' THEN 1 ELSE 0 END,
    started_at = coalesce(s.started_at, now()),
    finished_at = CASE WHEN j.status = 'writing' THEN NULL ELSE now() END
FROM ready r, jobs j
WHERE s.id = r.id AND j.id = s.job_id
RETURNING s.id AS section_id, s.job_id, s.position, s.title, s.attempts,
          j.status = 'writing' AS live, j.topic, j.model, j.options, j.outline, s.kind;


-- name: written_sections
-- $1 job id. The finished sections, for the summary step.
SELECT title, content FROM sections
WHERE job_id = $1 AND kind = 'section' AND status = 'done'
ORDER BY position;


-- name: claim_outlines
-- $1 worker id, $2 how many outlines at most, $3 lease (s)
-- The outline step of new (or retrying) jobs: the job row itself is the task. The worker
-- asks for outlines only with the room left after claiming sections: finishing reports
-- already under way keeps each report's wall time short.
WITH ready AS (
    SELECT id
    FROM jobs
    WHERE status = 'queued' AND run_after <= now()
    ORDER BY run_after
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE jobs j
SET status = 'outlining',
    lease_owner = $1,
    lease_expires_at = now() + make_interval(secs => $3),
    attempts = j.attempts + 1,
    started_at = coalesce(j.started_at, now())
FROM ready r
WHERE j.id = r.id
RETURNING j.id AS job_id, j.topic, j.model, j.options, j.attempts;


-- name: complete_sections
-- $1 worker id, $2 section ids, $3 attempts, $4 contents, $5 finish reasons,
-- $6 prompt tokens, $7 completion tokens
--
-- Stores finished sections and, in the same statement (one transaction), counts them on
-- their jobs; the job whose count reaches its total becomes completed. The job row lock
-- serialises concurrent completions of one job: the second waits, then re-reads the
-- counter the first one wrote (READ COMMITTED re-evaluation), so two workers finishing
-- the last two sections at once cannot both miss, or both make, the completion.
WITH done AS (
    -- Fencing: only the holder of the current attempt may write. A worker whose lease was
    -- taken over (it stalled, another worker re-ran the section) writes nothing.
    UPDATE sections s
    SET status = 'done',
        content = i.content,
        finish_reason = i.finish_reason,
        prompt_tokens = s.prompt_tokens + i.prompt_tokens,
        completion_tokens = s.completion_tokens + i.completion_tokens,
        finished_at = now(),
        lease_owner = NULL,
        lease_expires_at = NULL,
        last_error = NULL
    FROM unnest($2::bigint[], $3::int[], $4::text[], $5::text[], $6::int[], $7::int[])
         AS i(id, attempt, content, finish_reason, prompt_tokens, completion_tokens)
    WHERE s.id = i.id
      AND s.attempts = i.attempt
      AND s.lease_owner = $1
      AND s.status = 'running'
    RETURNING s.job_id
),
-- The counter counts every stored section, also for a job that failed or was cancelled
-- while this one was running: the row is done, and `reportsvc retry` will not redo it.
-- Only a job still being written can become completed. Jobs are visited in id order, the
-- order every worker uses; should two batches still lock shared jobs in opposite orders,
-- PostgreSQL reports a deadlock, one batch is rolled back and its worker writes it again
-- (every write is fenced, so repeating it is harmless). An explicit `SELECT ... ORDER BY
-- id FOR UPDATE` first would rule that out, at the price of a second write to each job row
-- per batch (row locks are written to the heap): about 10 % of queue throughput.
counted AS (
    UPDATE jobs j
    SET sections_done = j.sections_done + p.n,
        status = CASE WHEN j.status = 'writing' AND j.sections_done + p.n = j.sections_total
                      THEN 'completed' ELSE j.status END,
        finished_at = CASE WHEN j.status = 'writing'
                                AND j.sections_done + p.n = j.sections_total
                           THEN now() ELSE j.finished_at END
    FROM (SELECT job_id, count(*)::int AS n FROM done GROUP BY job_id ORDER BY job_id) p
    WHERE j.id = p.job_id
    RETURNING j.id, j.status, p.n, j.sections_done, j.sections_total,
              coalesce((j.options ->> 'summary')::boolean, false) AS summary
),
-- A job with a summary pass counts it as one more step: when every ordinary section is
-- done, its summary step is queued (a new row, so no lock is taken after the job's).
summaries AS (
    INSERT INTO sections (job_id, position, kind, title)
    -- The summary's position is the outline's length: sections_total counts it as well.
    SELECT c.id, c.sections_total - 1, 'summary', 'Summary'
    FROM counted c
    WHERE c.summary AND c.status = 'writing' AND c.sections_done = c.sections_total - 1
    ON CONFLICT (job_id, position) DO NOTHING
    RETURNING job_id
)
SELECT c.id, c.status, c.n, (SELECT count(*) FROM summaries) AS summaries_queued
FROM counted c;


-- name: complete_outlines
-- $1 worker id, $2 outlines: a JSON array of {"job_id", "attempt", "titles",
-- "prompt_tokens", "completion_tokens"}
-- Stores each outline and queues one section per title, atomically, for the outlines this
-- worker still holds. The notification wakes workers to claim the new sections.
WITH input AS (
    SELECT * FROM jsonb_to_recordset($2::jsonb)
        AS i(job_id uuid, attempt int, titles text[], prompt_tokens int, completion_tokens int)
),
written AS (
    UPDATE jobs j
    SET status = 'writing',
        outline = i.titles,
        -- The summary pass, when asked for, is one more step after the sections.
        sections_total = cardinality(i.titles)
            + CASE WHEN coalesce((j.options ->> 'summary')::boolean, false) THEN 1 ELSE 0 END,
        prompt_tokens = j.prompt_tokens + i.prompt_tokens,
        completion_tokens = j.completion_tokens + i.completion_tokens,
        lease_owner = NULL,
        lease_expires_at = NULL,
        last_error = NULL
    FROM input i
    WHERE j.id = i.job_id AND j.attempts = i.attempt AND j.lease_owner = $1
      AND j.status = 'outlining'
    RETURNING j.id, j.outline
),
queued AS (
    INSERT INTO sections (job_id, position, title)
    SELECT w.id, t.ord - 1, t.title
    FROM written w, unnest(w.outline) WITH ORDINALITY AS t(title, ord)
    RETURNING job_id
)
SELECT id, pg_notify('reportsvc_work', 'section') AS notified FROM written;


-- name: retry_sections
-- $1 worker id, $2 section ids, $3 attempts, $4 errors, $5 seconds until the next attempt,
-- $6 prompt tokens, $7 completion tokens (of a call that answered with something unusable)
-- Puts sections back in the queue after a transient failure, not before run_after.
UPDATE sections s
SET status = 'queued',
    run_after = now() + make_interval(secs => i.delay),
    last_error = i.error,
    prompt_tokens = s.prompt_tokens + i.prompt_tokens,
    completion_tokens = s.completion_tokens + i.completion_tokens,
    lease_owner = NULL,
    lease_expires_at = NULL
FROM unnest($2::bigint[], $3::int[], $4::text[], $5::float8[], $6::int[], $7::int[])
     AS i(id, attempt, error, delay, prompt_tokens, completion_tokens)
WHERE s.id = i.id AND s.attempts = i.attempt AND s.lease_owner = $1 AND s.status = 'running'
RETURNING s.id;


-- name: fail_sections
-- $1 worker id, $2 section ids, $3 attempts, $4 errors, $5 prompt tokens, $6 completion tokens
-- Marks sections failed for good; the caller then fails their jobs (fail_jobs).
UPDATE sections s
SET status = 'failed',
    last_error = i.error,
    prompt_tokens = s.prompt_tokens + i.prompt_tokens,
    completion_tokens = s.completion_tokens + i.completion_tokens,
    finished_at = now(),
    lease_owner = NULL,
    lease_expires_at = NULL
FROM unnest($2::bigint[], $3::int[], $4::text[], $5::int[], $6::int[])
     AS i(id, attempt, error, prompt_tokens, completion_tokens), jobs j
WHERE s.id = i.id AND s.attempts = i.attempt AND s.lease_owner = $1 AND s.status = 'running'
  AND j.id = s.job_id
RETURNING s.id, s.job_id, s.position, s.title, s.attempts, s.kind,
          cardinality(j.outline) AS outline_length;


-- name: release_sections
-- $1 worker id, $2 section ids, $3 attempts, $4 new status ('queued' or 'cancelled')
-- Gives sections back without a result: 'queued' on shutdown (claimable at once, and the
-- interrupted attempt is not counted), 'cancelled' when the job stopped meanwhile.
WITH released AS (
    UPDATE sections s
    SET status = $4,
        attempts = s.attempts - CASE WHEN $4 = 'queued' THEN 1 ELSE 0 END,
        run_after = now(),
        lease_owner = NULL,
        lease_expires_at = NULL,
        finished_at = CASE WHEN $4 = 'cancelled' THEN now() END
    FROM unnest($2::bigint[], $3::int[]) AS i(id, attempt)
    WHERE s.id = i.id AND s.attempts = i.attempt AND s.lease_owner = $1 AND s.status = 'running'
    RETURNING s.id
)
SELECT count(*) AS released, pg_notify('reportsvc_work', 'section') AS notified FROM released;


-- name: retry_outline
-- $1 worker id, $2 job id, $3 attempt, $4 error, $5 seconds until the next attempt,
-- $6 prompt tokens, $7 completion tokens
UPDATE jobs
SET status = 'queued',
    run_after = now() + make_interval(secs => $5),
    last_error = $4,
    prompt_tokens = prompt_tokens + $6,
    completion_tokens = completion_tokens + $7,
    lease_owner = NULL,
    lease_expires_at = NULL
WHERE id = $2 AND attempts = $3 AND lease_owner = $1 AND status = 'outlining'
RETURNING id;


-- name: fail_outline
-- $1 worker id, $2 job id, $3 attempt, $4 error (what a user reads), $5 prompt tokens,
-- $6 completion tokens. The outline step failed for good, so the job fails; it has no
-- sections yet.
UPDATE jobs
SET status = 'failed', error = $4, last_error = $4, finished_at = now(),
    prompt_tokens = prompt_tokens + $5,
    completion_tokens = completion_tokens + $6,
    lease_owner = NULL, lease_expires_at = NULL
WHERE id = $2 AND attempts = $3 AND lease_owner = $1 AND status = 'outlining'
RETURNING id;


-- name: release_outline
-- $1 worker id, $2 job id, $3 attempt. Shutdown: back to the queue, attempt not counted.
WITH released AS (
    UPDATE jobs
    SET status = 'queued', attempts = attempts - 1, run_after = now(),
        lease_owner = NULL, lease_expires_at = NULL
    WHERE id = $2 AND attempts = $3 AND lease_owner = $1 AND status = 'outlining'
    RETURNING id
)
SELECT id, pg_notify('reportsvc_work', 'job') AS notified FROM released;


-- name: retire_queued_sections
-- $1 job ids, $2 owner (NULL: any). Queued sections of jobs that are ending will never run:
-- mark them cancelled.
-- Runs first in the transactions that fail or cancel jobs, so that section rows are locked
-- before job rows, as everywhere else.
UPDATE sections s
SET status = 'cancelled', finished_at = now()
FROM jobs j
WHERE s.job_id = ANY($1::uuid[]) AND s.status = 'queued'
  AND j.id = s.job_id AND ($2::text IS NULL OR j.owner = $2)
  AND j.status IN ('queued', 'outlining', 'writing', 'failed', 'cancelled');


-- name: fail_jobs
-- $1 job ids, $2 errors (what a user reads). Ends unfinished jobs as failed. Sections still
-- running elsewhere are abandoned by their worker at its next heartbeat.
UPDATE jobs j
SET status = 'failed', error = i.error, finished_at = now(),
    lease_owner = NULL, lease_expires_at = NULL
FROM unnest($1::uuid[], $2::text[]) AS i(id, error)
WHERE j.id = i.id AND j.status IN ('queued', 'outlining', 'writing')
RETURNING j.id;


-- name: extend_section_leases
-- $1 worker id, $2 section ids, $3 attempts, $4 lease (s)
-- The heartbeat. Returns the sections this worker still holds for a live job; the worker
-- abandons any in-flight section not returned (its lease was taken over, or its job
-- failed or was cancelled). Moves only lease_expires_at, which no index covers, so the
-- update can stay on its page (HOT).
UPDATE sections s
SET lease_expires_at = now() + make_interval(secs => $4)
FROM unnest($2::bigint[], $3::int[]) AS i(id, attempt), jobs j
WHERE s.id = i.id AND s.attempts = i.attempt AND s.lease_owner = $1 AND s.status = 'running'
  AND j.id = s.job_id AND j.status = 'writing'
RETURNING s.id;


-- name: extend_outline_leases
-- $1 worker id, $2 job ids, $3 attempts, $4 lease (s)
UPDATE jobs j
SET lease_expires_at = now() + make_interval(secs => $4)
FROM unnest($2::uuid[], $3::int[]) AS i(id, attempt)
WHERE j.id = i.id AND j.attempts = i.attempt AND j.lease_owner = $1 AND j.status = 'outlining'
RETURNING j.id;


-- name: rescue_sections
-- $1 max attempts
-- Sections whose lease ran out: their worker died, or stalled past its lease. Back to the
-- queue at once, or failed if they have used every attempt (a section that crashes every
-- worker that runs it must not loop forever). SKIP LOCKED: any number of workers may run
-- this at the same time without waiting on each other or on a late completion.
WITH expired AS (
    SELECT id FROM sections
    WHERE status = 'running' AND lease_expires_at < now()
    FOR UPDATE SKIP LOCKED
)
UPDATE sections s
SET status = CASE WHEN s.attempts >= $1 THEN 'failed' ELSE 'queued' END,
    finished_at = CASE WHEN s.attempts >= $1 THEN now() END,
    run_after = now(),
    last_error = 'the worker running this section stopped responding (lease expired)',
    lease_owner = NULL,
    lease_expires_at = NULL
FROM expired e, jobs j
WHERE s.id = e.id AND j.id = s.job_id
RETURNING s.id, s.job_id, s.position, s.title, s.status, s.attempts, s.kind,
          cardinality(j.outline) AS outline_length;


-- name: rescue_outlines
-- $1 max attempts. As rescue_sections, for outline steps; a job has no sections yet while
-- its outline is being written, so failing it here touches nothing else.
WITH expired AS (
    SELECT id FROM jobs
    WHERE status = 'outlining' AND lease_expires_at < now()
    FOR UPDATE SKIP LOCKED
)
UPDATE jobs j
SET status = CASE WHEN j.attempts >= $1 THEN 'failed' ELSE 'queued' END,
    error = CASE WHEN j.attempts >= $1
                 THEN format('The outline could not be written: the worker writing it stopped '
                             'responding on each of %s attempts.', j.attempts) END,
    finished_at = CASE WHEN j.attempts >= $1 THEN now() END,
    run_after = now(),
    last_error = 'the worker writing the outline stopped responding (lease expired)',
    lease_owner = NULL,
    lease_expires_at = NULL
FROM expired e
WHERE j.id = e.id
RETURNING j.id, j.status, j.attempts;


-- name: overdue_jobs
-- Unfinished jobs past their deadline (JOB_TIMEOUT_SECONDS after they were created).
SELECT id, created_at, deadline_at FROM jobs
WHERE status IN ('queued', 'outlining', 'writing') AND deadline_at < now()
LIMIT 1000;


-- name: cancel_job
-- $1 job id, $2 owner (NULL: any). Run after retire_queued_sections, in the same
-- transaction. Returns the job's status after the call; no row: no such job.
WITH cancelled AS (
    UPDATE jobs
    SET status = 'cancelled', finished_at = now(), lease_owner = NULL, lease_expires_at = NULL
    WHERE id = $1 AND status IN ('queued', 'outlining', 'writing')
      AND ($2::text IS NULL OR owner = $2)
    RETURNING id, status
)
SELECT status FROM cancelled
UNION ALL
SELECT status FROM jobs
WHERE id = $1 AND ($2::text IS NULL OR owner = $2) AND NOT EXISTS (SELECT 1 FROM cancelled);


-- name: prune_jobs
-- $1 age (s), $2 batch size. Deletes up to $2 finished jobs older than $1, oldest first;
-- their sections go with them (ON DELETE CASCADE). Run in batches to keep each short.
WITH doomed AS (
    SELECT id FROM jobs
    WHERE status IN ('completed', 'failed', 'cancelled')
      AND finished_at < now() - make_interval(secs => $1)
    ORDER BY finished_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
DELETE FROM jobs j USING doomed d WHERE j.id = d.id;


-- name: requeue_failed_sections
-- $1 job id. Step 1 of `reportsvc retry` for a job that has its outline: its failed and
-- cancelled sections go back to the queue with fresh attempts (sections locked first).
UPDATE sections s
SET status = 'queued', attempts = 0, run_after = now(), last_error = NULL,
    finished_at = NULL, lease_owner = NULL, lease_expires_at = NULL
FROM jobs j
WHERE s.job_id = $1 AND s.status IN ('failed', 'cancelled')
  AND j.id = s.job_id AND j.status IN ('failed', 'cancelled') AND j.outline IS NOT NULL
RETURNING s.id;


-- name: reopen_job
-- $1 job id, $2 job timeout (s). Step 2 of `reportsvc retry`: a failed or cancelled job
-- runs again, with a new deadline. Without an outline it starts from the outline step; with
-- one it goes on writing its sections (or is complete, if they are all done).
UPDATE jobs
SET status = CASE WHEN outline IS NULL THEN 'queued'
                  WHEN sections_done = sections_total THEN 'completed'
                  ELSE 'writing' END,
    attempts = CASE WHEN outline IS NULL THEN 0 ELSE attempts END,
    run_after = now(),
    error = NULL,
    last_error = NULL,
    lease_owner = NULL,
    lease_expires_at = NULL,
    finished_at = CASE WHEN outline IS NOT NULL AND sections_done = sections_total
                       THEN now() END,
    deadline_at = now() + make_interval(secs => $2)
WHERE id = $1 AND status IN ('failed', 'cancelled')
RETURNING status;


-- name: job_status
-- $1 job id.
SELECT status FROM jobs WHERE id = $1;


-- name: pending_jobs
-- Jobs waiting or being written (admission control), counted on jobs_deadline_idx.
SELECT count(*) FROM jobs WHERE status IN ('queued', 'outlining', 'writing');


-- name: active_token_hashes
SELECT token_hash FROM api_tokens WHERE revoked_at IS NULL;


-- name: add_token
-- $1 name, $2 sha256 of the token. No row: the name is taken.
INSERT INTO api_tokens (name, token_hash) VALUES ($1, $2)
ON CONFLICT (name) DO NOTHING
RETURNING id;


-- name: revoke_token
-- $1 name
UPDATE api_tokens SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL RETURNING id;


-- name: list_tokens
SELECT name, created_at, revoked_at FROM api_tokens ORDER BY created_at;
