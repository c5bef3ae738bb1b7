-- The workers' queue: every statement that claims, leases, retries, fails, releases,
-- rescues or completes a step. Only `reportsvc.queue.steps` runs them. A step is a row of
-- `steps` whatever its kind (outline, section, summary): one statement per transition.
-- Parameters are positional ($1, $2, ...); each block says what they are. `{name}`
-- placeholders are sets of statuses, filled in from `reportsvc.domain` when loaded.
--
-- Locking order, to keep statements from deadlocking one another: a statement that
-- touches both tables locks step rows before job rows. Claims never wait (SKIP LOCKED).


-- name: claim_steps
-- $1 worker id, $2 lease (s), $3 how many steps at most (no more than {claim_limit}).
-- Written into the statement as numbers, not passed as parameters: {claim_limit} the most
-- any claim of this worker asks for (CLAIM_BATCH_SIZE), {owner_bound} the most steps one
-- owner may have running (MAX_RUNNING_STEPS_PER_OWNER; 0: no bound). Both are fixed for a
-- worker, so it has one text, planned once per connection and its plan reused. The literal
-- ceiling is what makes the reusable plan good: with only `LIMIT $3`, such a plan is costed
-- as if a tenth of the queue were taken, so PostgreSQL planned the claim again on every
-- call, which cost as much as running it; with a text per claim size, each size was planned
-- afresh on each of a worker's connections (five custom plans before the reusable one).
--
-- Hands out up to $3 ready steps of any kind in one round trip.
WITH
-- 1. Steps ready to run: queued, and not waiting out a retry backoff, in turn order: each
--    job took a turn when it was created (create_jobs), so owners with work queued take
--    turns report by report, and an owner's older reports go before its newer ones. Within
--    a turn, the steps of a report under way (priority 0) go before an outline (1). The
--    partial index steps_claim_idx holds only queued rows, in exactly this order, so this
--    is a short index scan however many finished steps the table holds. SKIP LOCKED lets
--    concurrent workers take disjoint rows without waiting for one another. With a bound
--    per owner, a step whose owner has that many running is passed over (claims are then
--    serialized by the caller, so the counts of running rows are not stale). Without one,
--    the condition is `0 = 0 OR ...`, gone when the statement is planned. Owners are
--    looked up by primary key, one row at a time, never by joining the tables: running
--    steps are few, and a join would be planned for as many as statistics once saw.
--    Rows are locked as they are read, so the outer LIMIT stops the scan, and the locking,
--    at $3 rows: the inner, literal one only bounds what the planner expects.
ready AS (
    SELECT * FROM (
        SELECT s.id, s.job_id, s.turn, s.priority, s.run_after
        FROM steps s
        WHERE s.status = 'queued' AND s.run_after <= now()
          AND ({owner_bound} = 0
               OR (SELECT count(*) FROM steps r
                   WHERE r.status = 'running'
                     AND (SELECT owner FROM jobs WHERE id = r.job_id) IS NOT DISTINCT FROM
                         (SELECT owner FROM jobs WHERE id = s.job_id)) < {owner_bound})
        ORDER BY s.turn, s.priority, s.run_after, s.id
        LIMIT {claim_limit}
        FOR UPDATE SKIP LOCKED
    ) candidates
    LIMIT $3
),
-- 1b. With a bound, no more of one owner's steps than it has room for in this batch
--     either (the others stay queued; their locks end with the statement). Without one,
--     the second half is planned away.
bounded AS (
    SELECT r.id
    FROM ready r
    WHERE {owner_bound} = 0
    UNION ALL
    SELECT x.id
    FROM (SELECT y.id, y.owner,
                 row_number() OVER (PARTITION BY y.owner
                                    ORDER BY y.turn, y.priority, y.run_after, y.id) AS nth
          FROM (SELECT r.*, (SELECT owner FROM jobs WHERE id = r.job_id) AS owner
                FROM ready r) y) x
    WHERE {owner_bound} > 0
      AND x.nth + (SELECT count(*) FROM steps r
                   WHERE r.status = 'running'
                     AND (SELECT owner FROM jobs WHERE id = r.job_id) IS NOT DISTINCT FROM x.owner)
          <= {owner_bound}
)
-- 2. Take them: lease them to this worker and count the attempt. The attempt number is
--    the fencing token every later write by this worker must present. A queued step of a
--    job that failed or was cancelled meanwhile is retired instead of being run, except a
--    webhook delivery: it exists because its job ended, and runs whatever the job does.
--    The job row is read, not locked, and comes back with everything a worker needs to
--    run the step (topic, outline, options), so no second query is needed.
UPDATE steps s
SET status = CASE WHEN j.status IN ({active_jobs}) OR s.kind = 'webhook'
                  THEN 'running' ELSE 'cancelled' END,
    lease_owner = CASE WHEN j.status IN ({active_jobs}) OR s.kind = 'webhook' THEN $1 END,
    claimed_by = CASE WHEN j.status IN ({active_jobs}) OR s.kind = 'webhook'
                      THEN $1 ELSE s.claimed_by END,
    lease_expires_at = CASE WHEN j.status IN ({active_jobs}) OR s.kind = 'webhook'
                            THEN now() + make_interval(secs => $2) END,
    attempts = s.attempts
        + CASE WHEN j.status IN ({active_jobs}) OR s.kind = 'webhook' THEN 1 ELSE 0 END,
    started_at = coalesce(s.started_at, now()),
    waiting_for = NULL,
    finished_at = CASE WHEN j.status IN ({active_jobs}) OR s.kind = 'webhook'
                       THEN NULL ELSE now() END
FROM bounded r, jobs j
WHERE s.id = r.id AND j.id = s.job_id
RETURNING s.id, s.kind, s.job_id, s.position, s.title, s.attempts,
          j.status IN ({active_jobs}) OR s.kind = 'webhook' AS live,
          j.topic, j.model, j.options, j.outline,
          -- A section that already has a text is being rewritten: the text it replaces,
          -- and what the client asked for.
          CASE WHEN s.kind = 'section' THEN s.content END AS previous, s.instruction;


-- name: written_sections
-- $1 job id. The finished sections, for the summary step.
SELECT title, content FROM steps
WHERE job_id = $1 AND kind = 'section' AND status = 'done'
ORDER BY position;


-- name: webhook_deliveries
-- $1 step ids (webhook steps just claimed). Where each delivery goes, and the body its
-- first attempt stored, if any.
SELECT s.id, j.webhook_url, s.title, s.created_at, s.started_at, s.content
FROM steps s JOIN jobs j ON j.id = s.job_id
WHERE s.id = ANY($1::bigint[]);


-- name: keep_webhook_body
-- $1 step id, $2 attempt, $3 the body this attempt would send. The first attempt of a
-- delivery stores its body before sending it; every later attempt finds it stored and
-- sends the same bytes. Fenced on the attempt: no row back means the lease was lost.
UPDATE steps
SET content = coalesce(content, $3)
WHERE id = $1 AND attempts = $2 AND status = 'running'
RETURNING content;


-- name: complete_steps
-- $1 worker id, $2 step ids, $3 attempts, $4 contents (sections, summaries, webhook
-- bodies), $5 finish reasons, $6 prompt tokens, $7 completion tokens, $8 titles (outlines:
-- a JSON array, as text: asyncpg would take a list for an array dimension), $9 HTTP status
-- codes (webhooks: the receiver's answer; NULL for model steps), $10 passages given
-- (sections of a report with sources; else NULL), $11 citations removed
--
-- Stores finished steps and, in the same statement (one transaction), moves their jobs on:
-- a written outline queues one section step per title; a written section or summary is
-- counted, and the job whose count reaches its total becomes completed. (A delivered
-- webhook moves nothing on. A job that ends gets its webhook step from the trigger
-- jobs_webhook_event, in this same transaction: see db/schema.py.)
WITH done AS (
    -- Fencing: only the holder of the current attempt may write. A worker whose lease was
    -- taken over (it stalled, another worker re-ran the step) writes nothing.
    UPDATE steps s
    SET status = 'done',
        content = i.content,
        finish_reason = i.finish_reason,
        prompt_tokens = s.prompt_tokens + i.prompt_tokens,
        completion_tokens = s.completion_tokens + i.completion_tokens,
        finished_at = now(),
        lease_owner = NULL,
        lease_expires_at = NULL,
        last_error = NULL,
        last_status_code = i.status_code,
        passages_given = i.passages_given,
        citations_removed = i.citations_removed
    FROM unnest($2::bigint[], $3::int[], $4::text[], $5::text[], $6::int[], $7::int[],
                $8::text[], $9::int[], $10::int[], $11::int[])
         AS i(id, attempt, content, finish_reason, prompt_tokens, completion_tokens, titles,
              status_code, passages_given, citations_removed)
    -- The lease is tested as one expression (`fenced`, below), not as plain conditions:
    -- those matched the partial index of running steps, and a plan made while statistics
    -- saw few running rows read every running row and compared each with the whole batch
    -- (quadratic: a batch of 300 took 75 ms). As it is, each row of the batch is found by
    -- its primary key, whatever the statistics say.
    WHERE s.id = i.id AND s.attempts = i.attempt
      AND coalesce(s.status = 'running' AND s.lease_owner = $1, false)
    RETURNING s.job_id, s.kind, s.started_at, i.titles
),
-- An outline: the job takes it and moves on to writing (unless it ended meanwhile), or,
-- when its owner asked to review the outline, stops in awaiting_review, holding no step
-- (the review's PUT queues the sections: approve_outline in reports.sql). The summary
-- pass, when asked for, is one more step after the sections.
outlined AS (
    UPDATE jobs j
    SET status = CASE WHEN coalesce((j.options ->> 'review_outline')::boolean, false)
                      THEN 'awaiting_review' ELSE 'writing' END,
        review_since = CASE WHEN coalesce((j.options ->> 'review_outline')::boolean, false)
                            THEN now() END,
        outline = ARRAY(SELECT jsonb_array_elements_text(d.titles::jsonb)),
        sections_total = jsonb_array_length(d.titles::jsonb)
            + CASE WHEN coalesce((j.options ->> 'summary')::boolean, false) THEN 1 ELSE 0 END,
        started_at = coalesce(j.started_at, d.started_at)
    FROM done d
    WHERE d.kind = 'outline' AND j.id = d.job_id AND j.status = 'outlining'
    RETURNING j.id, j.outline, j.turn, j.status
),
-- ... and one section step per title is queued, in the job's turn.
sections_queued AS (
    INSERT INTO steps (job_id, kind, position, title, turn)
    SELECT o.id, 'section', t.ord - 1, t.title, o.turn
    FROM outlined o, unnest(o.outline) WITH ORDINALITY AS t(title, ord)
    WHERE o.status = 'writing'
    RETURNING job_id
),
-- Sections and summaries are counted on their jobs. The job row lock serialises
-- concurrent completions of one job: the second waits, then re-reads the counter the
-- first one wrote (READ COMMITTED re-evaluation), so two workers finishing the last two
-- sections at once cannot both miss, or both make, the completion. The counter counts
-- every stored section, also for a job that failed or was cancelled while it was running:
-- the row is done, and `reportsvc retry` will not redo it; only a job still being written
-- can become completed. Jobs are visited in id order, the order every worker uses; should
-- two batches still lock shared jobs in opposite orders, PostgreSQL reports a deadlock,
-- one batch is rolled back and its worker writes it again (every write is fenced, so
-- repeating it is harmless). An explicit `SELECT ... ORDER BY id FOR UPDATE` first would
-- rule that out, at the price of a second write to each job row per batch (row locks are
-- written to the heap): about 10 % of queue throughput.
-- (No job is in both `outlined` and `counted`: a job's sections exist only once its
-- outline is written, and one statement never updates a row twice.)
counted AS (
    UPDATE jobs j
    SET sections_done = j.sections_done + p.n,
        status = CASE WHEN j.status = 'writing' AND j.sections_done + p.n = j.sections_total
                      THEN 'completed' ELSE j.status END,
        finished_at = CASE WHEN j.status = 'writing'
                                AND j.sections_done + p.n = j.sections_total
                           THEN now() ELSE j.finished_at END
    FROM (SELECT job_id, count(*)::int AS n FROM done WHERE kind IN ({report_parts})
          GROUP BY job_id ORDER BY job_id) p
    WHERE j.id = p.job_id
    RETURNING j.id, j.status, j.sections_done, j.sections_total, j.turn,
              coalesce((j.options ->> 'summary')::boolean, false) AS summary
),
-- A job with a summary pass: when every ordinary section is done, its summary step is
-- queued (a new row, so no lock is taken after the job's). After a section rewrite the
-- summary's row exists, done: it goes back to the queue, in the job's (new) turn, to be
-- written again from the sections as they are now (its old text is in section_history,
-- kept by rewrite_steps). The row is only locked by this statement then: no worker holds
-- it, and a job being rewritten refuses a second rewrite.
summaries AS (
    INSERT INTO steps (job_id, kind, position, title, turn)
    -- The summary's position is the outline's length: sections_total counts it as well.
    SELECT c.id, 'summary', c.sections_total - 1, {summary_title}, c.turn
    FROM counted c
    WHERE c.summary AND c.status = 'writing' AND c.sections_done = c.sections_total - 1
    ON CONFLICT (job_id, kind, position) DO UPDATE
    SET status = 'queued', run_after = now(), turn = excluded.turn, finished_at = NULL,
        waiting_for = NULL, last_error = NULL
    WHERE steps.status = 'done'
    RETURNING job_id
),
queued AS (
    SELECT count(*) AS n FROM (SELECT job_id FROM sections_queued
                               UNION ALL SELECT job_id FROM summaries) q
)
SELECT (SELECT count(*) FROM done) AS written,
       ARRAY(SELECT id FROM counted UNION ALL SELECT id FROM outlined) AS moved,
       ARRAY(SELECT id FROM counted WHERE status = 'completed' ORDER BY id) AS completed,
       -- Jobs that had ended (failed, cancelled) before these steps were written.
       ARRAY(SELECT id FROM counted WHERE status NOT IN ({active_jobs}, 'completed')) AS ended,
       q.n AS queued,
       -- New steps wake idle workers; sent with the commit, so it cannot be lost if this
       -- worker dies right after. (Only statements that queued something notify: a NOTIFY
       -- in every completion would serialise commits on the notification queue's lock.)
       CASE WHEN q.n > 0 THEN pg_notify('reportsvc_work', 'steps') END AS notified
FROM queued q;


-- name: retry_steps
-- $1 worker id, $2 step ids, $3 attempts, $4 errors (operators' detail), $5 seconds until
-- the next attempt, $6 prompt tokens, $7 completion tokens (of a call that answered with
-- something unusable), $8 HTTP status codes (or NULL). Puts steps back in the queue after
-- a transient failure, not before run_after.
UPDATE steps s
SET status = 'queued',
    run_after = now() + make_interval(secs => i.delay),
    last_error = i.error,
    last_status_code = i.status_code,
    prompt_tokens = s.prompt_tokens + i.prompt_tokens,
    completion_tokens = s.completion_tokens + i.completion_tokens,
    lease_owner = NULL,
    lease_expires_at = NULL
FROM unnest($2::bigint[], $3::int[], $4::text[], $5::float8[], $6::int[], $7::int[],
            $8::int[])
     AS i(id, attempt, error, delay, prompt_tokens, completion_tokens, status_code)
WHERE s.id = i.id AND s.attempts = i.attempt
  AND coalesce(s.status = 'running' AND s.lease_owner = $1, false)  -- fenced: see complete_steps
RETURNING s.id;


-- name: fail_steps
-- $1 worker id, $2 step ids, $3 attempts, $4 errors (operators' detail), $5 prompt tokens,
-- $6 completion tokens, $7 HTTP status codes (or NULL). Marks steps failed for good; the
-- caller then fails their jobs (fail_jobs), in the same transaction: all but those of
-- webhook steps, whose jobs have already ended.
UPDATE steps s
SET status = 'failed',
    last_error = i.error,
    last_status_code = i.status_code,
    prompt_tokens = s.prompt_tokens + i.prompt_tokens,
    completion_tokens = s.completion_tokens + i.completion_tokens,
    finished_at = now(),
    lease_owner = NULL,
    lease_expires_at = NULL
FROM unnest($2::bigint[], $3::int[], $4::text[], $5::int[], $6::int[], $7::int[])
     AS i(id, attempt, error, prompt_tokens, completion_tokens, status_code), jobs j
WHERE s.id = i.id AND s.attempts = i.attempt
  AND coalesce(s.status = 'running' AND s.lease_owner = $1, false)  -- fenced: see complete_steps
  AND j.id = s.job_id
RETURNING s.id, s.job_id, s.kind, s.position, s.title, s.attempts,
          cardinality(j.outline) AS outline_length,
          -- A rewrite (its step had a text before): the caller restores it instead.
          s.kind IN ({report_parts}) AND s.content IS NOT NULL AS rewrite;


-- name: release_steps
-- $1 worker id, $2 step ids, $3 attempts, $4 true: back to the queue (shutdown, or its
-- model's quota is spent; the interrupted attempt is not counted), false: abandoned
-- because the job ended, $5 seconds before it may be claimed again, $6 why it waits
-- ('quota', or NULL). An abandoned step whose job was retried meanwhile goes back to the
-- queue too.
WITH released AS (
    UPDATE steps s
    SET status = CASE WHEN $4 OR j.status IN ({active_jobs}) THEN 'queued'
                      ELSE 'cancelled' END,
        attempts = s.attempts - CASE WHEN $4 THEN 1 ELSE 0 END,
        run_after = now() + make_interval(secs => i.delay),
        waiting_for = CASE WHEN $4 THEN i.waiting_for END,
        lease_owner = NULL,
        lease_expires_at = NULL,
        finished_at = CASE WHEN $4 OR j.status IN ({active_jobs}) THEN NULL ELSE now() END
    FROM unnest($2::bigint[], $3::int[], $5::float8[], $6::text[])
         AS i(id, attempt, delay, waiting_for), jobs j
    WHERE s.id = i.id AND s.attempts = i.attempt
      AND coalesce(s.status = 'running' AND s.lease_owner = $1, false)  -- fenced: see complete_steps
      AND j.id = s.job_id
    RETURNING s.id, s.job_id, s.status
)
SELECT count(*) AS released,
       -- The jobs that ended meanwhile (their steps were cancelled, not requeued).
       ARRAY(SELECT DISTINCT job_id FROM released WHERE status = 'cancelled') AS ended,
       CASE WHEN count(*) FILTER (WHERE status = 'queued') > 0
            THEN pg_notify('reportsvc_work', 'steps') END AS notified
FROM released;


-- name: extend_leases
-- $1 worker id, $2 step ids, $3 attempts, $4 lease (s)
-- The heartbeat. Returns the steps this worker still holds for a live job (any job, for a
-- webhook delivery: it runs after its job has ended); the worker abandons any in-flight
-- step not returned (its lease was taken over, or its job failed or was cancelled). Moves
-- only lease_expires_at, which no index covers, so the update can stay on its page (HOT).
UPDATE steps s
SET lease_expires_at = now() + make_interval(secs => $4)
FROM unnest($2::bigint[], $3::int[]) AS i(id, attempt), jobs j
WHERE s.id = i.id AND s.attempts = i.attempt
  AND coalesce(s.status = 'running' AND s.lease_owner = $1, false)  -- fenced: see complete_steps
  AND j.id = s.job_id AND (j.status IN ({active_jobs}) OR s.kind = 'webhook')
RETURNING s.id;


-- name: rescue_steps
-- $1 max attempts, $2 the error recorded on each rescued step (operators' detail), $3 max
-- attempts of a webhook delivery (WEBHOOK_MAX_ATTEMPTS)
-- Steps whose lease ran out: their worker died, or stalled past its lease. Back to the
-- queue at once, or failed if they have used every attempt (a step that crashes every
-- worker that runs it must not loop forever). SKIP LOCKED: any number of workers may run
-- this at the same time without waiting on each other or on a late completion. The
-- caller fails the jobs of the steps failed here, but not for a webhook step.
WITH expired AS (
    SELECT id FROM steps
    WHERE status = 'running' AND lease_expires_at < now()
    FOR UPDATE SKIP LOCKED
)
UPDATE steps s
SET status = CASE WHEN s.attempts >= CASE WHEN s.kind = 'webhook' THEN $3::int ELSE $1::int END
                  THEN 'failed' ELSE 'queued' END,
    finished_at = CASE WHEN s.attempts >= CASE WHEN s.kind = 'webhook' THEN $3::int ELSE $1::int END
                       THEN now() END,
    run_after = now(),
    last_error = $2,
    lease_owner = NULL,
    lease_expires_at = NULL
FROM expired e, jobs j
WHERE s.id = e.id AND j.id = s.job_id
RETURNING s.id, s.job_id, s.kind, s.position, s.title, s.status, s.attempts,
          cardinality(j.outline) AS outline_length,
          s.kind IN ({report_parts}) AND s.content IS NOT NULL AS rewrite;


-- name: overdue_jobs
-- Unfinished jobs past their deadline (JOB_TIMEOUT_SECONDS after they were created).
SELECT id FROM jobs
WHERE status IN ({active_jobs}) AND deadline_at < now()
LIMIT 1000;


-- name: retire_queued_steps
-- $1 job ids. Queued steps of jobs that are ending will never run: mark them cancelled.
-- Runs first in the transactions that fail jobs, so that step rows are locked before job
-- rows, as everywhere else. Running steps are abandoned by their worker at its next
-- heartbeat. A webhook delivery of an earlier ending (of a job retried since) still goes.
UPDATE steps
SET status = 'cancelled', finished_at = now()
WHERE job_id = ANY($1::uuid[]) AND status = 'queued' AND kind <> 'webhook';


-- name: fail_jobs
-- $1 job ids, $2 errors (what a user reads). Ends unfinished jobs as failed.
UPDATE jobs j
SET status = 'failed', error = i.error, finished_at = now()
FROM unnest($1::uuid[], $2::text[]) AS i(id, error)
WHERE j.id = i.id AND j.status IN ({active_jobs})
RETURNING j.id;


-- name: restore_rewrites
-- $1 step ids, $2 their jobs' errors (what a user reads). A rewrite whose step failed for
-- good (a section's, or the summary's written again after it) does not fail the report:
-- the step keeps the text it had (it was never overwritten) and is done again, the history
-- rows that recorded it as replaced go (it was not; nor was the summary, when the section
-- failed: its row was written by the same request, at the same time), and the job is
-- completed again, with the error kept to say the rewrite did not happen. Runs in the
-- transaction that failed the steps, after them: steps, then history, then the job.
WITH restored AS (
    UPDATE steps
    SET status = 'done', finished_at = now()
    WHERE id = ANY($1::bigint[]) AND status = 'failed' AND content IS NOT NULL
    RETURNING id, job_id, kind, position
),
latest AS (
    SELECT r.job_id, r.kind, h.id, h.replaced_at
    FROM restored r
    JOIN LATERAL (SELECT x.id, x.replaced_at FROM section_history x
                  WHERE x.job_id = r.job_id AND x.kind = r.kind AND x.position = r.position
                  ORDER BY x.id DESC LIMIT 1) h ON true
),
forgotten AS (
    DELETE FROM section_history h
    USING latest l
    WHERE h.id = l.id
       OR (l.kind = 'section' AND h.job_id = l.job_id AND h.kind = 'summary'
           AND h.replaced_at = l.replaced_at)
)
UPDATE jobs j
SET status = 'completed', sections_done = j.sections_total, finished_at = now(),
    error = i.error
FROM unnest($1::bigint[], $2::text[]) AS i(step_id, error), restored r
WHERE r.id = i.step_id AND j.id = r.job_id AND j.status = 'writing'
RETURNING j.id;


-- name: expire_reviews
-- $1 OUTLINE_REVIEW_TIMEOUT (s), $2 the error (what a user reads). Fails the jobs whose
-- outline has waited for its owner's review for longer than that, found on the partial
-- index jobs_review_idx. The status is checked in the same statement, so a review given
-- at the same moment either wins (the job goes on) or loses (its PUT gets a 409): never
-- both. Such a job holds no queued or running step; its webhook trigger fires as for any
-- failure.
UPDATE jobs
SET status = 'failed', error = $2, finished_at = now()
WHERE id IN (SELECT id FROM jobs
             WHERE status = 'awaiting_review'
               AND review_since < now() - make_interval(secs => $1)
             ORDER BY review_since
             LIMIT 1000
             FOR UPDATE SKIP LOCKED)
  AND status = 'awaiting_review'
RETURNING id;
